"""Setting a model's gates to a target FLOPs sparsity (benchmarks, baselines, the explorer)."""
from __future__ import annotations

import logging

import torch

from ..core.schedules import schedule_bins, schedule_for_sparsity

logger = logging.getLogger(__name__)


def set_eval_sparsity(top, lengths: torch.Tensor, target: float) -> float:
    """Set the gates so the real-length FLOPs sparsity on ``lengths`` is closest to ``target``.

    See :func:`toplib.core.schedules.schedule_for_sparsity`; :func:`gates_for_sparsity`
    gives the same gates without touching the model.

    Args:
        top: a ToPModel; lengths: (E,) real lengths of the inputs; target: in [0, 1).
    Returns:
        The sparsity achieved (as ``toplib.core.flops`` counts it).
    """
    closed, achieved = schedule_for_sparsity(lengths, top.dims, top.prune.prune_location,
                                             top.prune.bin_num, target)
    top.gates.close_lowest_bins_(closed)
    logger.info("gates set: closed bins per location %s, sparsity %.3f (target %.3f)",
                closed, achieved, target)
    return achieved


def gates_for_sparsity(top, lengths: torch.Tensor, target: float):
    """((z_bins, z_pruner) evaluation gates at ``target`` on ``lengths``, sparsity achieved);
    the model's own gates are left as they are."""
    closed, achieved = schedule_for_sparsity(lengths, top.dims, top.prune.prune_location,
                                             top.prune.bin_num, target)
    device = top.gates.bin_log_alpha.device
    z_bins = schedule_bins(closed, top.prune.bin_num).to(device)
    z_pruner = torch.tensor([float(c > 0) for c in closed], device=device)
    return (z_bins, z_pruner), achieved
