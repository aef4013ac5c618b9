"""Ranking distillation (ToP Sec. 3.4; METHOD Sec. 5) and ranking agreement.

The student's early-layer importance learns the teacher's final-layer order of its TOPK
tokens by LambdaLoss ARP-2 (Wang et al., 2018): ``sum_{y_i > y_j} (y_i - y_j) log2(1 +
exp(-sigma (s_i - s_j)))`` / list length^2. Agreement: Kendall's tau-b, and NDCG@k with
relevance ``k, ..., 1`` for the reference's top-k.
"""
from __future__ import annotations

import math

import torch

from .constraint import warmup_progress

LN2 = math.log(2.0)
RANK_SCORES = ("raw", "log", "scaled")
"""What the loss sees of the student's importance s (~1/n): ``raw`` (the release), ``log``
(gaps become log-ratios, O(1)) or ``scaled`` (s * n). On raw scores every pair's logistic
sits near ln 2 whatever the order (benchmarks/results/ablations/README.md)."""
LOG_FLOOR = 1e-8  # log of an importance of 0 (never for an alive token; guards the log)
RANK_WEIGHT_FLOOR = 0.01  # release: the rank loss keeps 1% of its weight after warm-up


def rank_loss_weight(step: int, alpha: float, warmup_steps: int) -> float:
    """Weight of the rank loss at ``step``: ``alpha * max(0.01, 1 - warm-up progress)``.

    >>> rank_loss_weight(50, 1e-3, 100), rank_loss_weight(500, 1e-3, 100)
    (0.0005, 1e-05)
    """
    return alpha * max(RANK_WEIGHT_FLOOR, 1 - warmup_progress(step, warmup_steps))


def student_scores(importance: torch.Tensor, counts: torch.Tensor, how: str = "raw") -> torch.Tensor:
    """(B, n) importance as the loss scores it (:data:`RANK_SCORES`); ``counts``: (B,) tokens
    ranked per example.

    >>> s = torch.tensor([[0.0, 0.5, 0.25, 0.25]])
    >>> student_scores(s, torch.tensor([3]), "scaled").tolist()
    [[0.0, 1.5, 0.75, 0.75]]
    """
    if how == "raw":
        return importance
    if how == "log":
        return torch.log(importance.clamp_min(LOG_FLOOR))
    if how == "scaled":
        return importance * counts[:, None].clamp_min(1).to(importance.dtype)
    raise ValueError(f"rank_score={how!r}: choose one of {', '.join(RANK_SCORES)}")


def lambda_arp2_loss(
    scores: torch.Tensor, relevance: torch.Tensor, valid: torch.Tensor | None = None,
    sigma: float = 1.0
) -> torch.Tensor:
    """(B,) ARP-2 LambdaLoss of (B, k) ``scores`` and graded ``relevance``, over the pairs with
    ``relevance_i > relevance_j``; ``valid``: (B, k) 0/1 entries that exist.

    >>> rel = torch.tensor([[2.0, 1.0, 0.0]])
    >>> bool(lambda_arp2_loss(rel, rel) < lambda_arp2_loss(-rel, rel))
    True
    """
    score_diff = scores[:, :, None] - scores[:, None, :]  # (B, k, k), s_i - s_j
    weight = (relevance[:, :, None] - relevance[:, None, :]).clamp_min(0)
    if valid is not None:
        weight = weight * (valid[:, :, None] * valid[:, None, :]).to(weight.dtype)
    pair_loss = torch.nn.functional.softplus(-sigma * score_diff) / LN2
    return (weight * pair_loss).sum(dim=(1, 2))


def top_tokens(teacher: torch.Tensor, real: torch.Tensor, topk: int) -> torch.Tensor:
    """(B, k) positions of each example's ``k = min(topk, n - 1)`` most important real tokens
    under (B, n) ``teacher`` importance, best first, [CLS] excluded; -1 past the real ones.

    >>> top_tokens(torch.tensor([[0.5, 0.1, 0.3, 0.2]]), torch.tensor([[1, 1, 1, 0]]), 3)
    tensor([[ 2,  1, -1]])
    """
    real = real.bool().clone()
    real[:, 0] = False
    k = max(1, min(topk, real.shape[1] - 1))
    top = teacher.detach().masked_fill(~real, float("-inf")).topk(k, dim=-1).indices
    past = torch.arange(k, device=top.device)[None, :] >= real.sum(-1, keepdim=True)
    return top.masked_fill(past, -1)


def rank_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor, topk: int,
    score: str = "raw", sigma: float = 1.0, pad_lists: bool = False
) -> torch.Tensor:
    """Mean over the batch of ARP-2 / k_b^2, teaching (B, n) ``student`` importance the
    teacher's order of its top-k tokens (k_b = min(``topk``, the example's real tokens)).

    ``teacher``: (B, n) final-layer importance, or its (B, >= k) :func:`top_tokens`;
    ``real``: (B, n) 0/1, [CLS] excluded here. ``pad_lists``: the release's lists, short ones
    padded with relevance-0 entries scored 0, every list divided by k^2.
    """
    k = max(1, min(topk, real.shape[1] - 1))
    top = top_tokens(teacher, real, k) if teacher.is_floating_point() else teacher[:, :k]
    real = real.bool().clone()
    real[:, 0] = False
    counts = real.sum(-1)  # (B,)
    position = torch.arange(k, device=student.device)
    k_b = counts.clamp(max=k).clamp_min(1)  # (B,) list length per example
    valid = position[None, :] < k_b[:, None]
    relevance = (k_b[:, None] - position[None, :]).clamp_min(0).to(student.dtype)
    scores = student_scores(student, counts, score).gather(1, top.clamp_min(0))
    if pad_lists:  # padded entries: relevance 0 (above), score 0, in every pair
        scores, valid = scores * valid, torch.ones_like(valid)
        k_b = torch.full_like(k_b, k)
    loss = lambda_arp2_loss(scores, relevance, valid, sigma)
    return (loss / k_b.to(loss.dtype) ** 2).mean()


# ---- ranking agreement ------------------------------------------------------------------
def kendall_tau(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) Kendall's tau-b between (B, n) scorings ``x`` and ``y`` of each row's ``mask``
    entries; NaN where fewer than two untied entries exist.

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
    """(B, n) relevance ``k_b, ..., 1`` of the (B, n) ``teacher``'s top-k masked entries, 0
    elsewhere; ``k_b = min(k, entries in the row)``."""
    mask = mask.bool()
    k_eff = max(1, min(k, teacher.shape[-1]))
    top = teacher.masked_fill(~mask, float("-inf")).topk(k_eff, dim=-1).indices  # (B, k)
    k_b = mask.sum(-1, keepdim=True).clamp(max=k_eff)  # (B, 1)
    position = torch.arange(k_eff, device=teacher.device)[None, :]
    grade = (k_b - position).clamp_min(0).to(teacher.dtype)  # 0 beyond the row's entries
    return torch.zeros_like(teacher).scatter(1, top, grade) * mask


def ndcg_at_k(scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor,
              k: int) -> torch.Tensor:
    """(B,) NDCG@k of ranking the masked entries by (B, n) ``scores`` (linear gains, log2
    discount, ties to the earlier position); NaN where a row has no relevant entry."""
    mask = mask.bool()
    k_eff = max(1, min(k, scores.shape[-1]))
    rel = relevance.double() * mask
    discount = 1.0 / torch.log2(torch.arange(k_eff, device=scores.device, dtype=torch.float64) + 2)
    order = scores.masked_fill(~mask, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    dcg = (rel.gather(1, order[:, :k_eff]) * discount).sum(-1)
    idcg = (rel.sort(dim=-1, descending=True).values[:, :k_eff] * discount).sum(-1)
    return torch.where(idcg > 0, dcg / idcg.clamp_min(1e-12), torch.full_like(dcg, float("nan")))
