"""The reproduction study's records (``benchmarks/ablations.py`` writes one JSON per run to
``benchmarks/results/ablations/``) as tidy tables for its figures (``plots.study``)."""
from __future__ import annotations

import json
import os

import pandas as pd

STUDY_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                          os.pardir, "benchmarks", "results", "ablations"))


def load_study(directory: str = STUDY_DIR) -> list[dict]:
    """Every collected run of the study: one dict per ``<task>_<arm>_seed<k>.json``."""
    names = sorted(f for f in os.listdir(directory) if f.endswith(".json"))
    return [json.load(open(os.path.join(directory, f))) for f in names]


def _drop(row: dict, score: float | None = None) -> float:
    return 100 * ((row["score"] if score is None else score) - row["teacher_score"])


def _varied(rows: list[dict], arms, column: str, value):
    """One row per run of ``arms``: task, ``column`` (``value(run)``), seed, drop,
    sparsity_real; tasks run at one value of ``column`` only left out."""
    df = pd.DataFrame([{"task": r["task"], column: value(r), "seed": r["seed"], "drop": _drop(r),
                        "sparsity_real": r["evaluation"]["sparsity_real"]}
                       for r in rows if r["arm"] in arms])
    return df[df.groupby("task")[column].transform("nunique") > 1] if len(df) else df


def budget_frame(rows: list[dict]):
    """One row per run of the budget study: task, budget, seed, drop, sparsity_real (tasks run
    at one budget only, e.g. a baseline task's 3x runs, left out)."""
    return _varied(rows, ("std_x1", "std_x3", "std_x10"), "budget",
                   lambda r: r["overrides"]["budget"])


PRUNE_LAYERS = ("from layer 1", "from layer 2")
PRUNE_LAYER_TITLE = ("ToP at the paper's target, 3x budget, pruned from layer 1 or 2:\n"
                     "mean ± sd over seeds (dots: seeds; measured sparsity in brackets)")


def prune_layer_frame(rows: list[dict]):
    """One row per 3x run of the tasks run with both prune layouts: task, method ("from layer
    k", k the first pruned layer), seed, drop, sparsity_real."""
    return _varied(rows, ("std_x3", "std_x3_from1", "std_x3_from2"), "method",
                   lambda r: f"from layer {r['gates']['prune_location'][0]}")


BASELINE_NAMES = {"std_x3": "ToP", "norank_x3": "ToP, no ranking loss",
                  "topk_x3": "top-k by attention, trained", "attention": "attention, no training",
                  "random": "random, no training"}


def baseline_frame(rows: list[dict], tasks):
    """One row per run and method at ToP's FLOPs: task, method, seed, drop, sparsity_real
    (the training-free baselines from each ToP run's row), for ``tasks``."""
    out = []
    for r in rows:
        if r["task"] not in tasks or r["arm"] not in BASELINE_NAMES:
            continue
        out.append(dict(task=r["task"], method=BASELINE_NAMES[r["arm"]], seed=r["seed"],
                        drop=_drop(r), sparsity_real=r["evaluation"]["sparsity_real"]))
        for b in r.get("training_free", []) if r["arm"] == "std_x3" else []:
            if b["method"] in BASELINE_NAMES:
                out.append(dict(task=r["task"], method=BASELINE_NAMES[b["method"]],
                                seed=r["seed"], drop=_drop(r, b["score"]),
                                sparsity_real=b["sparsity_real"]))
    return pd.DataFrame(out)


RETARGET_ARMS = ("std_x3", "std_x3_s030", "std_x3_s050")  # one budget, several targets


def retarget_frame(rows: list[dict], task: str):
    """The task's budget-3 runs: each one's re-derived points (source: its trained target)
    and the runs themselves (source "trained"): source, target, requested, seed,
    sparsity_real, score (points)."""
    out = []
    for r in rows:
        if r["task"] != task or r["arm"] not in RETARGET_ARMS or "retargeted" not in r:
            continue
        target = max(h["target_sparsity"] for h in r["history"])
        out.append(dict(source="trained", target=target, requested=target, seed=r["seed"],
                        sparsity_real=r["evaluation"]["sparsity_real"], score=100 * r["score"]))
        out += [dict(source=target, target=target, requested=p["requested"], seed=r["seed"],
                     sparsity_real=p["sparsity_real"], score=100 * p["score"])
                for p in r["retargeted"] if p["method"] == "attention"]
    return pd.DataFrame(out)
