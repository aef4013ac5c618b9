"""The sweep's table, read from its trial folders, and the paper's pick of the winner. The run
folders are the source of truth: a resumed sweep, or one whose Tune state was lost, gives the
same table as an uninterrupted one.
"""
from __future__ import annotations

import functools
import json
import math
import os
from typing import Any, Mapping, NamedTuple

from ..core.config import check
from ..train.pipeline import SPARSITY_KEYS, format_cell, table_row
from ..train.records import (
    RESULTS_FILE,
    absolute_inputs,
    read_results,
    relative_inputs,
    write_atomic,
)
from ..train.rundir import saved_step
from .grid import trial_dir, trial_name, trials

SWEEP_FILE = "sweep.json"
TABLE_JSON, TABLE_MD = "trials.json", "trials.md"
DIRECTIONS = ("maximize", "minimize")
ROW_KEYS = ("task", "metric", "target_sparsity", *SPARSITY_KEYS, "keep_ratio", "score",
            "teacher_score", "prune_time_s", "target_missed")
"""The figures of ``toplib.train.pipeline.table_row``; None in a row of an unfinished trial."""
_cell = functools.partial(format_cell, missing="-")  # a figure a trial does not have (yet)


class BestRun(NamedTuple):
    """The winning trial, as ``transformers.trainer_utils.BestRun`` reports one."""

    run_id: str  # the trial's name (its folder under trials/)
    objective: float  # its score
    hyperparameters: dict  # its grid values
    run_summary: Any = None  # the table of every trial (trial_table's rows)


def trial_table(output_dir: str, grid: Mapping[str, list] | None = None) -> list[dict]:
    """One row per trial (default grid: ``sweep.json``'s), read from its run folder.

    Rows, in grid order: trial, hyperparameters, status ("finished", "unfinished" or "not
    started"), the ``ROW_KEYS`` figures and steps. Raises FileNotFoundError when there is
    neither ``sweep.json`` nor ``grid``.
    """
    if grid is None:
        saved = read_sweep(output_dir)
        if saved is None:
            raise FileNotFoundError(f"output_dir={output_dir!r} holds no sweep ({SWEEP_FILE} is "
                                    "missing): run toplib sweep / hyperparameter_search there, "
                                    "or pass grid")
        grid = saved["grid"]
    return [_trial_row(output_dir, hparams) for hparams in trials(grid)]


def _trial_row(output_dir: str, hparams: dict) -> dict:
    run_dir = trial_dir(output_dir, hparams)
    row = {"trial": trial_name(hparams), "hyperparameters": dict(hparams)}
    if os.path.exists(os.path.join(run_dir, RESULTS_FILE)):
        return dict(row, status="finished", **table_row(run_dir),
                    steps=read_results(run_dir)["steps"])
    started = os.path.isdir(run_dir)
    return dict(row, status="unfinished" if started else "not started",
                **dict.fromkeys(ROW_KEYS), steps=saved_step(run_dir) if started else None)


def select_best(rows: list[dict], direction: str = "maximize") -> dict | None:
    """The paper's winner: the best score among finished trials that met their sparsity target
    (``target_missed`` False), ties to the earlier row; None when no trial did.

    Example:
        >>> rows = [dict(status="finished", score=0.9, target_missed=True),
        ...         dict(status="finished", score=0.8, target_missed=False)]
        >>> select_best(rows)["score"]
        0.8
    """
    check("direction", direction, direction in DIRECTIONS, f"choose one of {DIRECTIONS}")
    eligible = [r for r in rows if r.get("status") == "finished"
                and r.get("target_missed") is False and _is_number(r.get("score"))]
    if not eligible:
        return None
    pick = max if direction == "maximize" else min
    return pick(eligible, key=lambda r: r["score"])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def best_run(rows: list[dict], direction: str = "maximize") -> BestRun | None:
    """:func:`select_best` as a :class:`BestRun` (run_summary: ``rows``), or None.

    Example:
        >>> best_run([dict(trial="a", hyperparameters={}, status="finished", score=0.8,
        ...                target_missed=False)]).run_id
        'a'
    """
    best = select_best(rows, direction)
    if best is None:
        return None
    return BestRun(best["trial"], best["score"], dict(best["hyperparameters"]), rows)


def format_trials(rows: list[dict], direction: str = "maximize") -> str:
    """A markdown table of the trials (scores x100, as the paper's tables), the winner marked."""
    winner = select_best(rows, direction)
    knobs = list(dict.fromkeys(k for r in rows for k in r["hyperparameters"]))
    head = [*knobs, "Status", "Score", "Teacher score", "Sparsity real / target",
            "FLOPs reduction real", "Steps", "Time (min)", "Winner"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        missed = " (target missed)" if r.get("target_missed") else ""
        time_s = r.get("prune_time_s")
        cells = [*(_cell(r["hyperparameters"].get(k), "{}") for k in knobs), r["status"],
                 _cell(r.get("score"), "{:.2f}", 100), _cell(r.get("teacher_score"), "{:.2f}", 100),
                 f"{_cell(r.get('sparsity_real'), '{:.3f}')} / "
                 f"{_cell(r.get('target_sparsity'), '{}')}{missed}",
                 _cell(r.get("reduction_real"), "{:.2f}x"), _cell(r.get("steps"), "{}"),
                 _cell(None if time_s is None else time_s / 60, "{:.1f}"),
                 "**winner**" if r is winner else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_trials(output_dir: str, rows: list[dict], direction: str = "maximize") -> None:
    """Write ``trials.json`` ({direction, winner, trials}) and ``trials.md`` in ``output_dir``."""
    winner = select_best(rows, direction)
    name = None if winner is None else winner["trial"]
    record = {"direction": direction, "winner": name, "trials": rows}
    write_atomic(os.path.join(output_dir, TABLE_JSON), json.dumps(record, indent=2))
    verdict = (f"Winner: {name}" if name else
               "No finished trial met its sparsity target: there is no winner.")
    write_atomic(os.path.join(output_dir, TABLE_MD), format_trials(rows, direction)
                 + f"\n\n{verdict}\n")


# ---- what the sweep is ------------------------------------------------------------------
def read_sweep(output_dir: str) -> dict | None:
    """The ``sweep.json`` record in ``output_dir`` (paths absolute), or None."""
    path = os.path.join(output_dir, SWEEP_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return absolute_inputs(json.load(f), output_dir)


def open_sweep(output_dir: str, record: dict, resume: bool) -> None:
    """Record the sweep in ``output_dir/sweep.json``, or check it is the one recorded there.

    Raises:
        ValueError: ``output_dir`` holds a sweep and ``resume`` is False, or holds another
            sweep (what differs is named).
    """
    # as the file gives it back: tuples are lists, paths absolute
    record = absolute_inputs(json.loads(json.dumps(relative_inputs(record, output_dir))),
                             output_dir)
    saved = read_sweep(output_dir)
    if saved is not None and not resume:
        raise ValueError(f"output_dir={output_dir!r} already holds a sweep ({SWEEP_FILE}); "
                         "pass resume=True (drop --no-resume) to continue it, or choose "
                         "another output_dir")
    diffs = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in record.items()
             if saved is not None and saved.get(k) != v]
    if diffs:
        raise ValueError(f"output_dir={output_dir!r} holds another sweep ({'; '.join(diffs)}); "
                         "resume it with the same arguments or choose another output_dir")
    os.makedirs(output_dir, exist_ok=True)
    write_atomic(os.path.join(output_dir, SWEEP_FILE),
                 json.dumps(relative_inputs(record, output_dir), indent=2))
