"""Hard-concrete rank-bin gates (METHOD Sec. 2), checked against Monte Carlo sampling."""
from __future__ import annotations

import math

import pytest
import torch

from toplib.core.gates import (
    BETA,
    FIXED_LOG_ALPHA,
    GAMMA,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    ZETA,
    RankBinGates,
    deterministic_gates,
    expected_keep_ratio,
    prob_nonzero,
    sample_hard_concrete,
    straight_through,
)

MC_SAMPLES = 200_000
MC_TOL = 0.01  # absolute; the MC standard error at 200k samples is <= 0.0012
LOG_ALPHAS = torch.linspace(-4.0, 4.0, 17)


def q0_by_hand(a: float) -> float:
    """METHOD Sec. 2: Q(0) = sigmoid(beta * logit((0 - gamma) / (zeta - gamma)) - a)."""
    x = -GAMMA / (ZETA - GAMMA)
    return 1.0 / (1.0 + math.exp(-(BETA * math.log(x / (1 - x)) - a)))


def test_prob_nonzero_matches_monte_carlo():
    z = sample_hard_concrete(LOG_ALPHAS[:, None].expand(-1, MC_SAMPLES).contiguous())
    mc = (z > 0).double().mean(-1)
    analytic = prob_nonzero(LOG_ALPHAS).double()
    assert torch.allclose(analytic, mc, atol=MC_TOL, rtol=0), (analytic - mc).abs().max()
    # the range covers nearly-always-closed to nearly-always-open gates
    assert analytic[0] < 0.2 and analytic[-1] > 0.99


def test_prob_nonzero_matches_the_cdf_formula():
    by_hand = torch.tensor([1.0 - q0_by_hand(float(a)) for a in LOG_ALPHAS])
    assert torch.allclose(prob_nonzero(LOG_ALPHAS), by_hand, atol=1e-6)


def test_samples_are_clamped_with_mass_at_both_ends():
    z = sample_hard_concrete(torch.zeros(50_000))
    assert z.min() == 0.0 and z.max() == 1.0
    exact_ends = ((z == 0) | (z == 1)).float().mean()
    assert 0.1 < exact_ends < 0.9  # stretched: both hard ends and the soft middle occur


def test_samples_pass_gradient_to_log_alpha():
    a = torch.zeros(1000, requires_grad=True)
    sample_hard_concrete(a).sum().backward()
    assert (a.grad > 0).any() and (a.grad >= 0).all()  # z is non-decreasing in a


def test_expected_keep_ratio_matches_monte_carlo():
    gen = torch.Generator().manual_seed(3)
    bins = torch.empty(3, 5).uniform_(-3, 3, generator=gen)
    pruner = torch.tensor([-2.0, 0.0, 2.0])
    n = MC_SAMPLES // 4
    z_bins = sample_hard_concrete(bins.expand(n, -1, -1).contiguous())  # (S, P, bin_num)
    z_pruner = sample_hard_concrete(pruner.expand(n, -1).contiguous())  # (S, P)
    # keep formula with each gate replaced by its "non-zero" event
    keep = 1 - (1 - (z_bins > 0).double().mean(-1)) * (z_pruner > 0).double()
    mc = keep.mean(0)
    analytic = expected_keep_ratio(bins, pruner).double()
    assert torch.allclose(analytic, mc, atol=MC_TOL, rtol=0), (analytic, mc)


DETERMINISTIC_CASES = {
    "all open": [4.0, 3.0, 4.5, 2.5, 3.5, 4.2],
    "all closed": [-4.0, -3.0, -4.5, -2.5, -3.5, -4.2],
    "mixed": [-3.0, 4.0, -1.0, 2.0, 0.5, -2.0],
    "near zero": [-0.3, 0.1, -0.1, 0.2, 0.3, -0.2],
    "one low": [4.0, 4.1, 4.2, -4.0, 4.3, 4.4],
}


@pytest.mark.parametrize("row", DETERMINISTIC_CASES.values(), ids=DETERMINISTIC_CASES.keys())
def test_deterministic_gates_close_the_expected_number_of_lowest_gates(row):
    a = torch.tensor([row])
    gates = deterministic_gates(a)[0]
    n_zero = round(len(row) - sum(1 - q0_by_hand(x) for x in row))
    lowest = set(sorted(range(len(row)), key=lambda i: row[i])[:n_zero])
    assert set(gates.eq(0).nonzero().flatten().tolist()) == lowest
    assert set(gates.unique().tolist()) <= {0.0, 1.0}


def test_deterministic_gates_work_row_by_row():
    rows = torch.tensor(list(DETERMINISTIC_CASES.values()))
    together = deterministic_gates(rows)
    one_by_one = torch.cat([deterministic_gates(r[None]) for r in rows])
    assert torch.equal(together, one_by_one)
    assert together.sum(-1).tolist() != [together.shape[1]] * len(rows)  # not trivially open


def test_initial_gates_give_a_dense_model():
    gates = RankBinGates(num_layers=5, bin_num=25).eval()
    assert (gates.bin_log_alpha > 0).all() and (gates.pruner_log_alpha < 0).all()
    z_bins, z_pruner = gates()
    assert torch.equal(z_bins, torch.ones(5, 25)) and torch.equal(z_pruner, torch.zeros(5))
    assert (gates.expected_keep_ratio() > 0.999).all()


def test_training_gates_are_sampled_and_pruner_is_binary():
    gates = RankBinGates(num_layers=3, bin_num=4)
    with torch.no_grad():
        gates.bin_log_alpha.zero_()
        gates.pruner_log_alpha.zero_()
    draws = [gates(training=True) for _ in range(20)]
    z_bins = torch.stack([d[0] for d in draws])
    z_pruner = torch.stack([d[1] for d in draws])
    assert z_bins.shape == (20, 3, 4) and z_pruner.shape == (20, 3)
    assert ((z_bins > 0) & (z_bins < 1)).any()  # soft values occur
    assert set(z_pruner.unique().tolist()) == {0.0, 1.0}


def test_clamp_respects_release_bounds():
    gates = RankBinGates(num_layers=2, bin_num=3)
    inside = [[-20.0, 0.3, 20.0], [LOG_ALPHA_MIN, -1.0, LOG_ALPHA_MAX]]
    with torch.no_grad():
        gates.bin_log_alpha.copy_(torch.tensor(inside))
        gates.pruner_log_alpha.copy_(torch.tensor([-7.0, 9.0]))
    gates.clamp_()
    expected = [[LOG_ALPHA_MIN, 0.3, LOG_ALPHA_MAX], [LOG_ALPHA_MIN, -1.0, LOG_ALPHA_MAX]]
    assert torch.allclose(gates.bin_log_alpha, torch.tensor(expected))
    assert torch.allclose(gates.pruner_log_alpha, torch.tensor([LOG_ALPHA_MIN, LOG_ALPHA_MAX]))
    assert math.isclose(LOG_ALPHA_MIN, math.log(0.01))
    assert math.isclose(LOG_ALPHA_MAX, math.log(100))


def test_pruners_on_at_evaluation_are_fixed_on_and_off_ones_keep_learning():
    gates = RankBinGates(num_layers=3, bin_num=4)
    with torch.no_grad():
        gates.pruner_log_alpha.copy_(torch.tensor([-3.0, 0.2, 3.0]))  # P(on) ~ 0.20, 0.86, 0.99
        gates.bin_log_alpha.uniform_(-3, 3)
    on = gates.eval()()[1]
    assert on.tolist() == [0.0, 1.0, 1.0]
    assert gates.fix_pruners_().tolist() == [False, True, True]
    assert torch.equal(gates.eval()()[1], on)  # evaluation unchanged
    for _ in range(20):  # the fixed ones sample their evaluation value every time
        assert gates.train()()[1][1:].eq(1).all()
    assert prob_nonzero(gates.pruner_log_alpha)[1:].eq(1).all()  # and so does the expectation
    assert gates.pruner_log_alpha[0] == -3.0 and gates.pruner_log_alpha.requires_grad
    with torch.no_grad():  # an optimiser step moves every gate; clamping restores the fixed ones
        gates.pruner_log_alpha.add_(torch.tensor([1.0, -40.0, -0.5]))
    gates.clamp_()
    assert gates.pruner_log_alpha.tolist() == [-2.0, FIXED_LOG_ALPHA, FIXED_LOG_ALPHA]
    with torch.no_grad():
        gates.pruner_log_alpha[0] = 1.0  # turns on later: fixed at the next call
    assert gates.fix_pruners_().all()
    fresh = RankBinGates(num_layers=3, bin_num=4)  # a resumed run: fixed gates come as values
    fresh.load_state_dict(gates.state_dict())
    assert not fresh._pruner_fixed_on.any() and fresh.fix_pruners_().all()


def test_fix_all_makes_training_gates_the_evaluation_gates():
    gates = RankBinGates(num_layers=2, bin_num=6)
    with torch.no_grad():
        gates.bin_log_alpha.uniform_(-3, 3)
        gates.pruner_log_alpha.copy_(torch.tensor([2.0, -3.0]))
    want = gates.eval()()
    gates.fix_all_()
    assert gates.bins_fixed and not gates.pruner_log_alpha.requires_grad
    for _ in range(10):
        got = gates.train()()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(prob_nonzero(gates.bin_log_alpha), want[0])
    gates.clamp_()
    assert gates.bin_log_alpha.abs().eq(FIXED_LOG_ALPHA).all()


def test_set_all_open_gives_dense_gates():
    gates = RankBinGates(num_layers=2, bin_num=3).eval()
    with torch.no_grad():
        gates.bin_log_alpha.fill_(-5.0)
        gates.pruner_log_alpha.fill_(5.0)
    assert gates()[0].sum() == 0
    gates.set_all_open()
    z_bins, z_pruner = gates()
    assert z_bins.eq(1).all() and z_pruner.eq(0).all()


def test_straight_through_is_binary_forward_and_identity_backward():
    z = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0], requires_grad=True)
    hard = straight_through(z)
    assert hard.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]  # on where z > 0, as the release
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (hard * weights).sum().backward()
    assert torch.equal(z.grad, weights)
    # exactly 0/1 for arbitrary z: a pruned token's keep 1 - (1 - 0) * z_pruner must be 0
    many = straight_through(torch.rand(10_000).sub(0.5).requires_grad_())
    assert set(many.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_layers=0, bin_num=4), "num_layers"),
    (dict(num_layers=2, bin_num=0), "bin_num"),
    (dict(num_layers=2, bin_num=4, droprate_init=1.0), "droprate_init"),
    (dict(num_layers=2, bin_num=4, droprate_init=0.0), "droprate_init"),
])
def test_invalid_gate_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RankBinGates(**kwargs)


@pytest.mark.parametrize("log_alpha", [-3.0, -1.0, 0.0, 1.5])
def test_pruner_training_on_rate_is_the_constraints_probability(log_alpha):
    """A sampled pruner prunes as often as the expected FLOPs count it on: P(z > 0)."""
    torch.manual_seed(0)
    gates = RankBinGates(num_layers=1, bin_num=2)
    with torch.no_grad():
        gates.pruner_log_alpha.fill_(log_alpha)
    with torch.no_grad():
        on = torch.stack([gates(training=True)[1] for _ in range(40_000)]).mean()
    want = float(prob_nonzero(torch.tensor(log_alpha)))
    assert abs(float(on) - want) < 0.01, (float(on), want)
