"""Reading tables (CSV, TSV, JSON, JSONL; .gz/.bz2) into texts and labels."""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .tasks import TaskSpec

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
        """The examples at ``indices``, in that order."""
        return TextData([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                        self.label_names)

    def head(self, n: int | None) -> "TextData":
        """The first ``n`` examples (all if None)."""
        return self if not n or n >= len(self) else self.select(range(n))

    def subset(self, n: int | None, seed: int) -> "TextData":
        """A seeded random subset of ``n`` examples (all if None) in their original order."""
        if not n or n >= len(self):
            return self
        picked = np.random.default_rng(seed).choice(len(self), size=n, replace=False)
        return self.select(sorted(picked.tolist()))


def read_table(path: str, param: str, header: bool = True,
               quoting: int | None = None) -> pd.DataFrame:
    """Read CSV/TSV(.gz)/JSON/JSONL into a DataFrame."""
    name = path.lower().removesuffix(".gz").removesuffix(".bz2")
    try:
        if name.endswith((".json", ".jsonl")):
            with open(path, encoding="utf-8-sig") as f:  # a list of rows, else one per line
                listed = not name.endswith(".jsonl") and f.read(64).lstrip().startswith("[")
            df = pd.read_json(path, lines=not listed, dtype=False)
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


def require_columns(df: pd.DataFrame, columns, param: str, path: str) -> None:
    if missing := [c for c in columns if c not in df.columns]:
        raise ValueError(f"{param}={path!r} lacks columns {missing}; found {list(df.columns)}, "
                         f"expected {list(columns)}")


def texts_of(df: pd.DataFrame, columns) -> list[tuple[str, ...]]:
    return list(zip(*(df[c].fillna("").astype(str).tolist() for c in columns)))


def check_text_cells(df: pd.DataFrame, columns, param: str, path: str) -> None:
    """Raise for text cells holding a JSON object or list (a file of columns), or all empty."""
    for column in columns:
        nested = df[column].map(lambda v: isinstance(v, (dict, list)))
        if nested.any():
            row = int(nested.to_numpy().argmax())
            kind = type(df[column].iloc[row]).__name__
            raise ValueError(f"{param}={path!r}: data row {row + 1}, column {column!r} holds a "
                             f"JSON {'object' if kind == 'dict' else kind}, not a text; JSON "
                             "files hold one object per row ({\"text\": ..., \"label\": ...}"
                             ", a list of them or one per line), not a column of values")
    if all(_all_blank(df[c]) for c in columns):
        raise ValueError(f"{param}={path!r}: every text in column(s) {list(columns)} is empty; "
                         "name the text column(s) with text_columns ('a' or 'a,b')")


def _all_blank(column: pd.Series) -> bool:
    """Whether every cell of a column is missing or blank."""
    return bool(column.map(lambda v: is_missing(v) or (isinstance(v, str) and not v.strip()))
                .all())


def parse_text_columns(value: str | list | tuple | None) -> list[str] | None:
    """'a' or 'a,b' (or a list of 1 or 2 names) -> the text column names.

    Example:
        >>> parse_text_columns("question, answer")
        ['question', 'answer']
    """
    if value is None:
        return None
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(c).strip() for c in parts]
    if not 1 <= len(names) <= 2 or not all(names) or len(set(names)) < len(names) \
            or "label" in names:
        raise ValueError(f"text_columns={value!r} is invalid: give 1 or 2 different column "
                         "names, comma-separated, other than 'label' (e.g. 'review' or "
                         "'question,answer')")
    return names


def pick_text_columns(df: pd.DataFrame, spec: TaskSpec, param: str, path: str,
                      text_columns: str | list | None = None) -> list:
    """``text_columns``, else run_glue's rule (the task's keys, ..., the first string columns)."""
    cols = list(df.columns)
    if (wanted := parse_text_columns(text_columns)) is not None:
        if missing := [c for c in wanted if c not in cols]:
            raise ValueError(f"text_columns={text_columns!r}: {param}={path!r} lacks column(s) "
                             f"{missing}; its columns: {cols}")
        return wanted
    for keys in (spec.text_keys if spec.name != "custom" else (), ("sentence1", "sentence2"),
                 ("sentence",), ("text",)):
        if keys and all(k in cols for k in keys):
            return list(keys)
    strings = [c for c in cols if c != "label" and not pd.api.types.is_numeric_dtype(df[c])]
    ids = [c for c in strings if _id_like(df[c])]
    if not (texts := [c for c in strings if c not in ids]):
        raise ValueError(f"{param}={path!r} has no text column; found {cols}"
                         + (f" ({ids} look like ids: unique values without spaces)" if ids else "")
                         + ", expected 'sentence1'+'sentence2', 'sentence', 'text' or another "
                         "string column; or name them with text_columns ('a' or 'a,b')")
    if ids:
        logger.info("%s=%r: column(s) %s look like ids, not text", param, path, ids)
    return texts[:2]


def _id_like(column: pd.Series) -> bool:
    """Unique per row, each value with a digit and no space (the digit keeps one-word texts)."""
    values = column.astype(str)
    return (len(values) > 1 and values.is_unique and values.str.contains(r"\d").all()
            and not values.str.contains(r"\s").any())


def is_missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))
