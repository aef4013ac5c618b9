"""The FLOPs constraint as a Lagrangian (ToP Sec. 3.3; METHOD Sec. 4).

``L_lag = lambda1 * (s - t) + lambda2 * (s - t)^2``: the gates descend it, the multipliers
ascend it (their optimiser uses ``maximize=True``), so the pressure on the gates grows for
as long as the expected sparsity ``s`` misses the warmed-up target ``t``.
"""
from __future__ import annotations

import torch
from torch import nn


def warmup_target(step: int, sparsity: float, warmup_steps: int) -> float:
    """Linearly warmed-up target: ``SPARSITY * min(1, step / warmup_steps)``."""
    if warmup_steps <= 0:
        return sparsity
    return sparsity * min(1.0, step / warmup_steps)


def warmup_progress(step: int, warmup_steps: int) -> float:
    """Fraction of the warm-up done, in [0, 1]."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


class LagrangianConstraint(nn.Module):
    """Holds the two multipliers; call it with the expected and target sparsity.

    Example:
        >>> lag = LagrangianConstraint()
        >>> lag(torch.tensor(0.2), 0.5)
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
    """AdamW that ASCENDS the Lagrangian in its multipliers (the release: learning rate
    ``-REG_LEARNING_RATE``; here ``maximize=True``), without weight decay: while the
    expected sparsity stays below the target, ``lambda_1`` falls and ``lambda_2`` rises,
    so ``dL/ds = lambda_1 + 2 lambda_2 (s - t)`` grows more negative and descent on the
    gates raises ``s``.

    Example:
        >>> lag = LagrangianConstraint()
        >>> opt = multiplier_optimizer(lag, 0.1)
        >>> lag(torch.tensor(0.2), 0.5).backward(); opt.step()
        >>> round(lag.lambda_1.item(), 3), round(lag.lambda_2.item(), 3)
        (-0.1, 0.1)
    """
    return torch.optim.AdamW(lagrangian.parameters(), lr=lr, weight_decay=0.0, maximize=True)
