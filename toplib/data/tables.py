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


def pick_text_columns(df: pd.DataFrame, spec: TaskSpec, param: str, path: str) -> list:
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


def infer_custom_labels(raw: dict[str, list]) -> tuple[dict[str, list], tuple[str, ...] | None]:
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


def is_missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))
