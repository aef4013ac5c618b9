"""Configuration: validation messages, depth-dependent defaults, preset precedence."""
from __future__ import annotations

import pytest

from toplib.core.config import PruneConfig, parse_layers
from toplib.train.config import (
    PAPER_PRESETS,
    QUICK_PRESET,
    TrainConfig,
    build_train_config,
    preset_values,
)

INVALID = [
    # constructor, kwargs, field, value as repr'd in the message
    (TrainConfig, dict(sparsity=1.0), "sparsity", "1.0"),
    (TrainConfig, dict(sparsity=-0.1), "sparsity", "-0.1"),
    (TrainConfig, dict(topk=0), "topk", "0"),
    (TrainConfig, dict(batch_size=0), "batch_size", "0"),
    (TrainConfig, dict(eval_batch_size=-3), "eval_batch_size", "-3"),
    (TrainConfig, dict(learning_rate=0.0), "learning_rate", "0.0"),
    (TrainConfig, dict(warmup_epochs=-1.0), "warmup_epochs", "-1.0"),
    (TrainConfig, dict(max_seq_length=0), "max_seq_length", "0"),
    (PruneConfig, dict(bin_num=0), "bin_num", "0"),
    (PruneConfig, dict(bin_num=2.5), "bin_num", "2.5"),
    (PruneConfig, dict(droprate_init=1.0), "droprate_init", "1.0"),
    (PruneConfig, dict(prune_location=()), "prune_location", "()"),
]


@pytest.mark.parametrize("cls, kwargs, field, value", INVALID,
                         ids=[f"{f}={v}" for _, _, f, v in INVALID])
def test_validation_error_names_field_and_value(cls, kwargs, field, value):
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    assert f"{field}={value}" in str(err.value)


@pytest.mark.parametrize("location, layers", [((0, 3), 12), ((2, 12), 12), ((6,), 6), ((-1,), 4)])
def test_prune_location_outside_the_model_is_rejected(location, layers):
    with pytest.raises(ValueError, match=rf"prune_location=.*1\.\.{layers - 1}"):
        PruneConfig(prune_location=location).resolve(layers)


def test_rank_distill_layers_outside_the_model_are_rejected():
    with pytest.raises(ValueError, match="rank_distill_layers"):
        PruneConfig(rank_distill_layers=(5,)).resolve(4)


@pytest.mark.parametrize("layers, prune_location, distill", [
    (12, tuple(range(2, 12)), (1, 2, 3)),  # release: PRUNE_LOCATION 2..11, distil layers 1..3
    (24, tuple(range(4, 24)), tuple(range(3, 8))),
    (6, (2, 3, 4, 5), (1,)),
    (4, (1, 2, 3), (0,)),
    (3, (1, 2), (0,)),
])
def test_resolve_defaults_depend_on_depth(layers, prune_location, distill):
    resolved = PruneConfig().resolve(layers)
    assert resolved.prune_location == prune_location
    assert resolved.rank_distill_layers == distill


def test_resolve_keeps_explicit_values_and_normalises_them():
    config = PruneConfig(prune_location=[7, 3, 3, 5], rank_distill_layers=[2, 1])
    assert config.prune_location == (3, 5, 7) and config.rank_distill_layers == (1, 2)
    resolved = config.resolve(12)
    assert resolved.prune_location == (3, 5, 7) and resolved.rank_distill_layers == (1, 2)
    assert config.resolve(12) == resolved  # resolve does not mutate


PRECEDENCE = [
    # preset, overrides, prune_overrides, expected TrainConfig fields, expected prune fields
    (None, None, None, dict(sparsity=0.5, topk=20, epochs=3.0), dict(bin_num=25)),
    ("paper", None, None, dict(sparsity=0.43, topk=10, epochs=100, warmup_epochs=50,
                               finetune_epochs=10), dict(bin_num=20)),
    ("paper", dict(sparsity=0.3, topk=None, bin_num=7), None, dict(sparsity=0.3, topk=10),
     dict(bin_num=7)),
    ("quick", dict(epochs=5), dict(prune_location=(2, 3)),
     dict(sparsity=0.43, epochs=5, learning_rate=QUICK_PRESET["learning_rate"]),
     dict(bin_num=QUICK_PRESET["bin_num"], prune_location=(2, 3))),
    (None, dict(batch_size=8, bin_num=None), None, dict(batch_size=8), dict(bin_num=25)),
]


@pytest.mark.parametrize("preset, overrides, prune_overrides, want, want_prune", PRECEDENCE)
def test_build_train_config_precedence(preset, overrides, prune_overrides, want, want_prune):
    config = build_train_config("cola", preset, overrides, prune_overrides)
    for name, value in want.items():
        assert getattr(config, name) == value, name
    for name, value in want_prune.items():
        assert getattr(config.prune, name) == value, name


def test_paper_preset_uses_task_row_and_large_task_finetune_epochs():
    for task, row in PAPER_PRESETS.items():
        values = preset_values("paper", task)
        assert {k: values[k] for k in row} == row, task
        assert values["finetune_epochs"] == (3 if task in ("qqp", "mnli", "qnli", "sst2") else 10)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="preset='fast'"):
        build_train_config("cola", "fast")


def test_train_config_round_trips_through_dict():
    config = build_train_config("rte", "paper", prune_overrides=dict(prune_location=(2, 5)))
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config and isinstance(again.prune, PruneConfig)


@pytest.mark.parametrize("text, want", [
    ("2-4,7", (2, 3, 4, 7)),
    ("2-11", tuple(range(2, 12))),
    ("3", (3,)),
    (" 1 , 5-6 ", (1, 5, 6)),
    ([4, 2], (4, 2)),
    (None, None),
])
def test_parse_layers(text, want):
    assert parse_layers(text) == want


@pytest.mark.parametrize("text", ["two", "2-", "1,,3", "a-b"])
def test_parse_layers_rejects_garbage_naming_prune_location(text):
    with pytest.raises(ValueError, match="prune_location"):
        parse_layers(text)


@pytest.mark.parametrize("flags, want", [([], True), (["--no-fix-pruners-after-warmup"], False)])
def test_cli_switches_override_the_preset(flags, want):
    from toplib.cli import _train_config, build_parser

    args = build_parser().parse_args(["prune", "--task", "cola", "--teacher", "t", "--output-dir",
                                      "o", "--preset", "quick", "--no-binned-expectation", *flags])
    config = _train_config(args)
    assert config.fix_pruners_after_warmup is want
    assert config.binned_expectation is False
    assert TrainConfig().fix_pruners_after_warmup is False  # the release's behaviour by default


def test_a_saved_config_of_a_removed_option_reads_back_only_at_its_old_default():
    saved = dict(TrainConfig().to_dict(), constrain_measured=False, fix_gates_epochs=0.0)
    assert TrainConfig.from_dict(saved) == TrainConfig()
    with pytest.raises(ValueError, match=r"fix_gates_epochs=1\.0 is invalid: this option was removed"):
        TrainConfig.from_dict(dict(saved, fix_gates_epochs=1.0))
