"""What a finished run's weights leave in its records, so that the table and figures come
back without them: best/'s predictions on the dev set (the drop's dev-set error) and its
score with gates re-derived for other sparsities (the score-vs-sparsity curve)."""
from __future__ import annotations

import json
import os
import shutil
import statistics
from typing import Sequence

import numpy as np

from ..data import compute_metrics, score
from .evaluate import EvalMode, evaluate_saved, split_summary
from .records import RESULTS_FILE, write_atomic
from .runs import read_results

DEV_FILE = "dev_predictions.json"
CURVE_FILE = "retargeted.json"  # rows written by toplib.viz.sweep.record_curve
RECORD_FILES = (RESULTS_FILE, "history.jsonl", DEV_FILE, CURVE_FILE)  # weights aside
WITHIN = 0.01
"""The drop (one point of the task's metric) under which ToP counts as keeping its teacher."""


def recorded_data(results: dict) -> dict:
    """The data a run's ``results`` record it read, without the fingerprints beside them."""
    return {k: v for k, v in (results.get("data") or {}).items()
            if not k.endswith("_fingerprint")}


def record_dev_predictions(run_dir: str, device: str = "cpu") -> str:
    """Write ``run_dir/dev_predictions.json`` (kept if there; nothing without best/'s weights):
    best/'s prediction and label per validation example, on the data its results record, for
    :func:`dev_error`."""
    path = os.path.join(run_dir, DEV_FILE)
    if not os.path.exists(path) and os.path.isdir(os.path.join(run_dir, "best")):
        results = read_results(run_dir)
        splits = evaluate_saved(os.path.join(run_dir, "best"), results["task"],
                                recorded_data(results), device, False,
                                results["config"].get("max_eval_samples"),
                                EvalMode(predictions=True))
        now = split_summary(splits, results["task"],
                            results["config"].get("select_by", "primary"))["score"]
        if abs(now - (recorded := results["best"]["score"])) > 1e-4:
            raise ValueError(f"run_dir={run_dir!r}: best/ scores {now:.6f} on its data here, "
                             f"its results record {recorded:.6f}")
        write_atomic(path, json.dumps({s: {k: m[k] for k in ("predictions", "labels")}
                                       for s, m in splits.items()}))
    return path


def dev_error(runs: Sequence[str], replicates: int = 1000) -> float | None:
    """Standard error of the mean drop of ``runs[1:]`` under ``runs[0]`` (the teacher) from
    resampling the validation examples (one bootstrap draw shared by every run); None without
    every run's ``dev_predictions.json`` (recorded here for the runs whose weights are here)."""
    if not all(os.path.exists(record_dev_predictions(r)) for r in runs):
        return None
    task, records = read_results(runs[0])["task"], []
    for r in runs:
        with open(os.path.join(r, DEV_FILE)) as f:
            records.append(json.load(f))
    rng, variances = np.random.default_rng(0), []
    for split, first in records[0].items():
        labels = np.asarray(first["labels"])
        if any(rec[split]["labels"] != first["labels"] for rec in records):
            raise ValueError(f"runs={list(runs)!r}: the runs hold different {split} labels")
        preds = [np.asarray(rec[split]["predictions"]) for rec in records]
        drops = []
        for idx in rng.integers(0, len(labels), (replicates, len(labels))):
            teacher, *top = (score(task, compute_metrics(task, p[idx], labels[idx], True))
                             for p in preds)
            drops.append(teacher - float(np.mean(top)))
        variances.append(np.var(drops, ddof=1))
    return float(np.sqrt(np.sum(variances)) / len(variances))


def seed_curve(runs: Sequence[str]) -> dict | None:
    """The seeds' curves (``runs[1:]``, each ``retargeted.json``) beside the teacher's
    (``runs[0]``: attention pruning, no training): per requested sparsity, the mean and sd
    of the score and the mean measured sparsity; None without every run's curve."""
    paths = [os.path.join(r, CURVE_FILE) for r in runs]
    if not all(os.path.exists(p) for p in paths):
        return None
    curves = []
    for path in paths:
        with open(path) as f:
            curves.append({r["requested"]: r for r in json.load(f)})
    if any(c.keys() != curves[0].keys() for c in curves):
        raise ValueError(f"runs={list(runs)!r}: the curves hold different sparsities")

    def points(rows: list[dict]) -> list[dict]:
        return [dict(requested=s, score=statistics.fmean(r[s]["score"] for r in rows),
                     score_std=statistics.stdev(r[s]["score"] for r in rows)
                     if len(rows) > 1 else None,
                     sparsity_real=statistics.fmean(r[s]["sparsity_real"] for r in rows))
                for s in sorted(curves[0])]
    return {"teacher": points(curves[:1]), "seeds": points(curves[1:])}


def within_point(points: Sequence[dict], teacher_score: float) -> float | None:
    """The highest real-length FLOPs sparsity among ``points`` (each a ``score`` and a
    ``sparsity_real``) whose score stays within :data:`WITHIN` of ``teacher_score``; None:
    none of them (a dense point does not count)."""
    kept = [p["sparsity_real"] for p in points
            if p["sparsity_real"] > 0 and teacher_score - p["score"] <= WITHIN + 1e-9]
    return max(kept, default=None)


def task_runs(task_dir: str) -> list[str]:
    """The names of the finished runs in a task's folder: ``teacher`` and every ``top*``."""
    return [name for name in sorted(os.listdir(task_dir))
            if (name == "teacher" or name.startswith("top"))
            and os.path.exists(os.path.join(task_dir, name, RESULTS_FILE))]


def export_records(task_dir: str, dest: str) -> list[str]:
    """Copy the records (no weights) of every finished run in ``task_dir`` to ``dest``, same
    layout, each run's dev predictions recorded first where its weights are; returns the
    runs copied."""
    copied = task_runs(task_dir)
    for name in copied:
        run = os.path.join(task_dir, name)
        record_dev_predictions(run)
        os.makedirs(os.path.join(dest, name), exist_ok=True)
        for file in RECORD_FILES:
            if os.path.exists(os.path.join(run, file)):
                shutil.copyfile(os.path.join(run, file), os.path.join(dest, name, file))
    return copied
