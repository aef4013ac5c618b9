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
