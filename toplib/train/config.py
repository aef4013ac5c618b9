"""The knobs of a fine-tuning or pruning run (names follow the release: SPARSITY,
LEARNING_RATE, REG_LEARNING_RATE, DISTILL_RANK_LOSS_ALPHA, TOPK, WARMUP_EPOCHS, EPOCHS).

Paper defaults per task: ``toplib.train.presets``. Every field's help is its metadata; the
command line is generated from it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..core.config import PruneConfig, check, check_positive_ints, knob


@dataclass
class TrainConfig:
    """Knobs of a fine-tuning or pruning run. Paper defaults: ``preset_values('paper', task)``."""

    sparsity: float = knob(0.5, "target FLOPs sparsity at real length, in [0, 1)", "SPARSITY")
    learning_rate: float = knob(3e-5, "AdamW rate of the weights while pruning", "LEARNING_RATE")
    reg_learning_rate: float = knob(0.02, "rate of the gates and multipliers", "REG_LEARNING_RATE")
    distill_rank_loss_alpha: float = knob(1e-3, "ranking-distillation weight",
                                          "DISTILL_RANK_LOSS_ALPHA")
    topk: int = knob(20, "teacher tokens the ranking loss orders", "TOPK")
    warmup_epochs: float = knob(1.0, "epochs of linear target warm-up from 0", "WARMUP_EPOCHS")
    epochs: float = knob(3.0, "epochs of the pruning run", "EPOCHS")
    finetune_epochs: float = knob(3.0, "epochs of teacher fine-tuning (release: 3 large, 10 small)")
    finetune_learning_rate: float = knob(2e-5, "learning rate of teacher fine-tuning")
    batch_size: int = knob(32, "training batch size")
    eval_batch_size: int = knob(64, "evaluation batch size")
    max_seq_length: int | None = knob(None, "truncation length (default: the task's, as released)")
    eval_steps: int | None = knob(None, "evaluate every N steps (default: evals_per_epoch)")
    evals_per_epoch: int = knob(4, "evaluations per epoch when eval_steps is not given")
    sparsity_epsilon: float = knob(0.01, "best checkpoint needs sparsity >= target - epsilon")
    # The switches below are toplib's departures from the release (README: departures).
    constrain_measured: bool = knob(False, "constrain the evaluation gates' sparsity "
                                    "(straight-through); overshoots on the quick preset")
    binned_expectation: bool = knob(True, "expected FLOPs count the rank bins each length fills "
                                    "(off: the release's formula)")
    fix_pruners_after_warmup: bool = knob(False, "fix pruner gates on once the target has "
                                          "warmed up (off: the release)")
    fix_gates_epochs: float = knob(0.0, "train the last N epochs on the fixed evaluation gates")
    distill_temperature: float = knob(2.0, "temperature of logit distillation")
    max_train_samples: int | None = knob(None, "train on a seeded subset of N examples")
    max_eval_samples: int | None = knob(None, "evaluate on the first N validation examples")
    freeze_embeddings: bool = knob(True, "freeze the embeddings while pruning, as the release")
    seed: int = knob(42, "seed of data order, gate sampling and initialisation")
    prune: PruneConfig = field(default_factory=PruneConfig)
    """The pruning structure (PRUNE_LOCATION, BIN_NUM)."""

    def __post_init__(self):
        if isinstance(self.prune, dict):
            self.prune = PruneConfig(**self.prune)
        check("sparsity", self.sparsity, 0.0 <= self.sparsity < 1.0, "SPARSITY must lie in [0, 1)")
        check("topk", self.topk, isinstance(self.topk, int) and self.topk >= 1,
              "TOPK must be an integer >= 1")
        for name in ("learning_rate", "reg_learning_rate", "finetune_learning_rate",
                     "epochs", "finetune_epochs", "distill_temperature"):
            check(name, getattr(self, name), getattr(self, name) > 0, "must be > 0")
        for name in ("distill_rank_loss_alpha", "warmup_epochs", "sparsity_epsilon",
                     "fix_gates_epochs"):
            check(name, getattr(self, name), getattr(self, name) >= 0, "must be >= 0")
        check_positive_ints(self, ("evals_per_epoch", "batch_size", "eval_batch_size"), False)
        check_positive_ints(self, ("max_seq_length", "eval_steps", "max_train_samples",
                                   "max_eval_samples"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        return cls(**values)
