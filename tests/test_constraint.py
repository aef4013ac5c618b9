"""The Lagrangian FLOPs constraint and its warm-up (METHOD Sec. 4)."""
from __future__ import annotations

import pytest
import torch

from toplib.core.constraint import LagrangianConstraint, warmup_progress, warmup_target
from toplib.core.flops import EncoderDims, dense_macs, encoder_macs, expected_lengths, sparsity
from toplib.core.gates import RankBinGates

REG_LEARNING_RATE = 0.02  # release default (TrainConfig.reg_learning_rate)


def multiplier_optimizer(lag: LagrangianConstraint) -> torch.optim.Optimizer:
    """Gradient ascent on the multipliers, as the trainer sets it up."""
    return torch.optim.AdamW(lag.parameters(), lr=REG_LEARNING_RATE, weight_decay=0.0,
                             maximize=True)


def test_penalty_formula_hand_numbers():
    lag = LagrangianConstraint()
    with torch.no_grad():
        lag.lambda_1.fill_(-2.0)
        lag.lambda_2.fill_(3.0)
    # gap = 0.2 - 0.5 = -0.3: -2 * -0.3 + 3 * 0.09
    assert lag(torch.tensor(0.2), 0.5).item() == pytest.approx(0.6 + 0.27)


def test_multipliers_start_at_zero_so_penalty_starts_at_zero():
    lag = LagrangianConstraint()
    assert lag.lambda_1.item() == 0.0 and lag.lambda_2.item() == 0.0
    assert lag(torch.tensor(0.1), 0.6).item() == 0.0


@pytest.mark.parametrize("s, target", [(0.2, 0.5), (0.0, 0.43), (0.6, 0.65)])
def test_ascent_grows_the_penalty_and_pushes_sparsity_up(s, target):
    lag = LagrangianConstraint()
    opt = multiplier_optimizer(lag)
    penalties, lambda_1, lambda_2 = [], [], []
    for _ in range(5):
        penalty = lag(torch.tensor(s), target)
        opt.zero_grad()
        penalty.backward()
        opt.step()
        penalties.append(lag(torch.tensor(s), target).item())
        lambda_1.append(lag.lambda_1.item())
        lambda_2.append(lag.lambda_2.item())
    assert all(b > a for a, b in zip(penalties, penalties[1:])), penalties
    assert all(b > a for a, b in zip(lambda_2, lambda_2[1:])), lambda_2  # lambda_2 rises
    assert all(b < a for a, b in zip(lambda_1, lambda_1[1:])), lambda_1  # lambda_1 * (s - t) rises
    # the gates descend the penalty: its gradient in s is negative, so descent raises s
    s_var = torch.tensor(s, requires_grad=True)
    lag(s_var, target).backward()
    assert s_var.grad < 0


def test_gates_reach_the_target_under_the_constraint():
    """Gates descending, multipliers ascending: the expected sparsity climbs to the target."""
    torch.manual_seed(0)
    dims = EncoderDims(num_layers=6, hidden=64, heads=4, intermediate=256)
    locations = (1, 2, 3, 4, 5)
    gates, lag = RankBinGates(len(locations), bin_num=10), LagrangianConstraint()
    gate_opt = torch.optim.AdamW(gates.parameters(), lr=0.1, weight_decay=0.0)
    lag_opt = torch.optim.AdamW(lag.parameters(), lr=0.1, weight_decay=0.0, maximize=True)
    lengths = torch.tensor([20.0, 35.0, 64.0])
    target = 0.5

    def expected_sparsity():
        tokens = expected_lengths(lengths, gates.expected_keep_ratio(), locations, dims.num_layers)
        return sparsity(encoder_macs(tokens, dims), dense_macs(lengths, dims))

    start = expected_sparsity().item()
    for _ in range(300):
        loss = lag(expected_sparsity(), target)
        gate_opt.zero_grad()
        lag_opt.zero_grad()
        loss.backward()
        gate_opt.step()
        lag_opt.step()
        gates.clamp_()
    assert start < 0.01
    assert expected_sparsity().item() == pytest.approx(target, abs=0.05)


WARMUP_CASES = [
    # step, sparsity, warmup_steps, expected target, expected progress
    (0, 0.6, 100, 0.0, 0.0),
    (25, 0.6, 100, 0.15, 0.25),
    (50, 0.6, 100, 0.3, 0.5),
    (100, 0.6, 100, 0.6, 1.0),
    (250, 0.6, 100, 0.6, 1.0),  # flat after the warm-up
    (0, 0.43, 0, 0.43, 1.0),  # no warm-up: the full target at once
    (7, 0.43, 0, 0.43, 1.0),
]


@pytest.mark.parametrize("step, target, warmup, want_target, want_progress", WARMUP_CASES)
def test_warmup_target_and_progress(step, target, warmup, want_target, want_progress):
    assert warmup_target(step, target, warmup) == pytest.approx(want_target)
    assert warmup_progress(step, warmup) == pytest.approx(want_progress)


def test_warmup_target_is_linear_then_flat():
    targets = [warmup_target(step, 0.5, 40) for step in range(80)]
    slopes = [b - a for a, b in zip(targets, targets[1:])]
    assert all(d == pytest.approx(0.5 / 40) for d in slopes[:40])
    assert all(d == 0 for d in slopes[40:])
