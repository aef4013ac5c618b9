"""The FLOPs constraint as a Lagrangian (ToP Sec. 3.3): ``lambda1 (s - t) + lambda2 (s - t)^2``
for expected sparsity ``s`` and warmed-up target ``t``; gates descend it, multipliers ascend it.
"""
from __future__ import annotations

import torch
from torch import nn


def warmup_progress(step: int, warmup_steps: int) -> float:
    """Fraction of the warm-up done, in [0, 1]."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def warmup_target(step: int, sparsity: float, warmup_steps: int) -> float:
    """Linearly warmed-up target: ``SPARSITY * min(1, step / warmup_steps)``."""
    return sparsity * warmup_progress(step, warmup_steps)


class LagrangianConstraint(nn.Module):
    """Holds the two multipliers; call it with the expected and target sparsity.

    >>> LagrangianConstraint()(torch.tensor(0.2), 0.5)
    tensor(0., grad_fn=<AddBackward0>)
    """

    def __init__(self):
        super().__init__()
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))

    def forward(self, expected_sparsity: torch.Tensor, target: float) -> torch.Tensor:
        gap = expected_sparsity - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap


def multiplier_optimizer(lagrangian: LagrangianConstraint, lr: float) -> torch.optim.Optimizer:
    """AdamW that ascends the Lagrangian in its multipliers (``maximize=True``; the release:
    learning rate ``-REG_LEARNING_RATE``), without weight decay. While s < t, lambda_1 falls
    and lambda_2 rises, so descent on the gates raises s.

    >>> lag = LagrangianConstraint(); opt = multiplier_optimizer(lag, 0.1)
    >>> lag(torch.tensor(0.2), 0.5).backward(); opt.step()
    >>> round(lag.lambda_1.item(), 3), round(lag.lambda_2.item(), 3)
    (-0.1, 0.1)
    """
    return torch.optim.AdamW(lagrangian.parameters(), lr=lr, weight_decay=0.0, maximize=True)
