"""The task table: labels, metrics and padded length of every supported task."""
from __future__ import annotations

from dataclasses import dataclass

VALIDATION_FRACTION = 0.1  # share of rows held out as validation when a source has none
ROTTEN_TOMATOES_SPLIT_SEED = 0  # independent of `seed`: teacher and pruning runs share it
ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
NEWSGROUPS = (  # alphabetical = scikit-learn's ids 0-19
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
    "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc")
NLI2 = ("entailment", "not_entailment")  # Hugging Face glue ids for RTE and QNLI


@dataclass(frozen=True)
class TaskSpec:
    """What a task needs from the model and the evaluation."""

    name: str
    num_labels: int  # 1: regression
    metrics: tuple[str, ...]  # primary first
    max_seq_length: int  # padded length of the ToP release
    text_keys: tuple[str, ...]  # Hugging Face glue column names, 1 or 2
    validation_splits: tuple[str, ...] = ("validation",)
    label_names: tuple[str, ...] | None = None  # names of class ids 0..C-1, when the data has them

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1


ACCURACY, F1_ACCURACY, CORRELATION = ("accuracy",), ("f1", "accuracy"), ("pearson", "spearman")
TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("cola", 2, ("matthews",), 64, ("sentence",)),
    TaskSpec("sst2", 2, ACCURACY, 64, ("sentence",)),
    TaskSpec("mrpc", 2, F1_ACCURACY, 128, ("sentence1", "sentence2")),
    TaskSpec("stsb", 1, CORRELATION, 64, ("sentence1", "sentence2")),
    TaskSpec("qqp", 2, F1_ACCURACY, 128, ("question1", "question2")),
    TaskSpec("mnli", 3, ACCURACY, 128, ("premise", "hypothesis"),
             ("validation_matched", "validation_mismatched"),
             ("entailment", "neutral", "contradiction")),
    TaskSpec("qnli", 2, ACCURACY, 128, ("question", "sentence"), label_names=NLI2),
    TaskSpec("rte", 2, ACCURACY, 256, ("sentence1", "sentence2"), label_names=NLI2),
    TaskSpec("20news", 20, ACCURACY, 256, ("text",), label_names=NEWSGROUPS),
    TaskSpec("rotten_tomatoes", 2, ACCURACY, 64, ("text",), label_names=("rotten", "fresh")),
    # num_labels, metrics and label_names of `custom` come from the data: see `resolve_task`.
    TaskSpec("custom", 2, ACCURACY, 128, ("sentence",)),
)}
_ALIASES = {"20newsgroups": "20news", "newsgroups": "20news", "rt": "rotten_tomatoes"}


def normalize_name(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def get_task(name: "str | TaskSpec") -> TaskSpec:
    """Look up a task by name or alias; case, '-' and '_' are ignored ("SST-2", "sts-b"); a
    TaskSpec is returned as it is."""
    if isinstance(name, TaskSpec):
        return name
    lookup = {normalize_name(k): k for k in TASKS} | _ALIASES
    if (key := lookup.get(normalize_name(str(name)))) is None:
        raise ValueError(f"task={name!r} is unknown; allowed: {', '.join(TASKS)} "
                         "(case, '-' and '_' are ignored: 'SST-2', 'STS-B' work)")
    return TASKS[key]
