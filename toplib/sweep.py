"""Score against FLOPs: ToP at several sparsity targets, and the training-free baselines at
the FLOPs sparsity each ToP model actually measured.

Both baselines prune a dense teacher with the same per-location bin schedule, chosen by
:func:`toplib.infer.set_eval_sparsity` to hit the requested real-length FLOPs sparsity on
the evaluation inputs: ``attention`` ranks tokens by the attention they receive (ToP's
importance without training), ``random`` at random. The two therefore prune exactly the
same number of tokens per layer and their measured FLOPs are equal.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Sequence

import pandas as pd
import torch

from .analysis import BASELINES, read_history
from .config import TrainConfig, build_train_config

logger = logging.getLogger(__name__)

FLOPS_KEYS = ("sparsity_real", "reduction_real", "sparsity_padded", "reduction_padded")


def run_metrics(run_dir: str) -> dict:
    """Measured metrics of a finished ToP run's chosen checkpoint.

    The best evaluation, or the last one (``target_missed`` True) when no evaluation met
    the sparsity target. Scores are averaged over validation splits, FLOPs from the first.
    """
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    best = results["best"]
    if best.get("results"):
        m = dict(next(iter(best["results"].values())), score=best["score"])
    else:
        m = [r for r in read_history(run_dir) if r["kind"] == "eval"][-1]
    out = {k: m[k] for k in ("score", *FLOPS_KEYS, "keep_ratio")}
    out.update(target_missed=bool(best.get("target_missed", False)),
               teacher_score=results.get("teacher_score"))
    return out


@torch.no_grad()
def evaluate_with_gates(top, loaders: dict, spec, max_seq_length: int, gates=None,
                        random_ranking: bool = False, pruning: bool = True, seed: int = 0,
                        device: str = "cpu") -> dict:
    """Like ``toplib.evaluate.evaluate_model`` over every split, with given gates.

    Args:
        loaders: {split: DataLoader}; gates: (z_bins, z_pruner) or None (the model's).
        random_ranking: rank tokens at random (seeded by ``seed``).
    Returns:
        score (mean over splits) and the first split's FLOPs figures and keep_ratio.
    """
    from .evaluate import evaluate_splits, mean_score
    torch.manual_seed(seed)
    results = evaluate_splits(top, loaders, spec, max_seq_length, pruning, device, progress=False,
                              gates=gates, random_ranking=random_ranking)
    first = next(iter(results.values()))
    return {"score": mean_score(results), **{k: first[k] for k in FLOPS_KEYS},
            "keep_ratio": first["keep_ratio"]}


def baselines_at(teacher_dir: str, task: str, sparsities: Sequence[float], config: TrainConfig,
                 data_dir: str | None = None, methods: Sequence[str] = BASELINES,
                 seed: int = 0, device: str = "cpu") -> list[dict]:
    """Evaluate the dense teacher and the baselines at each requested FLOPs sparsity.

    Args:
        teacher_dir: teacher checkpoint or run directory.
        sparsities: real-length FLOPs sparsities to match (e.g. ToP's measured ones).
        config: gives the pruning structure (``config.prune``) and evaluation subset.
    Returns:
        One dict per (method, sparsity), plus the teacher's (method "teacher"):
        method, requested, score and the measured FLOPs figures.
    """
    from transformers import AutoTokenizer

    from .checkpoint import checkpoint_path
    from .infer import set_eval_sparsity
    from .loading import prepare_data
    from .model import ToPModel
    unknown = set(methods) - set(BASELINES)
    if unknown:
        raise ValueError(f"methods={list(methods)!r} is invalid: choose among {BASELINES}")
    path = checkpoint_path(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    top = ToPModel.from_pretrained(path, prune=config.prune).to(device).eval()
    data = prepare_data(task, tokenizer, config, data_dir, need_train=False)
    loaders = data.eval_loaders(config, tokenizer)
    first = next(iter(data.validation.values()))
    lengths = torch.tensor([len(e["input_ids"]) for e in first])
    common = dict(spec=data.spec, max_seq_length=data.max_seq_length, seed=seed, device=device)
    rows = [dict(method="teacher", requested=0.0,
                 **evaluate_with_gates(top, loaders, pruning=False, **common))]
    for sparsity in sparsities:
        set_eval_sparsity(top, lengths, float(sparsity))
        gates = tuple(g.to(device) for g in top.gates(training=False))
        for method in methods:
            rows.append(dict(method=method, requested=float(sparsity), **evaluate_with_gates(
                top, loaders, gates=gates, random_ranking=method == "random", **common)))
    return rows


def sparsity_sweep(task: str, teacher_dir: str, output_dir: str, targets: Sequence[float],
                   preset: str | None = "quick", overrides: dict | None = None,
                   data_dir: str | None = None, methods: Sequence[str] = BASELINES,
                   device: str = "cpu", progress: bool = False) -> pd.DataFrame:
    """ToP at each target (one run each, reused when finished) and baselines at its FLOPs.

    Args:
        targets: SPARSITY values; run ``t`` goes to ``output_dir/top-<t>``.
        preset, overrides: as ``build_train_config`` (``sparsity`` is set per target).
    Returns:
        DataFrame: method ("ToP", "attention", "random", "teacher"), target (the ToP
        target a baseline is matched to; 0 for the teacher), requested, score,
        sparsity_real, reduction_real, sparsity_padded, reduction_padded, target_missed.
    Example:
        >>> df = sparsity_sweep("rotten_tomatoes", "runs/rt/teacher", "runs/rt/sweep",
        ...                     [0.3, 0.5, 0.7])  # doctest: +SKIP
    """
    from .notebook import finished_run
    from .train import prune
    rows, config = [], None
    for target in targets:
        config = build_train_config(task, preset, dict(overrides or {}, sparsity=float(target)))
        run_dir = os.path.join(output_dir, f"top-{target:g}")
        if finished_run(run_dir) is None:
            prune(task, teacher_dir, run_dir, config=config, data_dir=data_dir, resume=True,
                  device=device, progress=progress)
        rows.append(dict(method="ToP", target=float(target), requested=float(target),
                         **run_metrics(run_dir)))
    config = config or build_train_config(task, preset, overrides)
    measured = [r["sparsity_real"] for r in rows]
    for row in baselines_at(teacher_dir, task, measured, config, data_dir, methods,
                            seed=config.seed, device=device):
        match = [r["target"] for r in rows if r["sparsity_real"] == row["requested"]]
        rows.append(dict(row, target=match[0] if match else 0.0, target_missed=False))
    df = pd.DataFrame(rows)
    return df.drop(columns=["keep_ratio"], errors="ignore")
