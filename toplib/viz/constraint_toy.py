"""A toy run of ToP's FLOPs constraint (ToP Sec. 3.3) for the method notebook: toplib's gates,
expected FLOPs, Lagrangian and optimisers on a toy loss that prefers open gates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
                     "lagrangian": lag.item(), "task_loss": task.item(),
                     **_gate_columns(p_bins, p_pruner, prune_location)})
        gate_opt.zero_grad()
        lag_opt.zero_grad()
        (task + lag).backward()
        gate_opt.step()
        lag_opt.step()
        gates.clamp_()
    return pd.DataFrame(rows)


def _gate_columns(p_bins: torch.Tensor, p_pruner: torch.Tensor, prune_location) -> dict:
    """{pruner_<loc>: P(pruner on), bins_<loc>: mean P(bin open)} of each prune layer."""
    row = {}
    for p, loc in enumerate(prune_location):
        row[f"pruner_{loc}"] = p_pruner[p].item()
        row[f"bins_{loc}"] = p_bins[p].mean().item()
    return row


def multipliers_while_unmet(run: pd.DataFrame) -> dict:
    """On steps where expected sparsity was below target: their count, and the shares after which
    ``-lambda_1`` (the pull to prune more) and ``lambda_2`` rose (None without such steps).

    Example:
        >>> run = pd.DataFrame({"expected_sparsity": [0.0, 0.1, 0.6], "target": [0.5] * 3,
        ...                     "lambda_1": [0.0, -1.0, -2.0], "lambda_2": [0.0, 1.0, 2.0]})
        >>> multipliers_while_unmet(run)["pressure_rose"]
        1.0
    """
    unmet = (run["expected_sparsity"] < run["target"]).to_numpy()[:-1]  # the last: no next
    pressure = -np.diff(run["lambda_1"].to_numpy())[unmet]
    quadratic = np.diff(run["lambda_2"].to_numpy())[unmet]
    if not unmet.any():
        return {"unmet_steps": 0, "pressure_rose": None, "lambda_2_rose": None}
    return {"unmet_steps": int(unmet.sum()), "pressure_rose": float((pressure > 0).mean()),
            "lambda_2_rose": float((quadratic > 0).mean())}


def overshoot(run: pd.DataFrame, target_column: str = "target") -> dict:
    """Whether the expected sparsity passed the final target (``by`` > 0), at what peak and step.

    Example:
        >>> run = pd.DataFrame({"step": [0, 1, 2], "expected_sparsity": [0.1, 0.6, 0.5],
        ...                     "target": [0.5] * 3})
        >>> round(overshoot(run)["by"], 3), overshoot(run)["peak_step"]
        (0.1, 1)
    """
    s = run["expected_sparsity"].to_numpy(dtype=float)
    target, peak = float(run[target_column].iloc[-1]), int(np.argmax(s))
    return {"target": target, "peak": float(s[peak]), "peak_step": int(run["step"].iloc[peak]),
            "by": float(s[peak]) - target, "last": float(s[-1])}


def bin_mass(table: pd.DataFrame, bin_num: int) -> torch.Tensor:
    """(BIN_NUM,) share of the importance in each rank bin of an ``importance_table`` ([CLS] out).

    Example:
        >>> table = pd.DataFrame({"bin": [-1, 0, 2], "importance": [0.5, 0.3, 0.1]})
        >>> [round(x, 2) for x in bin_mass(table, 4).tolist()]
        [0.75, 0.0, 0.25, 0.0]
    """
    ranked = table[table["bin"] >= 0]
    mass = torch.zeros(bin_num, dtype=torch.float64)
    mass.index_add_(0, torch.tensor(ranked["bin"].to_numpy()),
                    torch.tensor(ranked["importance"].to_numpy(), dtype=torch.float64))
    return (mass / mass.sum()).float()
