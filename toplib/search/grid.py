"""Hyper-parameter grids (the ToP authors', a small one, or a JSON file) and the trials' folder
names. A grid is checked whole before Ray starts; Tune expands it (``tune.grid_search``).
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import re
from typing import Any, Mapping

from ..train.config import KNOBS, build_train_config

MAX_NAME = 120  # characters of a trial's folder name before it is shortened with a hash
UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")  # what a folder name on any file system may hold
# Li et al., KDD'23, section 5.1: the grid the authors searched for every task (72 trials).
PAPER_GRID: dict[str, list] = {
    "learning_rate": [6e-5, 5e-5, 4e-5, 3e-5, 2e-5, 1e-5],
    "reg_learning_rate": [0.04, 0.02, 0.01],
    "distill_rank_loss_alpha": [1e-2, 1e-3, 1e-4, 1e-5],
}
GRIDS = {"paper": PAPER_GRID,
         "small": {"learning_rate": [5e-5, 3e-5], "reg_learning_rate": [0.04, 0.02]}}


def load_grid(spec: str | Mapping[str, Any], task: str | None = None,
              preset: str | None = None, overrides: Mapping[str, Any] | None = None
              ) -> dict[str, list]:
    """A checked ``{knob: [values]}`` grid from a :data:`GRIDS` name, a JSON file or a mapping,
    as JSON gives it back. With ``task``, every trial's ``build_train_config(task, preset,
    {**overrides, **trial})`` must be valid.

    Raises:
        ValueError: naming ``grid``: an unknown knob, empty, non-list or repeated values, or a
            trial that makes no valid configuration.

    Example:
        >>> load_grid("small")["learning_rate"]
        [5e-05, 3e-05]
        >>> len(trials(load_grid("paper", "rte", "quick")))
        72
    """
    grid = _read(spec)
    if not grid:
        raise _invalid(spec, "it is empty; allowed: a mapping of knob names to non-empty lists "
                       "of values")
    for name, values in grid.items():
        if name not in KNOBS:
            near = [f"did you mean {n!r}? " for n in difflib.get_close_matches(name, KNOBS, n=1)]
            raise _invalid(spec, f"knob {name!r} is unknown; {''.join(near)}allowed: "
                           f"{', '.join(KNOBS)}")
        if not isinstance(values, list) or not values:
            raise _invalid(spec, f"knob {name!r} has {values!r}; allowed: a non-empty list of "
                           "values, e.g. [5e-05, 3e-05]")
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            raise _invalid(spec, f"knob {name!r} repeats {repeated[0]!r}; allowed: distinct "
                           "values (each trial runs once)")
    if task is not None:
        build_train_config(task, preset, overrides)  # a bad preset or override names itself
        for hparams in trials(grid):
            try:
                build_train_config(task, preset, {**(overrides or {}), **hparams})
            except (ValueError, TypeError) as err:
                raise _invalid(spec, f"the trial {trial_name(hparams)} makes no valid "
                               f"configuration ({err})") from None
    return grid


def _invalid(spec, why: str) -> ValueError:
    return ValueError(f"grid={spec!r} is invalid: {why}")


def _read(spec) -> dict:
    """The grid a spec names, JSON-normalised (tuples become lists)."""
    if isinstance(spec, Mapping):
        grid = dict(spec)
    elif isinstance(spec, str) and spec in GRIDS:
        grid = GRIDS[spec]
    elif isinstance(spec, str) and os.path.isfile(spec):
        try:
            with open(spec) as f:
                grid = json.load(f)
        except (OSError, ValueError) as err:
            raise _invalid(spec, f"not a readable JSON file ({err})") from None
    else:
        raise _invalid(spec, f"choose a named grid ({', '.join(GRIDS)}) or a JSON file mapping "
                       "knob names to lists of values (no such file)")
    if not isinstance(grid, dict):
        raise _invalid(spec, f"it holds a {type(grid).__name__}, allowed: a mapping of knob "
                       "names to lists of values")
    try:
        return json.loads(json.dumps(grid))
    except (TypeError, ValueError) as err:
        raise _invalid(spec, f"values must be JSON values ({err})") from None


def trials(grid: Mapping[str, list]) -> list[dict]:
    """Every combination of the grid, the last knob varying fastest: the table's order, and
    the configurations checked before Ray starts (Tune runs the same set, from its own
    ``tune.grid_search``).

    Example:
        >>> trials({"learning_rate": [5e-5, 3e-5], "topk": [10]})
        [{'learning_rate': 5e-05, 'topk': 10}, {'learning_rate': 3e-05, 'topk': 10}]
    """
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def trial_name(hparams: Mapping[str, Any]) -> str:
    """A stable, file-system-safe name of a trial: ``knob=value`` pairs sorted by knob, values
    as JSON writes them (floats exactly) and text bare. A name needing characters outside
    ``[A-Za-z0-9._=,+-]`` or longer than ``MAX_NAME`` is cleaned and ends in a hash of the
    exact values, so two trials never share one.

    Example:
        >>> trial_name({"reg_learning_rate": 0.04, "learning_rate": 5e-5})
        'learning_rate=5e-05,reg_learning_rate=0.04'
    """
    name = ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
                    for k, v in sorted(hparams.items()))
    safe = UNSAFE.sub("_", name)
    if safe != name or len(safe) > MAX_NAME:
        digest = hashlib.sha1(json.dumps(dict(hparams), sort_keys=True).encode()).hexdigest()
        safe = f"{safe[:MAX_NAME - 9]}-{digest[:8]}"
    return safe


def trial_dir(output_dir: str, hparams: Mapping[str, Any]) -> str:
    """The absolute run folder of a trial.

    Example:
        >>> trial_dir("/runs/sweep", {"learning_rate": 5e-5})
        '/runs/sweep/trials/learning_rate=5e-05'
    """
    return os.path.join(os.path.abspath(output_dir), "trials", trial_name(hparams))
