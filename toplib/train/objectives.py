"""The two stages the loop drives: ``FinetuneStage`` (the dense teacher) and ``PruneStage``
(ToP: distillation + the Lagrangian FLOPs constraint + ranking distillation).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from ..core.config import check
from ..core.constraint import LagrangianConstraint, multiplier_optimizer, warmup_target
from ..core.flops import measured_sparsity, release_sparsity
from ..core.gates import keep_rule
from ..core.importance import kept_counts
from ..core.ranking import rank_distillation_loss, rank_loss_weight
from .config import TrainConfig


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """``KL(softmax(z_t / T) || softmax(z_s / T)) * T^2`` (batch mean)."""
    return F.kl_div(F.log_softmax(student / temperature, -1), F.softmax(teacher / temperature, -1),
                    reduction="batchmean") * temperature ** 2


def autocast(config: TrainConfig, device: torch.device):
    """Autocast for ``config.dtype``; gates, importance, losses and the Lagrangian stay float32."""
    return torch.autocast(device.type, torch.bfloat16, enabled=config.dtype == "bfloat16")


def planned_steps(epochs: float, steps_per_epoch: int, name: str) -> int:
    """Training steps of ``epochs`` epochs (rounded); a ValueError when that is none."""
    steps = int(round(epochs * steps_per_epoch))
    if steps < 1:
        raise ValueError(f"{name}={epochs!r} gives 0 training steps ({steps_per_epoch} steps "
                         f"per epoch); allowed: at least {0.5 / steps_per_epoch:.3g} epochs")
    return steps


class FinetuneStage:
    """Dense fine-tuning of the teacher (AdamW, linear decay)."""

    name, pruning = "finetune", False

    def __init__(self, top, config: TrainConfig, steps_per_epoch: int):
        self.top, self.config = top, config
        self.total_steps = total = planned_steps(config.finetune_epochs, steps_per_epoch,
                                                 "finetune_epochs")
        self.optimizers = {"model": torch.optim.AdamW(top.model.parameters(),
                                                       lr=config.finetune_learning_rate,
                                                       weight_decay=config.weight_decay)}
        self.schedulers = {"model": get_linear_schedule_with_warmup(
            self.optimizers["model"], int(0.06 * total), total)}

    def loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:  # noqa: ARG002
        ids = batch["input_ids"]
        with autocast(self.config, ids.device):
            out = self.top(ids, batch["attention_mask"], batch.get("token_type_ids"),
                           pruning=False)
        loss = task_loss(out.logits.float(), batch["labels"],
                         self.top.config.problem_type == "regression")
        return loss, {"task_loss": loss.item()}

    def eligible(self, summary: dict, started: bool = False) -> bool:  # noqa: ARG002
        return True

    def after_step(self) -> None:
        pass

    def modules(self) -> dict:
        return {}


class PruneStage:
    """ToP training against a frozen teacher (METHOD Sec. 4-6). ``targets``: the teacher's
    cached outputs (``toplib.train.teacher``), read by each batch's ``index``."""

    name, pruning = "prune", True
    targets = None

    def __init__(self, top, teacher, config: TrainConfig, steps_per_epoch: int):
        self.top, self.teacher, self.config = top, teacher.eval(), config
        self.total_steps = total = planned_steps(config.epochs, steps_per_epoch, "epochs")
        self.lagrangian = LagrangianConstraint()
        self.warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
        self.regression = top.config.problem_type == "regression"
        top.release_forward = config.training_forward == "release"
        top.drop_pruned = config.drop_tokens
        if config.fixed_schedule is not None:  # a PoWER-BERT-style baseline: no gate learns
            check("fixed_schedule", config.fixed_schedule,
                  len(config.fixed_schedule) == len(top.prune.prune_location),
                  f"one count per prune location {list(top.prune.prune_location)}")
            top.gates.close_lowest_bins_(config.fixed_schedule)
            top.gates.fix_all_()
        if config.freeze_embeddings:  # the release freezes embeddings while pruning
            top.model.base_model.embeddings.requires_grad_(False)
        teacher.requires_grad_(False)
        # the teacher's reference ranking averages the same query rows as the student's
        teacher.prune = dataclasses.replace(teacher.prune,
                                            importance_rows=top.prune.importance_rows)
        weights = [p for p in top.model.parameters() if p.requires_grad]
        self.optimizers = {
            "model": torch.optim.AdamW(weights, lr=config.learning_rate,
                                       weight_decay=config.weight_decay),
            "gates": torch.optim.AdamW(top.gates.parameters(), lr=config.reg_learning_rate,
                                       weight_decay=0.0),
            "lagrangian": multiplier_optimizer(self.lagrangian, config.reg_learning_rate),
        }
        self.schedulers = {"model": get_linear_schedule_with_warmup(
            self.optimizers["model"], 0, total)}

    def loss(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        cfg, top = self.config, self.top
        if cfg.fix_pruners_after_warmup and 0 < self.warmup_steps <= step:
            top.gates.fix_pruners_()  # every step: a pruner that turns on later is fixed too
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        last = top.dims.num_layers - 1
        if self.targets is not None:
            teacher_logits, teacher_top = self.targets.batch(batch["index"], ids.device)
        else:
            with torch.no_grad():
                teacher = self.teacher(ids, mask, types, pruning=False, record_layers=(last,))
            teacher_logits, teacher_top = teacher.logits, teacher.importance[last]
        with autocast(cfg, ids.device):
            out = top(ids, mask, types, record_layers=top.prune.rank_distill_layers)
        logits = out.logits.float()
        if self.regression:  # the release uses the hard-label loss for STS-B
            fit = task_loss(logits, batch["labels"], True)
        else:
            fit = distillation_loss(logits, teacher_logits, cfg.distill_temperature)
        target = warmup_target(step, cfg.sparsity, self.warmup_steps)
        lengths = mask.sum(-1)
        release = cfg.accounting == "release"  # its formula: uniform bins, mean of ratios
        expected = top.expected_sparsity(lengths, cfg.binned_expectation and not release,
                                         mean_of_ratios=release)
        measured, release_figure = self.measured_sparsity(lengths)
        lag = self.lagrangian(expected, target) if cfg.fixed_schedule is None else expected * 0
        rank = sum(rank_distillation_loss(out.importance[layer].float(), teacher_top, mask,
                                          cfg.topk, cfg.rank_score, cfg.rank_sigma,
                                          cfg.rank_pad_lists)
                   for layer in top.prune.rank_distill_layers)
        rank_weight = rank_loss_weight(step, cfg.distill_rank_loss_alpha, self.warmup_steps)
        loss = fit + lag + rank_weight * rank
        keep = top.gates.expected_keep_ratio().detach()
        return loss, {
            "distill_loss" if not self.regression else "task_loss": fit.item(),
            "lagrangian_loss": lag.item(), "rank_weight": rank_weight,
            "rank_loss": float(rank.detach()) if torch.is_tensor(rank) else 0.0,
            "expected_sparsity": expected.item(), "measured_sparsity": measured,
            "release_sparsity": release_figure, "target_sparsity": target,
            "lambda_1": self.lagrangian.lambda_1.item(),
            "lambda_2": self.lagrangian.lambda_2.item(),
            "expected_keep_ratio": [round(x, 4) for x in keep.tolist()],
        }

    @torch.no_grad()
    def measured_sparsity(self, lengths: torch.Tensor) -> tuple[float, float]:
        """Real-length sparsity under the evaluation gates, measured (no forward pass) and
        by the release's formula."""
        top, lengths = self.top, lengths.cpu()
        z_bins, z_pruner = (z.cpu() for z in top.gates(training=False))
        kept = kept_counts(lengths, keep_rule(z_bins, z_pruner), top.prune.prune_location,
                           top.dims.num_layers, top.prune.bin_num, top.prune.bin_eps)
        release = release_sparsity(lengths, z_bins, z_pruner, top.prune.prune_location, top.dims)
        return measured_sparsity(kept, lengths, top.dims), release["sparsity_release_real"]

    def eligible(self, summary: dict, started: bool = False) -> bool:
        """Whether an evaluation may become best/: sparsity >= target - epsilon, measured, or
        by the release's formula, sticky as in its trainer."""
        cfg = self.config
        if cfg.fixed_schedule is not None:  # the sparsity is what the schedule gives
            return True
        if cfg.accounting == "release":  # trainer.py rounds the figure to 5 decimals
            figure = round(summary["sparsity_release_real"], 5)
            return started or figure >= cfg.sparsity - cfg.sparsity_epsilon
        return summary["sparsity_real"] >= cfg.sparsity - cfg.sparsity_epsilon

    def after_step(self) -> None:
        self.top.gates.clamp_()

    def modules(self) -> dict:
        return {"lagrangian": self.lagrangian}

