"""The method notebook's library (``toplib.viz.method``, ``toplib.viz.constraint_toy``, the
core functions it added) against independent computations, and the notebook itself under
papermill with tiny parameters: the tables it builds in pandas are checked on its metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_notebooks import TASK, _figures, execute, kernel_env, tiny_model, tiny_runs  # noqa: F401

from toplib.core.constraint import LagrangianConstraint, multiplier_optimizer
from toplib.core.flops import EncoderDims, encoder_macs, ffn_tokens, layer_mac_terms
from toplib.core.gates import (
    BETA,
    GAMMA,
    LOG_ALPHA_MAX,
    ZETA,
    RankBinGates,
    hard_concrete_cdf,
    hard_concrete_density,
    prob_nonzero,
    sample_hard_concrete,
)
from toplib.core.importance import rank_bins
from toplib.core.ranking import rank_loss_weight
from toplib.hf import load_checkpoint
from toplib.train import read_results
from toplib.viz import constraint_toy, method

MINILM = EncoderDims(num_layers=6, hidden=384, heads=12, intermediate=1536)
LOG_ALPHAS = (-3.0, -1.0, 0.0, 1.0, 3.0)


# ---- hard-concrete density ----------------------------------------------------------------
def _density_by_hand(z: float, a: float) -> float:
    """dQ/dz with Q(z) = sigmoid(beta * logit(y) - a), y = (z - gamma) / (zeta - gamma)."""
    y = (z - GAMMA) / (ZETA - GAMMA)
    q = 1 / (1 + math.exp(-(BETA * math.log(y / (1 - y)) - a)))
    return q * (1 - q) * BETA / (y * (1 - y)) / (ZETA - GAMMA)


@pytest.mark.parametrize("a", LOG_ALPHAS)
def test_hard_concrete_density_and_point_masses_integrate_to_one(a):
    z = torch.linspace(1e-4, 1 - 1e-4, 20001, dtype=torch.float64)
    log_alpha = torch.tensor(a, dtype=torch.float64)
    inner = torch.trapezoid(hard_concrete_density(z, log_alpha), z)
    masses = hard_concrete_cdf(0.0, log_alpha) + 1 - hard_concrete_cdf(1.0, log_alpha)
    assert float(inner + masses) == pytest.approx(1.0, abs=1e-3)
    assert float(1 - hard_concrete_cdf(0.0, log_alpha)) == float(prob_nonzero(log_alpha))


@pytest.mark.parametrize("a", LOG_ALPHAS)
def test_hard_concrete_density_matches_the_closed_form_and_the_samples(a):
    z = torch.tensor([0.1, 0.37, 0.5, 0.9], dtype=torch.float64)
    got = hard_concrete_density(z, torch.tensor(a, dtype=torch.float64))
    assert got.tolist() == pytest.approx([_density_by_hand(float(x), a) for x in z], rel=1e-9)
    draws = sample_hard_concrete(torch.full((200_000,), a, dtype=torch.float64))
    inside = ((draws > 0.3) & (draws < 0.4)).double().mean()  # P(0.3 < z < 0.4)
    expected = hard_concrete_cdf(0.4, torch.tensor(a)) - hard_concrete_cdf(0.3, torch.tensor(a))
    assert float(inside) == pytest.approx(float(expected), abs=4e-3)


# ---- MACs term by term --------------------------------------------------------------------
def test_mac_terms_by_hand():
    dims = EncoderDims(num_layers=2, hidden=4, heads=2, intermediate=8)
    terms = layer_mac_terms(4, 2, dims)  # t = 4 in attention, 2 in the FFN
    assert terms == {"qkv": 3 * 4 * 16, "scores": 2 * 16 * 2, "softmax": 2 * 16,
                     "context": 2 * 16 * 2, "output": 4 * 16, "ffn": 2 * 2 * 4 * 8}
    kept = torch.tensor([4, 2])  # the FFN of layer 0 runs on layer 1's 2 tokens, the last on its own
    assert ffn_tokens(kept[None])[0].tolist() == [2, 2]
    per_layer = layer_mac_terms(kept, ffn_tokens(kept[None])[0], dims)
    assert sum(per_layer.values()).tolist() == [544, 296]


@pytest.mark.parametrize("kept", [[33, 33, 25, 14, 8, 4], [12] * 6, [64, 60, 31, 9, 2, 1]])
def test_mac_terms_sum_to_encoder_macs(kept):
    kept = torch.tensor(kept)
    terms = layer_mac_terms(kept, ffn_tokens(kept[None])[0], MINILM)
    assert int(sum(terms.values()).sum()) == int(encoder_macs(kept[None].double(), MINILM)[0])
    dense = layer_mac_terms(torch.full((6,), int(kept[0])), torch.full((6,), int(kept[0])), MINILM)
    assert all((terms[t] <= dense[t]).all() for t in terms)  # pruning never adds a MAC


# ---- rank bins, gates, ranking loss -------------------------------------------------------
def test_importance_table_ranks_and_bins():
    imp = torch.tensor([0.4, 0.05, 0.2, 0.1, 0.15, 0.1])  # tie between positions 3 and 5
    table = method.importance_table(["[CLS]", "a", "b", "c", "d", "e"], imp, 4)
    assert table["rank"].tolist() == [-1, 4, 0, 2, 1, 3]  # the tie: first position first
    assert table["bin"].tolist()[1:] == rank_bins(imp[None], torch.ones(1, 6), 4)[0, 1:].tolist()
    assert table["bin"].tolist()[1:] == [math.floor(r / 5 * 4) for r in [4, 0, 2, 1, 3]]
    with pytest.raises(ValueError, match="bin_num"):
        method.importance_table(["[CLS]", "a"], imp[:2], 0)


def _gates(rows) -> RankBinGates:
    gates = RankBinGates(len(rows), len(rows[0]))
    with torch.no_grad():
        gates.bin_log_alpha.copy_(torch.tensor(rows))
    return gates


def test_gate_heatmap_crosses_the_gates_evaluation_closes():
    from toplib.viz.plots import plot_gate_heatmap
    gates = _gates([[-1.2, -0.8, -6.0, -6.0], [LOG_ALPHA_MAX] * 4])
    closed = method.closed_bin_gates(gates)
    assert closed.tolist() == [[True, False, True, True], [False] * 4]
    table = method.gate_table(gates, (1, 2))
    assert table.loc[1, 0] > 0.5  # crossed although P(open) > 0.5
    fig = plot_gate_heatmap(table, closed, np.full((2, 4), 0.25), "t")
    crosses = fig.get_axes()[0].collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(crosses).tolist())) == [(0.0, 0.0), (2.0, 0.0), (3.0, 0.0)]
    assert "closed at evaluation" in fig.get_axes()[0].get_xlabel()


@pytest.mark.parametrize("step, weight", [(0, 1e-3), (50, 5e-4), (99, 1e-5), (100, 1e-5),
                                          (1000, 1e-5)])
def test_rank_loss_weight_at_known_steps(step, weight):
    assert rank_loss_weight(step, 1e-3, 100) == pytest.approx(weight)


def test_rank_loss_weight_without_warmup_is_the_floor_from_the_start():
    assert rank_loss_weight(0, 1.0, 0) == 0.01


# ---- the constraint -----------------------------------------------------------------------
def test_multiplier_optimizer_ascends():
    lag = LagrangianConstraint()
    opt = multiplier_optimizer(lag, 0.1)
    lag(torch.tensor(0.2), 0.5).backward()  # s < t: dL/dlambda_1 = -0.3, dL/dlambda_2 = 0.09
    opt.step()
    assert lag.lambda_1.item() == pytest.approx(-0.1) and lag.lambda_2.item() == pytest.approx(0.1)


def test_toy_run_multipliers_rise_while_the_constraint_is_unmet():
    mass = torch.linspace(2, 1, 10) / torch.linspace(2, 1, 10).sum()
    settings = constraint_toy.ToySettings(sparsity=0.5, steps=120, warmup_steps=40,
                                          reg_learning_rate=0.1)
    run = constraint_toy.toy_lagrangian_run(mass, torch.tensor([30]), MINILM, (2, 3, 4, 5),
                                            settings)
    unmet = (run["expected_sparsity"] < run["target"]).to_numpy()[:-1]
    assert unmet.sum() > 10
    assert (np.diff(run["lambda_1"])[unmet] < 0).all()  # ascent: lambda_1 falls while s < t
    assert (np.diff(run["lambda_2"]) >= 0).all()  # the squared gap: lambda_2 never falls
    assert run["target"].iloc[-1] == 0.5 and run["target"].iloc[20] == pytest.approx(0.25)
    assert run["expected_sparsity"].max() > 0.45  # the constraint did push the gates
    again = constraint_toy.toy_lagrangian_run(mass, torch.tensor([30]), MINILM, (2, 3, 4, 5),
                                              settings)
    assert again.equals(run)  # deterministic: the expectation, no samples


@pytest.mark.parametrize("field, value", [("sparsity", 1.0), ("steps", 0), ("warmup_steps", -1),
                                          ("reg_learning_rate", 0.0)])
def test_toy_settings_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        constraint_toy.ToySettings(**{field: value})


# ---- the notebook -------------------------------------------------------------------------
METHOD_CHECKS = (
    "importance", "importance, half pruned", "rank bins", "hard-concrete sample",
    "Q(0) = P(z = 0)", "Q(1) = P(z < 1)", "P(z > 0) = 1 - Q(0)", "sampled share of z > 0",
    "keep rule, sampled gates", "bins kept at evaluation", "bin-gate gradients",
    "an empty bin gets no gradient, an occupied one does", "MACs of each layer",
    "MACs of the encoder", "expected sparsity, binned=True", "expected sparsity, binned=False",
    "Lagrangian", "gradients of the Lagrangian", "toy run, AdamW ascent by hand",
    "LambdaLoss ARP-2", "rank distillation loss")
"""The checks 01 records, in order: each a formula in plain torch asserted against toplib."""


@pytest.mark.notebooks
def test_01_how_top_works(kernel_env, tiny_runs, tmp_path):  # noqa: F811
    m = execute("01_how_top_works", tmp_path, task=TASK, teacher_dir=tiny_runs["teacher"],
                top_dir=tiny_runs["top"], toy_steps=50, timing_batch=4, timing_runs=1)
    macs = m["macs"]
    assert macs["table_pruned"] == macs["toplib_pruned"] and macs["table_dense"] == macs["toplib_dense"]
    assert macs["sparsity_table"] == pytest.approx(macs["sparsity_toplib"])
    # FlopCounterMode: every matmul of the dropping engine, no softmax, plus the head
    assert macs["flop_counter_pruned"] == macs["table_pruned"] - macs["softmax_pruned"] + macs["head"]
    assert m["kept_per_layer"] == m["kept_per_layer_masked"] and m["kept_per_layer"][0] == m["num_tokens"]
    assert all(a >= b for a, b in zip(m["kept_per_layer"], m["kept_per_layer"][1:]))
    toy = m["toy"]
    assert toy["unmet_steps"] > 0 and toy["multipliers_rose_while_unmet"]
    assert toy["lambda_2"]["49"] > 0 > toy["lambda_1"]["49"]
    assert m["lambda_loss_teacher_lowest"]
    for losses in m["lambda_loss"].values():
        assert losses["teacher's order"] < min(losses["shuffled"], losses["reversed"])
    alpha = read_results(tiny_runs["top"])["config"]["distill_rank_loss_alpha"]
    assert m["rank_weight"] == pytest.approx({"start": alpha, "end": alpha * 0.01})  # a full schedule
    over = toy["overshoot"]  # the peak against the final target
    assert over["target"] == toy["target"] and over["by"] == pytest.approx(over["peak"] - over["target"])
    assert over["peak"] >= max(over["last"], toy["final_expected_sparsity"]) and 0 <= over["peak_step"] < 50
    hard = m["hard_concrete"]  # log-alphas -3, -1, 0, 1, 3: P(z > 0) at -1 is 0.65, a lone gate opens
    assert hard["eval_gate"] == [0.0, 1.0, 1.0, 1.0, 1.0] and hard["largest_gap"] < 0.02
    top, _, _ = load_checkpoint(tiny_runs["top"])  # what the gates learned, read here independently
    locs, kept = top.prune.prune_location, top.gates.kept_bins()
    p_open = prob_nonzero(top.gates.bin_log_alpha).detach()
    gates = m["gates"]
    assert gates["closed_bins"] == {str(loc): int((~row).sum()) for loc, row in zip(locs, kept)}
    assert gates["last_bin_open_layers"] == [loc for loc, row in zip(locs, kept) if row[-1]]
    assert gates["monotone_layers"] == [loc for loc, row in zip(locs, p_open) if (row.diff() <= 0).all()]
    assert 0 <= gates["empty_bins"] <= len(locs) * top.prune.bin_num
    # every formula's plain-torch lines agreed with toplib's function (asserts in the notebook)
    assert m["checks"] == list(METHOD_CHECKS) and m["num_checks"] == len(METHOD_CHECKS)
    adamw, plain = m["toy_by_hand"]["adamw"], m["toy_by_hand"]["plain"]
    assert adamw["unmet"] > 0 and plain["unmet"] > 0
    assert plain["lambda_1"] == pytest.approx(plain["gap"], rel=1e-4)  # plain: lr * |s - t|
    assert 0.5 < adamw["lambda_1"] < 2.0 and plain["lambda_1"] < adamw["lambda_1"]  # AdamW: ~lr
    _figures(tmp_path, "01_attention_importance", "01_rank_bins", "01_hard_concrete", "01_gates",
             "01_kept_tokens", "01_mac_terms", "01_toy_lagrangian", "01_lambda_loss",
             "01_masked_vs_dropped")


def test_masked_vs_dropped_names_what_was_timed_in_a_wrapped_title():
    import pandas as pd

    from toplib.viz import plots
    dense = pd.DataFrame({"total": [10.0, 10.0]})
    pruned = pd.DataFrame({"total": [10.0, 4.0]})
    timed_on = "batch of 32, 1 thread(s), AMD EPYC 9B14 96-Core Processor, 1-min load 2.3 on 2 cores"
    fig = plots.plot_masked_vs_dropped(dense, pruned, "t", {"top_drop": 1.0, "dense_padded": 2.0},
                                       timed_on)
    title = fig.axes[1].get_title()
    assert "load 2.3" in title and "\n" in title  # the machine and load, wrapped to fit
    assert [round(v, 6) for v in fig.axes[0].get_lines()[1].get_ydata()] == [1e-05, 4e-06]
