"""The sweep's records: ``sweep.json`` (what the sweep is), and its table, from Tune's
(``ResultGrid.get_dataframe()``: each trial's last report) with the paper's pick of the
winner, which Tune's ``get_best_result`` cannot make: the best score among the trials that
met their sparsity target.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, NamedTuple

from ..core.config import check, is_finite
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

SWEEP_FILE, TABLE_JSON, TABLE_MD = "sweep.json", "trials.json", "trials.md"
DIRECTIONS = ("maximize", "minimize")
ROW_KEYS = ("task", "metric", "target_sparsity", "epochs", *SPARSITY_KEYS, "keep_ratio", "score",
            "teacher_score", "prune_time_s", "target_missed")
"""The figures of ``toplib.train.pipeline.table_row``; None in a row of an unfinished trial."""
_cell = functools.partial(format_cell, missing="-")  # a figure a trial does not have (yet)


class BestRun(NamedTuple):
    """The winning trial, as ``transformers.trainer_utils.BestRun`` reports one."""

    run_id: str  # the trial's name (its folder under trials/)
    objective: float  # its score
    hyperparameters: dict  # its grid values
    run_summary: Any = None  # the table of every trial (trial_rows)


def trial_rows(frame, output_dir: str, grid: dict) -> list[dict]:
    """One row per trial, in grid order, from Tune's table ``frame``.

    Rows: trial, hyperparameters, status ("finished": its final report is in ``frame`` or
    its run folder holds a finished run; else "unfinished" or "not started"), the
    ``ROW_KEYS`` and steps.
    """
    frame = frame.astype(object).where(frame.notna(), None)  # NaN: a key this trial lacks
    final = {r.get("trial"): r for r in frame.to_dict("records") if r.get("final")}
    rows = []
    for hparams in trials(grid):
        name, run_dir = trial_name(hparams), trial_dir(output_dir, hparams)
        row, report = {"trial": name, "hyperparameters": hparams}, final.get(name)
        if report:
            row.update(status="finished", **{k: report.get(k) for k in ROW_KEYS},
                       steps=int(report["steps"]))  # pandas makes ints float beside NaN
        elif os.path.exists(os.path.join(run_dir, RESULTS_FILE)):  # Tune never saw it finish
            row.update(status="finished", **table_row(run_dir),
                       steps=read_results(run_dir)["steps"])
        else:
            started = os.path.isdir(run_dir)
            row.update(status="unfinished" if started else "not started",
                       **dict.fromkeys(ROW_KEYS), steps=saved_step(run_dir) if started else None)
        rows.append(row)
    return rows


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
                and r.get("target_missed") is False and is_finite(r.get("score"))]
    pick = max if direction == "maximize" else min
    return pick(eligible, key=lambda r: r["score"]) if eligible else None


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
    name = winner and winner["trial"]
    record = {"direction": direction, "winner": name, "trials": rows}
    write_atomic(os.path.join(output_dir, TABLE_JSON), json.dumps(record, indent=2))
    verdict = (f"Winner: {name}" if name else
               "No finished trial met its sparsity target: there is no winner.")
    write_atomic(os.path.join(output_dir, TABLE_MD), format_trials(rows, direction)
                 + f"\n\n{verdict}\n")


def read_trials(output_dir: str) -> list[dict]:
    """The rows :func:`write_trials` wrote in ``output_dir``."""
    with open(os.path.join(output_dir, TABLE_JSON)) as f:
        return json.load(f)["trials"]


def open_sweep(output_dir: str, record: dict, resume: bool) -> None:
    """Record the sweep in ``output_dir/sweep.json`` (input paths relative to it), or check it
    is the one recorded there.

    Raises:
        ValueError: ``output_dir`` holds a sweep and ``resume`` is False, or holds another
            sweep (what differs is named).
    """
    path = os.path.join(output_dir, SWEEP_FILE)
    text = json.dumps(relative_inputs(record, output_dir), indent=2)
    if os.path.exists(path) and not resume:
        raise ValueError(f"output_dir={output_dir!r} already holds a sweep ({SWEEP_FILE}); "
                         "pass resume=True (drop --no-resume) to continue it, or choose "
                         "another output_dir")
    if os.path.exists(path):
        with open(path) as f:  # both as the file gives them: tuples are lists, paths absolute
            saved, now = (absolute_inputs(json.loads(t), output_dir) for t in (f.read(), text))
        diffs = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v]
        if diffs:
            raise ValueError(f"output_dir={output_dir!r} holds another sweep "
                             f"({'; '.join(diffs)}); resume it with the same arguments or "
                             "choose another output_dir")
    os.makedirs(output_dir, exist_ok=True)
    write_atomic(path, text)
