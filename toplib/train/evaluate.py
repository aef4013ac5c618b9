"""Evaluation: task metrics, FLOPs sparsity three ways, and kept tokens per layer.

* measured, real length (``sparsity_real``): the tokens that actually enter each layer
  under the deterministic gates, against each example at its real length, as a ratio of
  sums (FLOPs saved over the dataset): what toplib's constraint and best/ hold;
* measured, padded (``sparsity_padded``): the same tokens against every example padded to
  max_seq_length (the convention of the paper's table);
* the release's formula (``sparsity_release_real`` / ``_padded``): its expected MACs
  under the 0/1 gates, every bin holding 1 / BIN_NUM of the tokens, as a mean of
  per-example ratios: what the release reports and selects checkpoints by.

All are always reported, labelled.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig

from ..core.config import check, check_device
from ..core.flops import flops_figures, release_sparsity
from ..data import (
    DataFiles,
    check_label_space,
    compute_metrics,
    get_task,
    prepare_data,
    score,
    to_device,
)
from ..hf.model import (
    ToPModel,
    check_sequence_length,
    checkpoint_path,
    load_tokenizer,
    verify_checkpoint,
)
from ..hf.precision import cast_model, resolve_dtype
from .config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalMode:
    """How a model is evaluated: dense (``pruning=False``), under its own evaluation gates,
    or under given ``gates`` = (z_bins, z_pruner), ranking by attention or at random (the
    training-free baselines of ``toplib.viz.sweep``); ``dtype``: compute in bfloat16 (or
    float16 on CUDA) on a cast copy (``toplib.hf.precision``), None: the model's dtype."""

    pruning: bool = True
    gates: tuple[torch.Tensor, torch.Tensor] | None = None
    random_ranking: bool = False
    dtype: torch.dtype | str | None = None


PRUNED, DENSE = EvalMode(), EvalMode(pruning=False)


@torch.no_grad()
def evaluate_model(top, loader, spec, max_seq_length: int, mode: EvalMode = PRUNED,
                   device: torch.device | str = "cpu", progress: bool = True) -> dict:
    """Evaluate a ToPModel (put in eval mode here) on one split's ``loader``
    (``toplib.data.make_loader``), ``max_seq_length`` being the padded convention's length.

    Returns:
        the task metrics, ``score``, the FLOPs figures of ``toplib.core.flops.flops_figures``
        (both conventions, ``keep_ratio`` per layer) and ``expected_sparsity`` (the gates'
        training estimate).
    """
    model = cast_model(top.eval(), mode.dtype)  # top itself when dtype is None or its own
    logits, labels, kept, lengths = [], [], [], []
    for batch in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        batch = to_device(batch, device)
        out = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                  pruning=mode.pruning, gates=mode.gates, random_ranking=mode.random_ranking)
        logits.append(out.logits.float().cpu())
        labels.append(batch["labels"].cpu())
        kept.append((out.alive > 0).sum(-1).cpu())  # (B, N) tokens entering each layer
        lengths.append(batch["attention_mask"].sum(-1).cpu())
    logits_np = torch.cat(logits).numpy()
    metrics = compute_metrics(spec, logits_np, torch.cat(labels).numpy())
    metrics["score"] = score(spec, metrics)
    lengths = torch.cat(lengths)
    metrics.update(flops_figures(torch.cat(kept), lengths, top.dims, max_seq_length))
    metrics.update(_release_figures(top, mode, lengths, max_seq_length))
    metrics["expected_sparsity"] = float(top.expected_sparsity(lengths).item()) \
        if mode.pruning else 0.0
    metrics["num_examples"] = int(logits_np.shape[0])
    return metrics


def _release_figures(top, mode: EvalMode, lengths: torch.Tensor, max_seq_length: int) -> dict:
    """The release's sparsity under the evaluation gates (0 for the dense model)."""
    if not mode.pruning:
        return {"sparsity_release_real": 0.0, "sparsity_release_padded": 0.0}
    z_bins, z_pruner = mode.gates if mode.gates is not None else top.gates(training=False)
    return release_sparsity(lengths, z_bins.detach().cpu(), z_pruner.detach().cpu(),
                            top.prune.prune_location, top.dims, max_seq_length)


def evaluate_splits(top, loaders: dict, spec, max_seq_length: int, mode: EvalMode = PRUNED,
                    device="cpu", progress: bool = True) -> dict[str, dict]:
    """``evaluate_model`` on every validation split (MNLI has two)."""
    return {name: evaluate_model(top, loader, spec, max_seq_length, mode, device, progress)
            for name, loader in loaders.items()}


def mean_score(results: dict[str, dict]) -> float:
    """Primary score averaged over the validation splits."""
    return float(np.mean([m["score"] for m in results.values()]))


RELEASE_SELECTION = {"qqp": ("validation", "accuracy"), "mnli": ("validation_matched", "score")}
"""(split, metric) by which the release picks best/ where it differs from toplib's mean
primary score: QQP by accuracy (``trainer/trainer.py``), MNLI by matched
(``run_glue_prune.py`` evaluates validation_matched only)."""


def split_summary(results: dict[str, dict], task: str | None = None,
                  select_by: str = "primary") -> dict:
    """The first split's figures with the score averaged over every split, or, with
    ``select_by="release"``, the score the release selects by (``RELEASE_SELECTION``)."""
    summary = dict(results[next(iter(results))], score=mean_score(results))
    if select_by == "release" and task in RELEASE_SELECTION:
        split, metric = RELEASE_SELECTION[task]
        summary["score"] = float(results[split][metric])
    return summary


def summarize(results: dict[str, dict]) -> str:
    """One readable block per split."""
    lines = []
    for split, m in results.items():
        keys = [k for k in m if k not in ("keep_ratio",) and isinstance(m[k], float)]
        lines.append(f"[{split}] " + "  ".join(f"{k}={m[k]:.4f}" for k in keys))
        lines.append(f"[{split}] keep_ratio per layer: "
                     + " ".join(f"{r:.2f}" for r in m["keep_ratio"]))
    return "\n".join(lines)


def evaluate_checkpoint(checkpoint: str, task: str | None = None,
                        data: DataFiles | str | None = None, device: str = "cpu",
                        progress: bool = True, max_eval_samples: int | None = None,
                        dtype: str | None = None) -> dict:
    """Evaluate a saved teacher or ToP checkpoint (or a run's output directory).

    The task defaults to the one the checkpoint was trained on, and its labels must be the
    checkpoint's (a custom task's files are read with the checkpoint's label names); a
    teacher (no trained gates) is evaluated dense. Every file, the labels and the sequence
    length are checked before the weights load.

    ``dtype``: "bfloat16" (or "float16" on CUDA) evaluates a cast copy; None: float32.

    Returns:
        {split: metrics} as :func:`evaluate_model` gives them.
    """
    device = check_device(device)
    resolve_dtype(dtype, device)
    check("max_eval_samples", max_eval_samples, max_eval_samples is None or (
        isinstance(max_eval_samples, int) and max_eval_samples >= 1), "an integer >= 1 or None")
    path = checkpoint_path(str(checkpoint))
    meta = verify_checkpoint(path, "checkpoint")
    task = task or meta.get("task")
    if task is None:
        raise ValueError(f"task=None: checkpoint={checkpoint!r} records no task; pass --task")
    config = TrainConfig.from_dict(meta["config"]) if "config" in meta else TrainConfig()
    config.max_eval_samples = max_eval_samples
    spec, labels, name = get_task(task), meta["labels"], f"checkpoint={checkpoint!r}"
    check_sequence_length(config.max_seq_length or spec.max_seq_length,
                          AutoConfig.from_pretrained(path))
    if spec.name != "custom":  # a custom task's labels are known once its files are read
        check_label_space(labels, spec, name)
    tokenizer = load_tokenizer(path, "checkpoint")
    split_data = prepare_data(task, tokenizer, config, data, need_train=False,
                              label_names=labels["label_names"])
    check_label_space(labels, split_data.spec, name)
    top = ToPModel.from_pretrained(path, name="checkpoint").to(device).eval()
    mode = EvalMode(pruning=meta.get("stage") == "prune", dtype=dtype)
    return evaluate_splits(top, split_data.eval_loaders(config, tokenizer), split_data.spec,
                           split_data.padded_length, mode, device, progress)
