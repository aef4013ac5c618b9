"""Ranking agreement over seeds (toplib.viz.agreement) and the configuration a reused run reads
back (toplib.viz.history), on hand-made data."""
from __future__ import annotations

import json
import statistics

import pandas as pd
import pytest

from toplib.viz import agreement as agree
from toplib.viz.history import reused_config


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


def test_agreement_spread_by_hand():
    df = _agreement()
    spread = agree.agreement_spread(df).set_index(["model", "layer"])
    assert spread.loc[(agree.TOP, 0), "kendall_tau_mean"] == pytest.approx(0.3)
    assert spread.loc[(agree.TOP, 0), "kendall_tau_sd"] == pytest.approx(statistics.stdev([0.2, 0.4, 0.3]))
    assert spread.loc[(agree.NORANK, 1), "kendall_tau_sd"] == 0 and spread["n"].eq(3).all()
    assert spread.loc[(agree.TOP, 1), "decides_pruning"] and not spread.loc[(agree.TOP, 0), "decides_pruning"]


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


def test_config_differences_read_a_json_round_trip_as_the_same_config():
    import json

    from toplib.train import build_train_config
    from toplib.train.config import config_differences
    config = build_train_config("mrpc", "standard", {}).to_dict()  # prune_location a tuple
    assert isinstance(config["prune"]["prune_location"], tuple)
    assert config_differences(config, json.loads(json.dumps(config))) == {}
