"""The numbers behind the training-curve observations, read from a run's history records
(``toplib.train.read_history``): the best evaluation and whether the score fell after it,
when the FLOPs constraint was met, what each term adds to the total loss, and each prune
layer's keep ratio as the gates expect it and as evaluation measures it."""
from __future__ import annotations

import math
from statistics import fmean
from typing import Sequence

FIT_KEYS = ("distill_loss", "task_loss")


def _kind(history: list[dict], kind: str) -> list[dict]:
    return [r for r in history if r.get("kind") == kind]


def fit_key(history: list[dict]) -> str:
    """The fit term a run logged: ``distill_loss`` (ToP, classification) or ``task_loss``."""
    return next((k for k in FIT_KEYS if any(k in r for r in _kind(history, "train"))), FIT_KEYS[1])


def score_summary(history: list[dict], num_examples: int | None = None) -> dict:
    """The evaluations of a run in a few numbers.

    Returns:
        best_score/best_step (the first highest evaluation), first_/final_score and _step,
        evaluations, drop_after_best (best minus final), standard_error (binomial, of a
        score in [0, 1] on ``num_examples`` examples; None otherwise), fit_loss_start/_end
        (mean training loss over the first / last quarter of the logged steps).

    Example:
        >>> h = [{"kind": "eval", "step": s, "score": v} for s, v in ((1, .5), (2, .8), (3, .7))]
        >>> score_summary(h)["best_step"], round(score_summary(h)["drop_after_best"], 2)
        (2, 0.1)
    """
    evals = _kind(history, "eval")
    if not evals:
        raise ValueError("history has no evaluation records (kind 'eval')")
    best = max(evals, key=lambda r: r["score"])  # max keeps the first of equal scores
    p = best["score"]
    se = math.sqrt(p * (1 - p) / num_examples) if num_examples and 0 <= p <= 1 else None
    key = fit_key(history)
    fit = [r[key] for r in _kind(history, "train") if r.get(key) is not None]
    quarter = max(1, len(fit) // 4)
    return dict(best_score=p, best_step=best["step"], first_score=evals[0]["score"],
                first_step=evals[0]["step"], final_score=evals[-1]["score"],
                final_step=evals[-1]["step"], evaluations=len(evals),
                drop_after_best=p - evals[-1]["score"], standard_error=se,
                fit_loss_start=fmean(fit[:quarter]) if fit else None,
                fit_loss_end=fmean(fit[-quarter:]) if fit else None)


def constraint_met_step(history: list[dict], target: float, epsilon: float = 0.01) -> int | None:
    """The first evaluation step whose measured sparsity reaches ``target - epsilon``."""
    return next((r["step"] for r in _kind(history, "eval")
                 if r.get("sparsity_real", 0.0) >= target - epsilon), None)


def largest_overshoot(history: list[dict]) -> dict:
    """The training record where the gates' expected sparsity most exceeds the warmed-up
    target: ``step``, ``expected``, ``target`` and ``overshoot`` (expected - target)."""
    train = [r for r in _kind(history, "train") if "expected_sparsity" in r]
    if not train:
        raise ValueError("history has no pruning training records")
    worst = max(train, key=lambda r: r["expected_sparsity"] - r["target_sparsity"])
    return dict(step=worst["step"], expected=worst["expected_sparsity"],
                target=worst["target_sparsity"],
                overshoot=worst["expected_sparsity"] - worst["target_sparsity"])


def loss_terms(history: list[dict], since_step: int = 0) -> dict:
    """Mean size of each term of the pruning loss over the training records from
    ``since_step`` on: fit (distillation), lagrangian (signed) and abs_lagrangian, rank_loss,
    rank_weight, weighted_rank (weight x rank loss), total; rank_weight_first/_last;
    rank_loss_start/_end (means over the first / last quarter of the records); and
    rank_share, the weighted rank term's share of fit + |Lagrangian| + weighted rank.

    Example:
        >>> h = [{"kind": "train", "step": 1, "distill_loss": 0.2, "lagrangian_loss": -0.1,
        ...       "rank_loss": 3.0, "rank_weight": 1e-3, "loss": 0.103}]
        >>> round(loss_terms(h)["rank_share"], 4)
        0.0099
    """
    key = fit_key(history)
    train = [r for r in _kind(history, "train") if r["step"] >= since_step and "rank_loss" in r]
    if not train:
        raise ValueError(f"no pruning training records from step {since_step} on")
    weights = [r.get("rank_weight", float("nan")) for r in train]
    terms = dict(fit=fmean(r[key] for r in train),
                 lagrangian=fmean(r["lagrangian_loss"] for r in train),
                 abs_lagrangian=fmean(abs(r["lagrangian_loss"]) for r in train),
                 rank_loss=fmean(r["rank_loss"] for r in train), rank_weight=fmean(weights),
                 weighted_rank=fmean(w * r["rank_loss"] for w, r in zip(weights, train)),
                 total=fmean(r["loss"] for r in train if "loss" in r),
                 rank_weight_first=weights[0], rank_weight_last=weights[-1])
    quarter = max(1, len(train) // 4)
    terms["rank_loss_start"] = fmean(r["rank_loss"] for r in train[:quarter])
    terms["rank_loss_end"] = fmean(r["rank_loss"] for r in train[-quarter:])
    terms["rank_share"] = terms["weighted_rank"] / (
        terms["fit"] + terms["abs_lagrangian"] + terms["weighted_rank"])
    return terms


def keep_ratios(history: list[dict], prune_location: Sequence[int], step: int | None = None) -> dict:
    """Each prune layer's keep ratio at evaluation ``step`` (None: the last): expected by the
    gates (the last training record up to that step) and measured (the evaluation's tokens
    entering layer l over those entering layer l - 1: conditional), and the measured share of
    the real tokens entering each prune layer (cumulative).

    Returns:
        dict of lists, one value per prune layer: layers, expected, measured, cumulative.
    """
    evals = [r for r in _kind(history, "eval") if step is None or r["step"] == step]
    if not evals:
        raise ValueError(f"no evaluation at step={step!r}")
    ev = evals[-1]
    train = [r for r in _kind(history, "train")
             if r["step"] <= ev["step"] and r.get("expected_keep_ratio")]
    cum = ev["keep_ratio"]
    return dict(layers=list(prune_location),
                expected=list(train[-1]["expected_keep_ratio"]) if train else None,
                measured=[cum[loc] / cum[loc - 1] if cum[loc - 1] else 0.0
                          for loc in prune_location],
                cumulative=[cum[loc] for loc in prune_location])
