"""Labels: raw values to class ids or floats, custom tasks' classes, label-space checks."""
from __future__ import annotations

import numpy as np

from .tasks import TaskSpec

SHOWN_NAMES = 20  # label names an error message lists (20news has 20)


def parse_labels(values: list, spec: TaskSpec, param: str, where: str) -> list:
    """Raw labels -> class ids (via spec.label_names for named labels) or floats."""
    if spec.is_regression:
        return _floats(values, param, where)
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


def _floats(values: list, param: str, where: str) -> list[float]:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{param}: {where} has a non-numeric regression label: {err}") from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def label_key(value) -> str:
    """A raw label's class name: integral numbers as integers (1 and 1.0: "1"), else text."""
    if _is_number(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def infer_custom_labels(raw: dict[str, list], files: dict[str, str],
                        label_names: list | None = None
                        ) -> tuple[dict[str, list], tuple[str, ...] | None]:
    """({split: class ids or floats}, class names; None: a regression) of a custom task, by
    ``label_names`` or the training file's sorted labels (any with a fraction: a regression).

    Example:
        >>> infer_custom_labels({"train": [10, 2, 2]}, {"train": "t.csv"})
        ({'train': [1, 0, 0]}, ('2', '10'))
    """
    if label_names is not None:
        names = [str(n) for n in label_names]
        return _map_to(names, raw, files, "the checkpoint"), tuple(names)
    source = "train" if "train" in raw else next(iter(raw))
    values, where = raw[source], f"{source}_file={files[source]!r}"
    numeric = all(_is_number(v) for v in values)
    if numeric and any(not float(v).is_integer() for v in values):
        return {s: _floats(v, f"{s}_file", files[s]) for s, v in raw.items()}, None
    classes = sorted({label_key(v) for v in values}, key=int if numeric else str)
    if len(classes) < 2:
        raise ValueError(f"{where} has a single class ({classes[0]!r} in every row): a "
                         "classification needs at least 2 classes; for regression give float "
                         "labels (with a fraction, e.g. 0.5)")
    return _map_to(classes, raw, files, where), tuple(classes)


def _map_to(classes: list[str], raw: dict[str, list], files: dict[str, str],
            source: str) -> dict[str, list[int]]:
    """Class ids of every split's raw labels under ``classes``."""
    ids = {name: i for i, name in enumerate(classes)}
    out = {}
    for split, values in raw.items():
        keys = [label_key(v) for v in values]
        if unknown := sorted(set(keys) - ids.keys()):
            raise ValueError(f"{split}_file={files[split]!r} has label(s) {unknown[:10]} that "
                             f"{source} does not have: labels of {source}: "
                             f"{_shown(classes)}, of this file: {_shown(sorted(set(keys)))}")
        out[split] = [ids[k] for k in keys]
    return out


def check_label_space(labels: dict | None, spec: TaskSpec, name: str) -> None:
    """Raise a ValueError when a checkpoint's label space (None: unchecked) is not the task's.

    Example:
        >>> from toplib.data import get_task
        >>> check_label_space({"problem_type": "regression", "num_labels": 1},
        ...                   get_task("sst2"), "checkpoint='runs/x'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: checkpoint='runs/x' was trained on a regression (1 output) but task ...
    """
    if not labels:
        return
    theirs = (labels.get("problem_type") == "regression", labels.get("num_labels"),
              list(labels.get("label_names") or []))
    mine = (spec.is_regression, spec.num_labels, list(spec.label_names or []))
    same = theirs[:2] == mine[:2] and (not (theirs[2] and mine[2]) or theirs[2] == mine[2])
    if not same:
        order = (" (the same names in another order)"
                 if theirs[2] != mine[2] and sorted(theirs[2]) == sorted(mine[2]) else "")
        raise ValueError(f"{name} was trained on {_describe(*theirs)} but task {spec.name!r} "
                         f"has {_describe(*mine)}{order}; pass the task (and data) it was "
                         "trained on")


def _describe(regression: bool, num: int, names: list) -> str:
    if regression:
        return "a regression (1 output)"
    return f"{num} labels" + (f" {_shown(names)}" if names else "")


def _shown(names: list) -> str:
    more = len(names) - SHOWN_NAMES
    return str(list(names[:SHOWN_NAMES])) + (f" (+{more} more)" if more > 0 else "")
