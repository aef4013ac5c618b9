"""Ranking agreement over seeds (toplib.viz.agreement) and the history summaries behind the
training-curve observations (toplib.viz.history), on hand-made data."""
from __future__ import annotations

import json
import statistics

import pandas as pd
import pytest

from toplib.viz import agreement as agree
from toplib.viz.history import (
    constraint_met_step,
    keep_ratios,
    largest_overshoot,
    loss_terms,
    reused_config,
    score_summary,
)


def _results(run_dir, **config):
    run_dir.mkdir(parents=True)
    base = dict(seed=42, distill_rank_loss_alpha=1e-3, sparsity=0.5)
    (run_dir / "results.json").write_text(json.dumps({"config": dict(base, **config)}))


def test_seed_runs_follow_seed_dir_for_top_and_a_suffix_elsewhere():
    runs = agree.seed_runs("r/t/top", [42, 43, 44])
    assert runs == {42: ("r/t/top", "r/t/top-norank"), 43: ("r/t/top-seed43", "r/t/top-seed43-norank"),
                    44: ("r/t/top-seed44", "r/t/top-seed44-norank")}
    assert agree.seed_runs("r/t/top-x/", [1, 2])[2] == ("r/t/top-x-seed2", "r/t/top-x-seed2-norank")


def test_check_runs_refuses_a_finished_run_configured_differently(tmp_path):
    _results(tmp_path / "top")
    _results(tmp_path / "top-norank", distill_rank_loss_alpha=0.0)
    _results(tmp_path / "top-seed43", seed=43)
    agree.check_runs(str(tmp_path / "top"), [42, 43])  # the missing twin of 43 is fine
    assert agree.missing_runs(str(tmp_path / "top"), [42, 43]) == [str(tmp_path / "top-seed43-norank")]
    _results(tmp_path / "top-seed43-norank", seed=43, distill_rank_loss_alpha=0.0, sparsity=0.7)
    with pytest.raises(ValueError, match=r"top-seed43-norank.*\['sparsity'\]"):
        agree.check_runs(str(tmp_path / "top"), [42, 43])
    with pytest.raises(ValueError, match="first seed must be the one"):
        agree.check_runs(str(tmp_path / "top"), [43, 42])


def _agreement():
    rows = []
    for model, taus in ((agree.TOP, {0: [0.2, 0.6], 1: [0.4, 0.5], 2: [0.3, 0.8]}),
                        (agree.NORANK, {0: [0.1, 0.5], 1: [0.2, 0.5], 2: [0.3, 0.5]})):
        for seed, values in taus.items():
            rows += [dict(model=model, seed=seed, layer=layer, kendall_tau=tau, ndcg=0.9,
                          decides_pruning=layer == 1) for layer, tau in enumerate(values)]
    return pd.DataFrame(rows)


def test_agreement_spread_and_the_gap_at_pruning_layers_by_hand():
    df = _agreement()
    spread = agree.agreement_spread(df).set_index(["model", "layer"])
    assert spread.loc[(agree.TOP, 0), "kendall_tau_mean"] == pytest.approx(0.3)
    assert spread.loc[(agree.TOP, 0), "kendall_tau_sd"] == pytest.approx(statistics.stdev([0.2, 0.4, 0.3]))
    assert spread.loc[(agree.NORANK, 1), "kendall_tau_sd"] == 0 and spread["n"].eq(3).all()
    (row,) = agree.pruning_layer_gap(df).to_dict("records")  # only layer 1 prunes
    assert row["layer"] == 1 and row["diff"] == pytest.approx(0.6333333 - 0.5)
    assert row["spread"] == pytest.approx(statistics.stdev([0.6, 0.5, 0.8]))  # + 0 for the twin
    assert row["exceeds"] is False and row["ahead"] == 2  # 0.133 < 0.153; seed 1 ties (0.5)
    assert (row["behind"], row["ties"]) == (0, 1)  # a tie is not a seed the twin wins
    assert row["top_seeds"] == [0.6, 0.5, 0.8] and row["norank_seeds"] == [0.5, 0.5, 0.5]


def test_gap_refuses_a_pruning_layer_without_twin_values():
    df = _agreement()
    df = df[~((df["model"] == agree.NORANK) & (df["layer"] == 1))]
    with pytest.raises(ValueError, match="layer 1: no kendall_tau values of"):
        agree.pruning_layer_gap(df)


def test_config_differences_and_the_reused_run_config(capsys):
    from toplib.train import build_train_config
    from toplib.train.config import config_differences
    asked = build_train_config("rotten_tomatoes", "quick", {})
    run = dict(asked.to_dict(), sparsity=0.7, prune=dict(asked.to_dict()["prune"], bin_num=10))
    assert config_differences(asked.to_dict(), run) == {"prune.bin_num": (25, 10), "sparsity": (0.5, 0.7)}
    assert config_differences({"a": 1}, {}) == {"a": (1, None)} and config_differences({"a": 1}, {}, True) == {}
    config = reused_config({"config": run}, asked, "runs/x")
    assert config.sparsity == 0.7 and config.prune.bin_num == 10
    notice = capsys.readouterr().out
    assert "prune.bin_num=10, not the requested 25" in notice and "sparsity=0.7" in notice
    assert "new output_dir or overwrite=True" in notice
    old = {k: v for k, v in asked.to_dict().items() if k != "weight_decay"}  # an older run
    assert reused_config({"config": old}, asked, "runs/x") == asked and not capsys.readouterr().out


HISTORY = [dict(kind="train", step=s, distill_loss=0.2, lagrangian_loss=(-0.1) ** s, rank_loss=3.0,
                rank_weight=1e-3 * max(0.01, 1 - s / 2), loss=0.3, expected_sparsity=0.2 * s,
                target_sparsity=0.25 * min(s, 2), expected_keep_ratio=[0.9, 0.5])
           for s in (1, 2, 3)] + [
    dict(kind="eval", step=2, score=0.8, sparsity_real=0.3, keep_ratio=[1.0, 0.8, 0.4], mean_length=10.0),
    dict(kind="eval", step=3, score=0.75, sparsity_real=0.5, keep_ratio=[1.0, 0.9, 0.45], mean_length=10.0)]


def test_history_summaries_by_hand():
    s = score_summary(HISTORY, num_examples=100, metric="accuracy")
    assert (s["best_step"], s["final_step"], s["evaluations"]) == (2, 3, 2)
    assert s["drop_after_best"] == pytest.approx(0.05) and s["standard_error"] == pytest.approx(0.04)
    for metric in ("f1", "matthews_correlation", "pearson", None):  # not proportions
        assert score_summary(HISTORY, 100, metric)["standard_error"] is None
    assert constraint_met_step(HISTORY, 0.5) == 3 and constraint_met_step(HISTORY, 0.9) is None
    terms = loss_terms(HISTORY, since_step=2)  # steps 2 and 3: weights 1e-5, 1e-5
    assert terms["weighted_rank"] == pytest.approx(3e-5) and terms["abs_lagrangian"] == pytest.approx(0.0055)
    assert terms["rank_share"] == pytest.approx(3e-5 / (0.2 + 0.0055 + 3e-5))
    over = largest_overshoot(HISTORY)
    assert over["step"] == 3 and over["overshoot"] == pytest.approx(0.1)
    k = keep_ratios(HISTORY, (1, 2), step=2)  # 10, 8, 4 tokens: 9, 7, 3 ranked ones
    assert k["measured"] == pytest.approx([7 / 9, 3 / 7]) and k["cumulative"] == [0.8, 0.4]
    assert k["expected"] == [0.9, 0.5]


def test_history_summaries_refuse_what_they_cannot_compute():
    with pytest.raises(ValueError, match="prune layer must be >= 1"):
        keep_ratios(HISTORY, (0, 2))
    no_gates = [{k: v for k, v in r.items() if k != "expected_keep_ratio"} for r in HISTORY]
    with pytest.raises(ValueError, match="expected_keep_ratio"):
        keep_ratios(no_gates, (1, 2))
    for key in ("rank_weight", "loss"):
        with pytest.raises(ValueError, match=f"without '{key}'"):
            loss_terms([{k: v for k, v in r.items() if k != key} for r in HISTORY])


def test_config_differences_read_a_json_round_trip_as_the_same_config():
    import json

    from toplib.train import build_train_config
    from toplib.train.config import config_differences
    config = build_train_config("mrpc", "standard", {}).to_dict()  # prune_location a tuple
    assert isinstance(config["prune"]["prune_location"], tuple)
    assert config_differences(config, json.loads(json.dumps(config))) == {}
