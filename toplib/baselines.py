"""Training-free baselines at a chosen FLOPs budget.

Both keep the same share of the alive tokens at every prune location of a dense teacher:
``attention`` keeps the tokens that receive the most attention (ToP's importance without
any training), ``random`` keeps a random subset. Gates are set by hand: at each prune
layer the first ``round(rho * BIN_NUM)`` bins (most important first) stay open.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .flops import EncoderDims, dense_macs, encoder_macs, expected_lengths

BISECTION_STEPS = 40


def fixed_gates(bin_num: int, num_locations: int, keep_ratio: float | Sequence[float]):
    """Deterministic (z_bins, z_pruner) keeping ``keep_ratio`` of alive tokens per location.

    Args:
        bin_num: BIN_NUM; num_locations: P; keep_ratio: one ratio, or one per location.
    Returns:
        z_bins (P, bin_num) 0/1 and z_pruner (P,) 0/1.
    Example:
        >>> z_bins, z_pruner = fixed_gates(4, 2, 0.5)
        >>> z_bins.tolist(), z_pruner.tolist()
        ([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]], [1.0, 1.0])
    """
    ratios = torch.as_tensor(keep_ratio, dtype=torch.float32).expand(num_locations)
    if ((ratios < 0) | (ratios > 1)).any():
        raise ValueError(f"keep_ratio={keep_ratio!r} is invalid: ratios must lie in [0, 1]")
    n_open = torch.round(ratios * bin_num).long()
    z_bins = (torch.arange(bin_num)[None, :] < n_open[:, None]).float()
    z_pruner = (n_open < bin_num).float()
    return z_bins, z_pruner


def keep_ratio_for_sparsity(dims: EncoderDims, prune_location: Sequence[int],
                            lengths: torch.Tensor, sparsity: float) -> float:
    """The uniform per-location keep ratio whose expected real-length FLOPs sparsity is
    ``sparsity`` on examples of the given real ``lengths`` (bisection)."""
    lengths = lengths.to(torch.float64)
    dense = dense_macs(lengths, dims).sum()
    lo, hi = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        rho = torch.full((len(prune_location),), mid, dtype=torch.float64)
        tokens = expected_lengths(lengths, rho, prune_location, dims.num_layers)
        achieved = 1 - encoder_macs(tokens, dims).sum() / dense
        lo, hi = (lo, mid) if achieved < sparsity else (mid, hi)
    return (lo + hi) / 2
