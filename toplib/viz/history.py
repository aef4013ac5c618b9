"""The numbers behind the training-curve observations, read from a run's history records."""
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


def score_summary(history: list[dict], num_examples: int | None = None,
                  metric: str | None = None) -> dict:
    """The evaluations of a run in a few numbers; ``standard_error`` is the binomial
    ``sqrt(p (1 - p) / n)`` of the best score for ``metric`` "accuracy", else None.

    Example:
        >>> h = [{"kind": "eval", "step": s, "score": v} for s, v in ((1, .5), (2, .8), (3, .7))]
        >>> score_summary(h)["best_step"], round(score_summary(h)["drop_after_best"], 2)
        (2, 0.1)
        >>> round(score_summary(h, 100, "accuracy")["standard_error"], 3)
        0.04
        >>> score_summary(h, 100, "f1")["standard_error"] is None
        True
    """
    evals = _kind(history, "eval")
    if not evals:
        raise ValueError("history has no evaluation records (kind 'eval')")
    best = max(evals, key=lambda r: r["score"])  # max keeps the first of equal scores
    p = best["score"]
    se = math.sqrt(p * (1 - p) / num_examples) \
        if metric == "accuracy" and num_examples and 0 <= p <= 1 else None
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
    """The training record where expected sparsity most exceeds the warmed-up target."""
    train = [r for r in _kind(history, "train") if "expected_sparsity" in r]
    if not train:
        raise ValueError("history has no pruning training records")
    worst = max(train, key=lambda r: r["expected_sparsity"] - r["target_sparsity"])
    return dict(step=worst["step"], expected=worst["expected_sparsity"],
                target=worst["target_sparsity"],
                overshoot=worst["expected_sparsity"] - worst["target_sparsity"])


def loss_terms(history: list[dict], since_step: int = 0) -> dict:
    """Mean size of each pruning-loss term from ``since_step`` on; ``rank_share``: the weighted rank
    term's share of fit + |Lagrangian| + weighted rank. A ValueError names a missing key.

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
    for key_ in (key, "lagrangian_loss", "rank_weight", "loss"):
        missing = [r["step"] for r in train if r.get(key_) is None]
        if missing:
            raise ValueError(f"training records without {key_!r} (steps {missing[:5]}...): "
                             "this history was not logged by a ToP pruning run")
    weights = [r["rank_weight"] for r in train]
    terms = dict(fit=fmean(r[key] for r in train),
                 lagrangian=fmean(r["lagrangian_loss"] for r in train),
                 abs_lagrangian=fmean(abs(r["lagrangian_loss"]) for r in train),
                 rank_loss=fmean(r["rank_loss"] for r in train), rank_weight=fmean(weights),
                 weighted_rank=fmean(w * r["rank_loss"] for w, r in zip(weights, train)),
                 total=fmean(r["loss"] for r in train),
                 rank_weight_first=weights[0], rank_weight_last=weights[-1])
    quarter = max(1, len(train) // 4)
    terms["rank_loss_start"] = fmean(r["rank_loss"] for r in train[:quarter])
    terms["rank_loss_end"] = fmean(r["rank_loss"] for r in train[-quarter:])
    terms["rank_share"] = terms["weighted_rank"] / (
        terms["fit"] + terms["abs_lagrangian"] + terms["weighted_rank"])
    return terms


def keep_ratios(history: list[dict], prune_location: Sequence[int], step: int | None = None) -> dict:
    """Each prune layer's keep ratio at evaluation ``step`` (None: the last) on the tokens the gates
    rank ([CLS] excluded): ``expected`` (the gates' rho), ``measured`` ``(n_l - 1) / (n_{l-1} - 1)``
    from mean tokens per layer (exact: every example keeps [CLS]) and ``cumulative`` (share of real
    tokens entering). ValueError for a missing evaluation, ``mean_length`` or gate record, or a
    prune location below 1."""
    evals = [r for r in _kind(history, "eval") if step is None or r["step"] == step]
    if not evals:
        raise ValueError(f"no evaluation at step={step!r}")
    ev = evals[-1]
    bad = [loc for loc in prune_location if loc < 1]
    if bad:
        raise ValueError(f"prune_location {list(prune_location)} holds {bad}: a prune layer must be "
                         ">= 1 (layer 0 has no previous layer to keep tokens of)")
    if "mean_length" not in ev:
        raise ValueError(f"the evaluation at step {ev['step']} has no mean_length")
    train = [r for r in _kind(history, "train")
             if r["step"] <= ev["step"] and r.get("expected_keep_ratio")]
    if not train:
        raise ValueError(f"no training record up to step {ev['step']} has expected_keep_ratio: "
                         "the history is not a pruning run's, nothing to compare")
    tokens = [ratio * ev["mean_length"] for ratio in ev["keep_ratio"]]  # [CLS] included
    return dict(layers=list(prune_location), expected=list(train[-1]["expected_keep_ratio"]),
                measured=[(tokens[loc] - 1) / (tokens[loc - 1] - 1) if tokens[loc - 1] > 1 else 0.0
                          for loc in prune_location],
                cumulative=[ev["keep_ratio"][loc] for loc in prune_location])


def reused_config(results: dict, requested, run_dir: str):
    """The TrainConfig the run was trained with, printing a notice for each knob that differs
    from ``requested``.

    Example:
        >>> from toplib.train import build_train_config
        >>> c = build_train_config("rotten_tomatoes", "quick", {})
        >>> reused_config({"config": dict(c.to_dict(), sparsity=0.7)}, c, "runs/x").sparsity
        NOTICE: runs/x was trained with sparsity=0.7, not the requested 0.5; the observations below describe the run as trained. To train with the parameters asked for, pass a new output_dir or overwrite=True.
        0.7
    """
    from ..train import TrainConfig
    from ..train.config import config_differences
    differ = config_differences(requested.to_dict(), results["config"], shared_only=True)
    if differ:
        knobs = ", ".join(f"{k}={run!r}, not the requested {asked!r}"
                          for k, (asked, run) in differ.items())
        print(f"NOTICE: {run_dir} was trained with {knobs}; the observations below describe the "
              "run as trained. To train with the parameters asked for, pass a new output_dir "
              "or overwrite=True.")
    return TrainConfig.from_dict(results["config"])
