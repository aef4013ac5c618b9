"""Analytic MACs of a BERT-style encoder from the tokens each layer sees (METHOD Sec. 3).

Per layer, ``t`` tokens in attention and ``t_ffn`` in the FFN: ``3 t H^2`` (Q, K, V) +
``A t^2 (H/A)`` (scores) + ``A t^2`` (softmax) + ``A t^2 (H/A)`` (context) + ``t H^2``
(output) + ``2 t_ffn H I`` (FFN). Layer l's FFN counts layer l+1's tokens: the importance
that prunes them is known once layer l's attention is done.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from .config import check
from .gates import keep_rule, schedule_gates
from .importance import kept_counts, rank_bin_table, table_size


@dataclass(frozen=True)
class EncoderDims:
    """Sizes the MACs model needs: layers N, hidden H, heads A, FFN width I."""

    num_layers: int
    hidden: int
    heads: int
    intermediate: int

    @classmethod
    def from_config(cls, config) -> "EncoderDims":
        """Read the sizes off a Hugging Face config."""
        return cls(config.num_hidden_layers, config.hidden_size,
                   config.num_attention_heads, config.intermediate_size)


MAC_TERMS = ("qkv", "scores", "softmax", "context", "output", "ffn")
"""The terms of :func:`layer_mac_terms`, in the order a layer computes them."""


def layer_mac_terms(t, t_ffn, dims: EncoderDims) -> dict:
    """MACs of one layer term by term (formulas: the module doc), keyed by :data:`MAC_TERMS`.

    >>> layer_mac_terms(2, 1, EncoderDims(1, hidden=4, heads=2, intermediate=8))["scores"]
    16
    """
    h, a, i = dims.hidden, dims.heads, dims.intermediate
    return {"qkv": 3 * t * h * h, "scores": a * t * t * (h // a), "softmax": a * t * t,
            "context": a * t * t * (h // a), "output": t * h * h, "ffn": 2 * t_ffn * h * i}


def layer_macs(t: torch.Tensor, t_ffn: torch.Tensor, dims: EncoderDims) -> torch.Tensor:
    """MACs of one layer; ``t`` and ``t_ffn`` may be fractional (expected) token counts."""
    return sum(layer_mac_terms(t, t_ffn, dims).values())


def ffn_tokens(lengths: torch.Tensor) -> torch.Tensor:
    """(B, N) tokens each layer's FFN runs on: layer l+1's attention count (the last its own)."""
    return torch.cat([lengths[:, 1:], lengths[:, -1:]], dim=1)


def encoder_macs(lengths: torch.Tensor, dims: EncoderDims) -> torch.Tensor:
    """(B,) MACs of the encoder for (B, N) ``lengths``, the tokens entering each layer."""
    return layer_macs(lengths, ffn_tokens(lengths), dims).sum(-1)


def dense_macs(n: torch.Tensor, dims: EncoderDims) -> torch.Tensor:
    """(B,) MACs of the unpruned encoder for sequences of ``n`` tokens."""
    n = n.to(torch.float64) if not n.is_floating_point() else n
    return encoder_macs(n[:, None].expand(-1, dims.num_layers), dims)


def expected_lengths(
    n: torch.Tensor, keep_ratios: torch.Tensor, prune_location: Sequence[int], num_layers: int
) -> torch.Tensor:
    """(B, N) expected tokens entering each layer, ``(n - 1) * prod(rho up to l) + 1`` ([CLS]
    kept), for (B,) real lengths ``n`` and (P,) ``keep_ratios``; differentiable in these."""
    factors = [torch.ones((), dtype=keep_ratios.dtype, device=keep_ratios.device)] * num_layers
    for rho, loc in zip(keep_ratios, prune_location):
        factors[loc] = rho
    cumulative = torch.cumprod(torch.stack(factors), dim=0)  # (N,)
    return (n.to(keep_ratios.dtype)[:, None] - 1) * cumulative[None, :] + 1


@functools.lru_cache(maxsize=32)
def bin_occupancy(max_tokens: int, bin_num: int) -> torch.Tensor:
    """(max_tokens + 1, bin_num) float64: the share of ``m`` ranked tokens in each rank bin,
    m = 0 .. max_tokens. With fewer tokens than bins some bins are empty; row 0 is uniform."""
    table = rank_bin_table(max_tokens, bin_num)  # (max_tokens + 1, max_tokens), bin_num = none
    counts = torch.zeros(max_tokens + 1, bin_num + 1, dtype=torch.float64)
    counts.scatter_add_(1, table, torch.ones_like(table, dtype=torch.float64))
    counts = counts[:, :bin_num]
    counts[0] = 1.0
    return counts / counts.sum(-1, keepdim=True)


def binned_expected_lengths(n: torch.Tensor, bin_keep: torch.Tensor, pruner_on: torch.Tensor,
                            prune_location: Sequence[int], num_layers: int) -> torch.Tensor:
    """(B, N) expected tokens entering each layer, counting the bins a length's ranks fill.

    :func:`expected_lengths` gives each bin 1 / BIN_NUM of the tokens, false for short inputs.
    Here a prune layer with ``m`` candidates keeps ``m (1 - (1 - occupancy(m) @ p_bins)
    p_pruner)``, exactly at the first prune layer; later ones interpolate at the expected m.
    ``n``: (B,) real lengths with [CLS]; ``bin_keep``: (P, bin_num) P(bin open);
    ``pruner_on``: (P,) P(pruner on). Differentiable in both.
    """
    dtype = bin_keep.dtype
    table = bin_occupancy(table_size(int(n.max()) - 1), bin_keep.shape[-1]).to(
        dtype=dtype, device=bin_keep.device)
    locations = {loc: p for p, loc in enumerate(prune_location)}
    m = n.to(dtype) - 1
    rows = []
    for layer in range(num_layers):
        if layer in locations:
            p = locations[layer]
            low = m.detach().floor().long().clamp(0, table.shape[0] - 1)
            high = (low + 1).clamp(max=table.shape[0] - 1)
            frac = (m.detach() - low.to(dtype))[:, None]
            occupancy = table[low] * (1 - frac) + table[high] * frac  # (B, bin_num)
            kept_share = occupancy @ bin_keep[p]
            m = m * (1 - (1 - kept_share) * pruner_on[p])
        rows.append(m + 1)
    return torch.stack(rows, dim=1)


def expected_tokens(lengths: torch.Tensor, bin_keep: torch.Tensor, pruner_on: torch.Tensor,
                    prune_location: Sequence[int], num_layers: int,
                    binned: bool = True) -> torch.Tensor:
    """(B, N) expected tokens per layer: :func:`binned_expected_lengths`, or with
    ``binned=False`` the release's :func:`expected_lengths`."""
    if binned:
        return binned_expected_lengths(lengths, bin_keep, pruner_on, prune_location, num_layers)
    keep_ratios = keep_rule(bin_keep.mean(-1, keepdim=True), pruner_on)[:, 0]  # as the gates
    return expected_lengths(lengths, keep_ratios, prune_location, num_layers)


def expected_sparsity(lengths: torch.Tensor, bin_keep: torch.Tensor, pruner_on: torch.Tensor,
                      prune_location: Sequence[int], dims: EncoderDims,
                      binned: bool = True, mean_of_ratios: bool = False) -> torch.Tensor:
    """Differentiable expected FLOPs sparsity of (B,) real lengths, which the constraint holds.
    ``mean_of_ratios``: the release's ``1 - mean_b(MACs_b / dense_b)``; False: toplib's ratio
    of sums, ``1 - sum MACs / sum dense`` (long examples weigh more)."""
    tokens = expected_tokens(lengths, bin_keep, pruner_on, prune_location, dims.num_layers,
                             binned)
    pruned, dense = encoder_macs(tokens, dims), dense_macs(lengths.to(tokens.dtype), dims)
    return mean_ratio_sparsity(pruned, dense) if mean_of_ratios else sparsity(pruned, dense)


def release_sparsity(lengths: torch.Tensor, z_bins: torch.Tensor, z_pruner: torch.Tensor,
                     prune_location: Sequence[int], dims: EncoderDims,
                     padded_length: int | None = None) -> dict:
    """{"sparsity_release_real", "sparsity_release_padded" (with ``padded_length``)}: the
    sparsity the release reports and selects by (``l0_module.py`` ``get_mac_and_constraint``),
    under (P, bin_num) and (P,) 0/1 gates, each bin 1 / BIN_NUM of the tokens, as a mean of
    per-example ratios at the (E,) real lengths.

    >>> dims = EncoderDims(num_layers=2, hidden=4, heads=1, intermediate=8)
    >>> gates = torch.tensor([[1.0, 0.0]]), torch.tensor([1.0])  # half of layer 1 pruned
    >>> round(release_sparsity(torch.tensor([9]), *gates, (1,), dims)
    ...       ["sparsity_release_real"], 4)  # 1 - MACs(9, 5 tokens) / MACs(9, 9)
    0.3381
    """
    lengths = lengths.to(torch.float64)
    tokens = expected_tokens(lengths, z_bins.to(torch.float64), z_pruner.to(torch.float64),
                             prune_location, dims.num_layers, binned=False)
    pruned = encoder_macs(tokens, dims)
    out = {"sparsity_release_real": float(mean_ratio_sparsity(pruned, dense_macs(lengths, dims)))}
    if padded_length is not None:
        padded = dense_macs(torch.full_like(lengths, float(padded_length)), dims)
        out["sparsity_release_padded"] = float(mean_ratio_sparsity(pruned, padded))
    return out


def sparsity(pruned: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """FLOPs sparsity as a ratio of sums, ``1 - sum(pruned) / sum(dense)``, over a batch."""
    return 1.0 - pruned.sum() / dense.sum()


def mean_ratio_sparsity(pruned: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """FLOPs sparsity as the release averages it: ``1 - mean(pruned / dense)``."""
    return 1.0 - (pruned / dense).mean()


def flops_figures(kept: torch.Tensor, lengths: torch.Tensor, dims: EncoderDims,
                  padded_length: int | None = None) -> dict:
    """FLOPs sparsity and reduction of (E, N) measured token counts against the dense encoder
    at the (E,) real lengths and, with ``padded_length``, padded (the paper's convention);
    also keep_ratio (per layer: tokens entering it / real tokens) and mean_length."""
    kept, lengths = kept.to(torch.float64), lengths.to(torch.float64)
    pruned = encoder_macs(kept, dims).sum()
    real = dense_macs(lengths, dims).sum()
    out = {"sparsity_real": float(1 - pruned / real), "reduction_real": float(real / pruned)}
    if padded_length is not None:
        padded = dense_macs(torch.full_like(lengths, float(padded_length)), dims).sum()
        out.update(sparsity_padded=float(1 - pruned / padded),
                   reduction_padded=float(padded / pruned))
    out.update(keep_ratio=(kept.sum(0) / lengths.sum()).tolist(),
               mean_length=float(lengths.mean()))
    return out


def measured_sparsity(kept: torch.Tensor, lengths: torch.Tensor, dims: EncoderDims) -> float:
    """Real-length FLOPs sparsity of measured token counts (see :func:`flops_figures`)."""
    return flops_figures(kept, lengths, dims)["sparsity_real"]


# ---- gate schedules for a FLOPs target (benchmarks, baselines) --------------------------
def simulate_kept(lengths: torch.Tensor, closed: Sequence[int], prune_location: Sequence[int],
                  num_layers: int, bin_num: int, eps: float = 0.0) -> torch.Tensor:
    """(E, N) tokens entering each layer for (E,) real lengths when the ``closed[p]``
    lowest-ranked bins close at location p (``eps``: the rank-to-bin rounding)."""
    keep = schedule_gates(closed, bin_num)[0]  # pruners on where a bin closes
    return kept_counts(lengths, keep, prune_location, num_layers, bin_num, eps)


def schedule_for_sparsity(lengths: torch.Tensor, dims: EncoderDims, prune_location: Sequence[int],
                          bin_num: int, target: float) -> tuple[list[int], float]:
    """(closed bins per prune location, sparsity achieved): the schedule whose real-length
    FLOPs sparsity on (E,) ``lengths`` is closest to ``target``. Each location closes its k
    lowest bins, p < j one more: ``t = k * P + j`` orders schedules by FLOPs, so t is bisected.
    """
    check("sparsity", target, isinstance(target, (int, float)) and 0.0 <= target < 1.0,
          "a FLOPs sparsity lies in [0, 1)")
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
