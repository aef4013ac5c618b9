"""How well one token ranking agrees with another (ToP Sec. 3.4's goal, measured).

Kendall's tau-b over all pairs, and NDCG@k with graded relevance ``k, k-1, ..., 1`` for
the reference's top-k tokens (the relevance of the ARP-2 loss in
:mod:`toplib.core.ranking`).
"""
from __future__ import annotations

import torch


def kendall_tau(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-b between two scorings of the masked entries of each row.

    Args:
        x, y: (B, n) scores; mask: (B, n) bool, entries to compare.
    Returns:
        (B,) tau-b in [-1, 1]; NaN where fewer than two untied entries exist.
    Example:
        >>> t = torch.tensor([[1., 2., 3.]])
        >>> kendall_tau(t, -t, torch.ones(1, 3, dtype=torch.bool)).item()
        -1.0
    """
    mask = mask.bool()
    n = x.shape[-1]
    upper = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
    pairs = mask[:, :, None] & mask[:, None, :] & upper  # (B, n, n) each pair once
    dx = torch.sign(x[:, :, None] - x[:, None, :])
    dy = torch.sign(y[:, :, None] - y[:, None, :])
    n0 = pairs.sum((1, 2)).double()
    untied_x = n0 - ((dx == 0) & pairs).sum((1, 2)).double()
    untied_y = n0 - ((dy == 0) & pairs).sum((1, 2)).double()
    s = (dx * dy * pairs).sum((1, 2)).double()  # concordant - discordant
    denom = (untied_x * untied_y).sqrt()
    return torch.where(denom > 0, s / denom.clamp_min(1e-12), torch.full_like(s, float("nan")))


def graded_relevance(teacher: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Relevance ``k_b, k_b - 1, ..., 1`` of the teacher's top-k masked entries, 0 elsewhere.

    Args:
        teacher: (B, n) teacher scores; mask: (B, n) bool; k: list length.
    Returns:
        (B, n) float; ``k_b = min(k, entries in the row)``.
    """
    mask = mask.bool()
    k_eff = max(1, min(k, teacher.shape[-1]))
    top = teacher.masked_fill(~mask, float("-inf")).topk(k_eff, dim=-1).indices  # (B, k)
    k_b = mask.sum(-1, keepdim=True).clamp(max=k_eff)  # (B, 1)
    position = torch.arange(k_eff, device=teacher.device)[None, :]
    grade = (k_b - position).clamp_min(0).to(teacher.dtype)  # 0 beyond the row's entries
    return torch.zeros_like(teacher).scatter(1, top, grade) * mask


def ndcg_at_k(scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor,
              k: int) -> torch.Tensor:
    """NDCG@k of ranking the masked entries by ``scores`` (linear gains, log2 discount).

    Ties in ``scores`` are broken by position (first wins).

    Args:
        scores: (B, n); relevance: (B, n) >= 0; mask: (B, n) bool; k: cut-off.
    Returns:
        (B,) in [0, 1]; NaN where a row has no relevant entry.
    """
    mask = mask.bool()
    k_eff = max(1, min(k, scores.shape[-1]))
    rel = relevance.double() * mask
    discount = 1.0 / torch.log2(torch.arange(k_eff, device=scores.device, dtype=torch.float64) + 2)
    order = scores.masked_fill(~mask, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    dcg = (rel.gather(1, order[:, :k_eff]) * discount).sum(-1)
    idcg = (rel.sort(dim=-1, descending=True).values[:, :k_eff] * discount).sum(-1)
    return torch.where(idcg > 0, dcg / idcg.clamp_min(1e-12), torch.full_like(dcg, float("nan")))
