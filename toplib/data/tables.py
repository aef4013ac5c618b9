"""Reading tables (CSV, TSV, JSON, JSONL; .gz/.bz2) into texts and labels, with errors
that name the parameter and the file."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .tasks import TaskSpec


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


def read_table(path: str, param: str, header: bool = True,
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


def require_columns(df: pd.DataFrame, columns, param: str, path: str) -> None:
    if missing := [c for c in columns if c not in df.columns]:
        raise ValueError(f"{param}={path!r} lacks columns {missing}; found {list(df.columns)}, "
                         f"expected {list(columns)}")


def texts_of(df: pd.DataFrame, columns) -> list[tuple[str, ...]]:
    return list(zip(*(df[c].fillna("").astype(str).tolist() for c in columns)))


def pick_text_columns(df: pd.DataFrame, spec: TaskSpec, param: str, path: str,
                      text_columns: str | None = None) -> list:
    """``text_columns`` ('a' or 'a,b') when given; else run_glue's rule: the task's own keys,
    sentence1+sentence2, sentence, text, else the first one or two non-label string columns
    that are not ids (unique per row, every value with a digit and without spaces)."""
    cols = list(df.columns)
    if text_columns is not None:
        wanted = [c.strip() for c in str(text_columns).split(",") if c.strip()]
        if not 1 <= len(wanted) <= 2 or any(c not in cols for c in wanted):
            raise ValueError(f"text_columns={text_columns!r} is invalid for {param}={path!r}: "
                             f"name 1 or 2 of its columns {cols}")
        return wanted
    for keys in (spec.text_keys if spec.name != "custom" else (), ("sentence1", "sentence2"),
                 ("sentence",), ("text",)):
        if keys and all(k in cols for k in keys):
            return list(keys)
    strings = [c for c in cols if c != "label" and not pd.api.types.is_numeric_dtype(df[c])
               and not _id_like(df[c])]
    if not strings:
        raise ValueError(f"{param}={path!r} has no text column; found {cols}, expected "
                         "'sentence1'+'sentence2', 'sentence', 'text' or another string column "
                         "(ids are never text), or name them with text_columns")
    return strings[:2]


def _id_like(column: pd.Series) -> bool:
    """Unique per row, every value with a digit and none with a space: an id, not a text."""
    values = column.astype(str)
    return (len(values) > 1 and values.is_unique and values.str.contains(r"\d").all()
            and not values.str.contains(r"\s").any())


def parse_labels(values: list, spec: TaskSpec, param: str, where: str) -> list:
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


def infer_custom_labels(raw: dict[str, list], files: dict[str, str],
                        label_names: list | None = None
                        ) -> tuple[dict[str, list], tuple[str, ...] | None]:
    """Labels of a custom task: ``label_names`` (an existing checkpoint's) map them by name;
    else non-integer floats make a regression, and the classes are the training file's
    (sorted), which every other file must keep to."""
    values = [v for labels in raw.values() for v in labels]
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                  for v in values)
    if label_names is None and numeric and any(not float(v).is_integer() for v in values):
        return {k: [float(v) for v in labels] for k, labels in raw.items()}, None
    convert = int if numeric else str  # numbers sort as numbers, names alphabetically
    source = "train" if "train" in raw else next(iter(raw))
    if label_names is not None:
        classes, source = [str(n) for n in label_names], "the checkpoint"
    else:
        classes = sorted({convert(v) for v in raw[source]})
        if len(classes) < 2:
            raise ValueError(f"{source}_file={files[source]!r} has one class only "
                             f"({classes[0]!r}): classification needs at least 2 classes; "
                             "for a regression give float labels")
    ids = {str(v): i for i, v in enumerate(classes)}
    for split, labels in raw.items():
        if unknown := sorted({str(convert(v)) for v in labels} - set(ids)):
            raise ValueError(f"{split}_file={files[split]!r} has labels {unknown[:10]} that "
                             f"{source} does not know; its labels: {list(ids)}")
    labels = {k: [ids[str(convert(v))] for v in split] for k, split in raw.items()}
    return labels, tuple(ids)


def check_label_space(labels: dict | None, spec: TaskSpec, name: str) -> None:
    """A checkpoint's label space (``toplib.hf.checkpoint.label_space``) must be the task's;
    the error shows both."""
    if not labels:
        return
    mine = {"problem_type": "regression" if spec.is_regression else "classification",
            "num_labels": spec.num_labels, "label_names": list(spec.label_names or []) or None}
    theirs = dict(labels, label_names=labels.get("label_names") or None)
    same = all(theirs[k] == mine[k] for k in ("problem_type", "num_labels")) and (
        None in (theirs["label_names"], mine["label_names"])
        or list(theirs["label_names"]) == mine["label_names"])
    if not same:
        raise ValueError(f"{name} was trained on {_describe(theirs)}, but task {spec.name!r} "
                         f"has {_describe(mine)}; use the task (and data) it was trained on")


def _describe(space: dict) -> str:
    if space["problem_type"] == "regression":
        return "a regression (1 output)"
    names = space["label_names"]
    return f"{space['num_labels']} labels" + (f" {list(names)[:20]}" if names else "")


def is_missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))
