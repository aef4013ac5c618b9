"""Per-task presets as data, and building a TrainConfig from defaults < preset < overrides."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..core.config import PruneConfig, check
from .config import TrainConfig

# Li et al., KDD'23, Table 7 (hyper-parameters of the release, 12-layer BERT).
PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "cola": dict(bin_num=20, topk=10, warmup_epochs=50, epochs=100, sparsity=0.43),
    "rte": dict(bin_num=100, topk=20, warmup_epochs=50, epochs=80, sparsity=0.59),
    "qqp": dict(bin_num=50, topk=20, warmup_epochs=10, epochs=40, sparsity=0.65),
    "mrpc": dict(bin_num=50, topk=20, warmup_epochs=150, epochs=200, sparsity=0.67),
    "sst2": dict(bin_num=25, topk=20, warmup_epochs=10, epochs=40, sparsity=0.40),
    "mnli": dict(bin_num=50, topk=20, warmup_epochs=10, epochs=40, sparsity=0.50),
    "qnli": dict(bin_num=50, topk=20, warmup_epochs=10, epochs=40, sparsity=0.58),
    "stsb": dict(bin_num=30, topk=20, warmup_epochs=50, epochs=150, sparsity=0.70),
}
LARGE_TASKS = ("qqp", "mnli", "qnli", "sst2")  # the release fine-tunes these 3 epochs, others 10

# `quick`: minutes on a 2-core CPU. Few epochs, a training subset for the larger tasks,
# and a warm-up that ends early enough for the model to recover at the final target.
QUICK_PRESET: dict[str, Any] = dict(
    bin_num=25, topk=20, epochs=3, warmup_epochs=1.5, finetune_epochs=2,
    finetune_learning_rate=1e-4, learning_rate=5e-5, reg_learning_rate=0.05,
    distill_rank_loss_alpha=1e-3, batch_size=16, max_train_samples=2000, max_eval_samples=None,
    eval_steps=None, evals_per_epoch=4, fix_pruners_after_warmup=True,
)

PRESETS = ("paper", "quick")
KNOBS = tuple(f.name for cls in (TrainConfig, PruneConfig) for f in dataclasses.fields(cls)
              if "help" in f.metadata)
"""Every knob a preset or an override may set (TrainConfig's and PruneConfig's fields)."""


def preset_values(preset: str, task: str) -> dict[str, Any]:
    """Flat knob values of a preset for a task (`paper` falls back to SST-2's row)."""
    check("preset", preset, preset in PRESETS, f"choose one of {', '.join(PRESETS)}")
    paper = dict(PAPER_PRESETS.get(task, PAPER_PRESETS["sst2"]))
    if preset == "paper":
        return dict(paper, finetune_epochs=3 if task in LARGE_TASKS else 10)
    return dict(QUICK_PRESET, sparsity=paper["sparsity"] if task in PAPER_PRESETS else 0.5)


def build_train_config(task: str, preset: str | None = None,
                       overrides: Mapping[str, Any] | None = None,
                       prune_overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from defaults < preset < explicit overrides (None values are skipped);
    PruneConfig's knobs may come in either mapping.

    Example:
        >>> build_train_config("rte", "quick", {"bin_num": 10, "epochs": None}).prune.bin_num
        10
    """
    values = preset_values(preset, task) if preset else {}
    for given in (overrides, prune_overrides):
        values.update({k: v for k, v in (given or {}).items() if v is not None})
    prune_names = {f.name for f in dataclasses.fields(PruneConfig)}
    prune_values = {k: values.pop(k) for k in list(values) if k in prune_names}
    return TrainConfig(**values, prune=PruneConfig(**prune_values))


def overrides_from(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs a namespace sets (e.g. a notebook's ``globals()``), None ones left out.

    Example:
        >>> overrides_from({"epochs": 2, "bin_num": None, "task": "rte"})
        {'epochs': 2}
    """
    return {k: namespace[k] for k in KNOBS if namespace.get(k) is not None}
