"""Gate schedules for a target FLOPs sparsity, without training (benchmarks, baselines).

A schedule closes the ``closed[p]`` lowest-ranked bins at prune location p. With rank-bin
gates the tokens each layer keeps follow from the lengths alone
(:func:`~toplib.core.importance.kept_counts`), so a schedule's FLOPs are exact before any
forward pass.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .flops import EncoderDims, measured_sparsity
from .importance import kept_counts


def schedule_bins(closed: Sequence[int], bin_num: int) -> torch.Tensor:
    """(P, bin_num) 0/1 bin gates of a schedule: the ``closed[p]`` last (lowest-ranked) bins 0."""
    keep = torch.ones(len(closed), bin_num)
    for p, c in enumerate(closed):
        keep[p, bin_num - c:] = 0.0  # c = 0: an empty slice
    return keep


def simulate_kept(lengths: torch.Tensor, closed: Sequence[int], prune_location: Sequence[int],
                  num_layers: int, bin_num: int) -> torch.Tensor:
    """Tokens entering each layer when the ``closed[p]`` lowest-ranked bins close at location p.

    Args:
        lengths: (E,) real lengths; closed: closed bins per prune location.
    Returns:
        (E, N) long, as :func:`toplib.core.importance.kept_counts` counts them.
    Example:
        >>> simulate_kept(torch.tensor([9]), [2], (1,), 2, 4).tolist()
        [[9, 5]]
    """
    return kept_counts(lengths, schedule_bins(closed, bin_num), prune_location, num_layers, bin_num)


def schedule_for_sparsity(lengths: torch.Tensor, dims: EncoderDims, prune_location: Sequence[int],
                          bin_num: int, target: float) -> tuple[list[int], float]:
    """The schedule whose real-length FLOPs sparsity on ``lengths`` is closest to ``target``.

    Every prune location closes its lowest-ranked bins, the same number everywhere up to
    one bin (locations p < j close one more): ``t = k * P + j`` orders the schedules
    monotonically in FLOPs, so bisection on t finds the closest one.

    Args:
        lengths: (E,) real lengths of the inputs; target: in [0, 1).
    Returns:
        (closed bins per prune location, the sparsity achieved).
    Example:
        >>> schedule_for_sparsity(torch.tensor([40]), EncoderDims(3, 8, 2, 16), (1, 2), 4, 0.0)
        ([0, 0], 0.0)
    """
    loc = list(prune_location)

    def schedule(t: int) -> list[int]:
        k, j = divmod(t, len(loc))
        return [k + (p < j) for p in range(len(loc))]

    def sparsity_of(t: int) -> float:
        kept = simulate_kept(lengths, schedule(t), loc, dims.num_layers, bin_num)
        return measured_sparsity(kept, lengths, dims)

    lo, hi = 0, bin_num * len(loc)  # smallest t with sparsity >= target lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if sparsity_of(mid) < target else (lo, mid)
    best = min((t for t in (lo - 1, lo) if t >= 0), key=lambda t: abs(sparsity_of(t) - target))
    return schedule(best), sparsity_of(best)
