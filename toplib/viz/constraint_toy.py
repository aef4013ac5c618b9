"""A toy run of ToP's FLOPs constraint (ToP Sec. 3.3) for the method notebook: toplib's gates,
expected FLOPs, Lagrangian and optimisers on a toy loss that prefers open gates."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..core.config import check
from ..core.constraint import LagrangianConstraint, multiplier_optimizer, warmup_target
from ..core.flops import EncoderDims, expected_sparsity
from ..core.gates import RankBinGates, keep_rule, prob_nonzero


@dataclass(frozen=True)
class ToySettings:
    """The toy constraint run (:func:`toy_lagrangian_run`); defaults: the quickstart's."""

    sparsity: float = 0.5  # SPARSITY, the target
    steps: int = 300  # optimiser steps
    warmup_steps: int = 100  # the target rises linearly over these
    reg_learning_rate: float = 0.05  # REG_LEARNING_RATE: gates descend, multipliers ascend

    def __post_init__(self):
        check("sparsity", self.sparsity, 0.0 <= self.sparsity < 1.0, "a sparsity in [0, 1)")
        check("steps", self.steps, isinstance(self.steps, int) and self.steps >= 1,
              "an integer >= 1")
        check("warmup_steps", self.warmup_steps,
              isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "an integer >= 0")
        check("reg_learning_rate", self.reg_learning_rate, self.reg_learning_rate > 0,
              "a learning rate > 0")


def toy_lagrangian_run(bin_mass: torch.Tensor, lengths: torch.Tensor, dims: EncoderDims,
                       prune_location, settings: ToySettings = ToySettings()) -> pd.DataFrame:
    """One row per step of ToP's constraint on the toy loss ``sum_p sum_b bin_mass[b] (1 - keep)``
    (deterministic: ``keep`` from P(z > 0)); ``bin_mass``: (BIN_NUM,), ``lengths``: (E,).

    Example:
        >>> toy_lagrangian_run(torch.full((4,), .25), torch.tensor([9]), EncoderDims(2, 4, 2, 8),
        ...                    (1,), ToySettings(steps=3)).shape
        (3, 9)
    """
    gates = RankBinGates(len(prune_location), len(bin_mass))
    lagrangian = LagrangianConstraint()
    gate_opt = torch.optim.AdamW(gates.parameters(), lr=settings.reg_learning_rate,
                                 weight_decay=0.0)
    lag_opt = multiplier_optimizer(lagrangian, settings.reg_learning_rate)
    rows = []
    for step in range(settings.steps):
        p_bins, p_pruner = prob_nonzero(gates.bin_log_alpha), prob_nonzero(gates.pruner_log_alpha)
        task = (bin_mass * (1 - keep_rule(p_bins, p_pruner))).sum()
        target = warmup_target(step, settings.sparsity, settings.warmup_steps)
        s = expected_sparsity(lengths, p_bins, p_pruner, prune_location, dims)
        lag = lagrangian(s, target)
        rows.append({"step": step, "target": target, "expected_sparsity": s.item(),
                     "lambda_1": lagrangian.lambda_1.item(), "lambda_2": lagrangian.lambda_2.item(),
                     "lagrangian": lag.item(), "task_loss": task.item()})
        for p, loc in enumerate(prune_location):  # P(pruner on), mean P(bin open)
            rows[-1].update({f"pruner_{loc}": p_pruner[p].item(),
                             f"bins_{loc}": p_bins[p].mean().item()})
        gate_opt.zero_grad()
        lag_opt.zero_grad()
        (task + lag).backward()
        gate_opt.step()
        lag_opt.step()
        gates.clamp_()
    return pd.DataFrame(rows)
