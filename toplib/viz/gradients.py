"""How hard each term of the ToP loss pulls on the weights: gradient norms on real batches.

A loss value says little (benchmarks/results/ablations/README.md); the gradient moves the
weights. The losses are ``PruneStage.loss`` itself: at rank weight 0 the weights' gradient is
distillation's alone (the Lagrangian does not depend on the weights), and the loss is linear
in that weight, so weight 1 minus weight 0 is the rank loss's.
"""
from __future__ import annotations

import dataclasses
from statistics import fmean

import torch

from ..core.ranking import rank_loss_weight
from ..data import prepare_data
from ..data.batching import to_device
from ..hf.model import load_checkpoint
from ..train import TrainConfig, read_results
from ..train.objectives import PruneStage


def _weight_grads(stage: PruneStage, batch: dict, alpha: float, seed: int) -> list[torch.Tensor]:
    """Gradients of ``stage.loss`` w.r.t. the trainable weights at rank weight ``alpha``, draws
    seeded by ``seed`` (the global RNG left as it was)."""
    config = stage.config
    stage.config = dataclasses.replace(config, distill_rank_loss_alpha=alpha)
    weights = [p for p in stage.top.model.parameters() if p.requires_grad]
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            loss, _ = stage.loss(batch, 0)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    finally:
        stage.config = config
    return [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]


def _norm(grads: list[torch.Tensor]) -> float:
    """The L2 norm of all of ``grads`` taken as one vector (in float64)."""
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def term_gradient_norms(stage: PruneStage, batch: dict, seed: int = 0,
                        training: bool = True) -> dict:
    """{"fit", "rank"}: L2 norms of the weight gradients from logit distillation and from the
    unweighted rank loss, the same gate and dropout draws (``seed``) in both passes."""
    stage.top.train(training)
    fit = _weight_grads(stage, batch, 0.0, seed)
    both = _weight_grads(stage, batch, 1.0, seed)
    unit = rank_loss_weight(0, 1.0, stage.warmup_steps)  # the weight alpha = 1 gives at step 0
    return {"fit": _norm(fit), "rank": _norm([(b - f) / unit for b, f in zip(both, fit)])}


def run_gradient_norms(top_dir: str, num_batches: int = 4, data_dir: str | None = None,
                       device: str = "cpu") -> dict:
    """:func:`term_gradient_norms` of a finished ToP run on its first ``num_batches`` batches,
    means and ``ratio_first``/``ratio_last``: w * |grad rank| / |grad fit| at the rank weight w
    of the first and last step."""
    results = read_results(top_dir)
    config = TrainConfig.from_dict(results["config"])
    top, tokenizer, _ = load_checkpoint(top_dir, device=device)
    teacher, _, _ = load_checkpoint(results["teacher"], device=device, name="teacher")
    data = prepare_data(results["task"], tokenizer, config, data_dir)
    stage = PruneStage(top, teacher, config, data.steps_per_epoch(config))
    per_batch = [term_gradient_norms(stage, to_device(batch, device), seed=i)
                 for i, batch in zip(range(num_batches), data.train_loader(config, tokenizer, 0))]
    fit, rank = fmean(b["fit"] for b in per_batch), fmean(b["rank"] for b in per_batch)
    alpha = config.distill_rank_loss_alpha
    first = rank_loss_weight(0, alpha, stage.warmup_steps)
    last = rank_loss_weight(stage.total_steps, alpha, stage.warmup_steps)
    return {"fit": fit, "rank": rank, "per_batch": per_batch, "alpha": alpha,
            "rank_weight_first": first, "rank_weight_last": last,
            "ratio_first": first * rank / fit if fit else float("inf"),
            "ratio_last": last * rank / fit if fit else float("inf")}
