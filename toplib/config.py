"""Configuration: the pruning structure, the training knobs, and per-task presets.

Knob names follow the paper's release (SPARSITY, PRUNE_LOCATION, LEARNING_RATE,
REG_LEARNING_RATE, DISTILL_RANK_LOSS_ALPHA, BIN_NUM, TOPK, WARMUP_EPOCHS, EPOCHS).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

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

# `quick`: minutes on a 2-core CPU. Few epochs, a training subset for the larger tasks,
# and a warm-up that ends early enough for the model to recover at the final target.
QUICK_PRESET: dict[str, Any] = dict(
    bin_num=25, topk=20, epochs=3, warmup_epochs=1.5, finetune_epochs=2,
    finetune_learning_rate=1e-4, learning_rate=5e-5, reg_learning_rate=0.05,
    distill_rank_loss_alpha=1e-3, batch_size=16, max_train_samples=2000, max_eval_samples=None,
    eval_steps=None, evals_per_epoch=4, fix_pruners_after_warmup=True,
)

PRESETS = ("paper", "quick")


def _check(name: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: {allowed}")


@dataclass
class PruneConfig:
    """Where and how finely tokens are pruned; stored beside every ToP checkpoint."""

    prune_location: tuple[int, ...] | None = None
    """PRUNE_LOCATION: 0-based layers that receive pruned inputs (None: from layer
    max(N/6, 2) on (1 below 6 layers) to N-1: 2..11 for 12 layers as in the release, 2..5
    for 6, where also pruning the input of layer 1 costs 1.5 points more at sparsity 0.5)."""
    bin_num: int = 25
    """BIN_NUM: rank bins (one gate each) per prune layer."""
    droprate_init: float = 0.01
    """Initial probability that a bin gate is closed (release: 0.01)."""
    rank_distill_layers: tuple[int, ...] | None = None
    """Student layers whose importance is rank-distilled (None: release rule, first third)."""

    def __post_init__(self):
        _check("bin_num", self.bin_num, isinstance(self.bin_num, int) and self.bin_num >= 1,
               "BIN_NUM must be an integer >= 1")
        _check("droprate_init", self.droprate_init, 0.0 < self.droprate_init < 1.0,
               "must lie in (0, 1)")
        if self.prune_location is not None:
            self.prune_location = tuple(sorted(set(int(x) for x in self.prune_location)))
            _check("prune_location", self.prune_location, len(self.prune_location) > 0,
                   "give at least one layer")
        if self.rank_distill_layers is not None:
            self.rank_distill_layers = tuple(sorted(set(int(x) for x in self.rank_distill_layers)))

    def resolve(self, num_layers: int) -> "PruneConfig":
        """Fill the depth-dependent defaults and check them against a model's depth."""
        first = max(1, min(2, num_layers // 3), num_layers // 6)
        loc = self.prune_location or tuple(range(first, num_layers))
        bad = [x for x in loc if not 1 <= x < num_layers]
        _check("prune_location", loc, not bad,
               f"layers must lie in 1..{num_layers - 1} for a {num_layers}-layer model")
        distill = self.rank_distill_layers
        if distill is None:  # release: layers 1 .. N/3 - 1 (from the first importance layer)
            distill = tuple(range(loc[0] - 1, max(loc[0], num_layers // 3)))
        bad = [x for x in distill if not 0 <= x < num_layers]
        _check("rank_distill_layers", distill, not bad, f"layers must lie in 0..{num_layers - 1}")
        return dataclasses.replace(self, prune_location=tuple(loc), rank_distill_layers=distill)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """Knobs of a fine-tuning or pruning run. Paper defaults: `preset_values('paper', task)`."""

    sparsity: float = 0.5
    """SPARSITY: target FLOPs sparsity against each example's real length."""
    learning_rate: float = 3e-5
    """LEARNING_RATE of the model weights (AdamW, linear decay)."""
    reg_learning_rate: float = 0.02
    """REG_LEARNING_RATE of the gates (descent) and the Lagrange multipliers (ascent)."""
    distill_rank_loss_alpha: float = 1e-3
    """DISTILL_RANK_LOSS_ALPHA: weight of the ranking-distillation loss."""
    topk: int = 20
    """TOPK: teacher tokens ranked by the ranking-distillation loss."""
    warmup_epochs: float = 1.0
    """WARMUP_EPOCHS: epochs over which the sparsity target grows linearly from 0."""
    epochs: float = 3.0
    """EPOCHS of the pruning run."""
    finetune_epochs: float = 3.0
    """Epochs of teacher fine-tuning (release: 3 for large tasks, 10 for small)."""
    finetune_learning_rate: float = 2e-5
    """Learning rate of teacher fine-tuning."""
    batch_size: int = 32
    """Training batch size."""
    eval_batch_size: int = 64
    """Evaluation batch size."""
    max_seq_length: int | None = None
    """Truncation length (None: the task's padded length of the release)."""
    eval_steps: int | None = None
    """Evaluate every this many steps (None: ``evals_per_epoch`` times an epoch)."""
    evals_per_epoch: int = 4
    """Evaluations per epoch when ``eval_steps`` is None."""
    sparsity_epsilon: float = 0.01
    """The best checkpoint is chosen among evaluations with sparsity >= target - epsilon."""
    constrain_measured: bool = False
    """True: hold the sparsity the evaluation gates give (exact token counts) to the target,
    with the expected sparsity's gradient (straight-through). False: the expected sparsity
    alone, as the release does. On the quick preset True overshoots (0.60 for a 0.5 target:
    a whole-layer pruner gate flips and the multipliers chase the jump), so it is off."""
    binned_expectation: bool = True
    """True: the expected FLOPs the constraint holds count which rank bins each example's
    length actually fills (with fewer tokens than bins some bins are empty, and closing
    them prunes nothing); exact for the first prune layer. False: the release's formula,
    every bin holding 1 / BIN_NUM of the tokens, which on short inputs promises more
    sparsity than evaluation gives (0.52 against 0.49 on Rotten Tomatoes, 25 bins)."""
    fix_pruners_after_warmup: bool = False
    """True: once the target has warmed up, fix each layer's pruner gate that is on at
    evaluation on (and any that turns on later), so the sparsity the constraint holds is
    the one evaluation runs. False: the release's behaviour. Short runs need it: after 3
    epochs a pruner gate still sits between on and off, and evaluation rounds it (0.45
    real sparsity for a 0.5 target on the quick preset without it)."""
    fix_gates_epochs: float = 0.0
    """Train the last this many epochs with every gate fixed at its evaluation value, so
    the weights adapt to the exact masks evaluation runs (0: never, as the release)."""
    distill_temperature: float = 2.0
    """Temperature of logit distillation."""
    max_train_samples: int | None = None
    """Use only this many training examples (seeded choice); None: all."""
    max_eval_samples: int | None = None
    """Use only this many validation examples (the first ones); None: all."""
    freeze_embeddings: bool = True
    """Freeze the embeddings while pruning, as the release does."""
    seed: int = 42
    """Seed of data order, gate sampling and initialisation."""
    prune: PruneConfig = field(default_factory=PruneConfig)
    """The pruning structure (PRUNE_LOCATION, BIN_NUM)."""

    def __post_init__(self):
        if isinstance(self.prune, dict):
            self.prune = PruneConfig(**self.prune)
        _check("sparsity", self.sparsity, 0.0 <= self.sparsity < 1.0, "SPARSITY must lie in [0, 1)")
        _check("topk", self.topk, isinstance(self.topk, int) and self.topk >= 1,
               "TOPK must be an integer >= 1")
        for name in ("learning_rate", "reg_learning_rate", "finetune_learning_rate",
                     "epochs", "finetune_epochs", "distill_temperature"):
            _check(name, getattr(self, name), getattr(self, name) > 0, "must be > 0")
        for name in ("distill_rank_loss_alpha", "warmup_epochs", "sparsity_epsilon",
                     "fix_gates_epochs"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, "must be >= 0")
        _check("evals_per_epoch", self.evals_per_epoch,
               isinstance(self.evals_per_epoch, int) and self.evals_per_epoch >= 1,
               "must be an integer >= 1")
        for name in ("batch_size", "eval_batch_size", "max_seq_length", "eval_steps",
                     "max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            _check(name, value, value is None or (isinstance(value, int) and value >= 1),
                   "must be an integer >= 1" + ("" if name in ("batch_size", "eval_batch_size")
                                                 else " or None"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        return cls(**values)


def preset_values(preset: str, task: str) -> dict[str, Any]:
    """Flat knob values of a preset for a task (`paper` falls back to SST-2's row)."""
    _check("preset", preset, preset in PRESETS, f"choose one of {', '.join(PRESETS)}")
    paper = dict(PAPER_PRESETS.get(task, PAPER_PRESETS["sst2"]))
    if preset == "paper":
        large = task in ("qqp", "mnli", "qnli", "sst2")
        return dict(paper, finetune_epochs=3 if large else 10)
    return dict(QUICK_PRESET, sparsity=paper["sparsity"] if task in PAPER_PRESETS else 0.5)


def build_train_config(task: str, preset: str | None = None,
                       overrides: dict[str, Any] | None = None,
                       prune_overrides: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from defaults < preset < explicit overrides (None values are skipped)."""
    values = preset_values(preset, task) if preset else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    prune_values = {k: values.pop(k) for k in ("bin_num", "prune_location") if k in values}
    prune_values.update({k: v for k, v in (prune_overrides or {}).items() if v is not None})
    return TrainConfig(**values, prune=PruneConfig(**prune_values))


def parse_layers(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """'2-11' or '2,3,5' (or a sequence) -> tuple of layers."""
    if text is None or not isinstance(text, str):
        return None if text is None else tuple(int(x) for x in text)
    layers: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.strip().partition("-")
            layers.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    except ValueError:
        raise ValueError(f"prune_location={text!r} is invalid: use '2-11' or '2,3,5'") from None
    return tuple(layers)
