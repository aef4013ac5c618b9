"""Ranking distillation (ToP Sec. 3.4; METHOD Sec. 5).

The student's early-layer importance is taught to order the teacher's TOPK tokens as the
teacher's final layer does, with the LambdaLoss ARP-2 pairwise loss (Wang et al., 2018):
``sum_{y_i > y_j} (y_i - y_j) * log2(1 + exp(-sigma (s_i - s_j)))``, divided by the list
length squared.
"""
from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def lambda_arp2_loss(
    scores: torch.Tensor, relevance: torch.Tensor, valid: torch.Tensor | None = None,
    sigma: float = 1.0
) -> torch.Tensor:
    """ARP-2 LambdaLoss per list.

    Args:
        scores: (B, k) predicted scores; relevance: (B, k) graded relevance (higher first).
        valid: (B, k) optional 0/1 mask of list entries that exist.
    Returns:
        (B,) loss, summed over the ordered pairs with ``relevance_i > relevance_j``.
    Example:
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


def rank_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor, topk: int
) -> torch.Tensor:
    """Loss teaching ``student`` importance the teacher's order of its top-k tokens.

    Args:
        student: (B, n) student importance of one layer.
        teacher: (B, n) teacher final-layer importance (no gradient needed).
        real: (B, n) 0/1 real-token mask; [CLS] (position 0) is excluded here.
        topk: TOPK, tokens per example taken from the teacher's ranking; an example with
            fewer real tokens uses all of them.
    Returns:
        scalar, mean over the batch of ARP-2 / k_b^2.
    """
    real = real.bool().clone()
    real[:, 0] = False
    counts = real.sum(-1)  # (B,)
    k = max(1, min(topk, real.shape[1] - 1))
    teacher = teacher.detach().masked_fill(~real, float("-inf"))
    top = teacher.topk(k, dim=-1).indices  # (B, k), best first
    position = torch.arange(k, device=student.device)
    k_b = counts.clamp(max=k).clamp_min(1)  # (B,) list length per example
    valid = position[None, :] < k_b[:, None]
    relevance = (k_b[:, None] - position[None, :]).clamp_min(0).to(student.dtype)
    scores = student.gather(1, top)
    loss = lambda_arp2_loss(scores, relevance, valid)
    return (loss / k_b.to(loss.dtype) ** 2).mean()
