"""Evaluation: task metrics, kept tokens per layer and FLOPs sparsity, reported three ways
(docs/flops_sparsity.md)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig

from ..core.config import check_device
from ..core.flops import flops_figures, release_sparsity
from ..data import (
    DataFiles,
    check_label_space,
    compute_metrics,
    get_task,
    predicted,
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


@dataclass(frozen=True)
class EvalMode:
    """How a model is evaluated: dense, under its own evaluation gates or given ``gates`` =
    (z_bins, z_pruner), ranking at random or not; ``dtype`` None: the model's own."""

    pruning: bool = True
    gates: tuple[torch.Tensor, torch.Tensor] | None = None
    random_ranking: bool = False
    dtype: torch.dtype | str | None = None
    predictions: bool = False  # also return ``predictions`` (class ids or scores), ``labels``


PRUNED, DENSE = EvalMode(), EvalMode(pruning=False)


@torch.no_grad()
def evaluate_model(top, loader, spec, max_seq_length: int, mode: EvalMode = PRUNED,
                   device: torch.device | str = "cpu", progress: bool = True) -> dict:
    """Task metrics, ``score``, FLOPs figures (both conventions, the release's) and
    ``expected_sparsity`` of a ToPModel (put in eval mode) on one split."""
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
    if mode.pruning:  # the release's sparsity under the evaluation gates
        z_bins, z_pruner = mode.gates if mode.gates is not None else top.gates(training=False)
        metrics.update(release_sparsity(lengths, z_bins.detach().cpu(), z_pruner.detach().cpu(),
                                        top.prune.prune_location, top.dims, max_seq_length),
                       expected_sparsity=float(top.expected_sparsity(lengths).item()))
    else:
        metrics.update(sparsity_release_real=0.0, sparsity_release_padded=0.0,
                       expected_sparsity=0.0)
    metrics["num_examples"] = int(logits_np.shape[0])
    if mode.predictions:
        metrics.update(predictions=predicted(spec, logits_np).tolist(),
                       labels=torch.cat(labels).tolist())
    return metrics


def evaluate_splits(top, loaders: dict, spec, max_seq_length: int, mode: EvalMode = PRUNED,
                    device="cpu", progress: bool = True) -> dict[str, dict]:
    """``evaluate_model`` on every validation split."""
    return {name: evaluate_model(top, loader, spec, max_seq_length, mode, device, progress)
            for name, loader in loaders.items()}


def mean_score(results: dict[str, dict]) -> float:
    """Primary score averaged over the validation splits."""
    return float(np.mean([m["score"] for m in results.values()]))


RELEASE_SELECTION = {"qqp": ("validation", "accuracy"), "mnli": ("validation_matched", "score")}
"""(split, metric) by which the release picks best/ where it differs from toplib
(``trainer/trainer.py``, ``run_glue_prune.py``)."""


def split_summary(results: dict[str, dict], task: str | None = None,
                  select_by: str = "primary") -> dict:
    """The first split's figures with the score averaged over the splits (``select_by=
    "release"``: :data:`RELEASE_SELECTION`'s)."""
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


def check_task(task: str, config: TrainConfig, hf_config, labels: dict | None = None,
               name: str = "") -> None:
    """Before any data is read: the task's sequence length must fit the model, and (but for a
    custom task, whose labels come with its files) its labels the checkpoint's ``labels``."""
    spec = get_task(task)
    check_sequence_length(config.max_seq_length or spec.max_seq_length, hf_config)
    if spec.name != "custom":
        check_label_space(labels, spec, name)


def checkpoint_data(task: str, tokenizer, config: TrainConfig, data, labels: dict, name: str,
                    need_train: bool = True):
    """``prepare_data`` with a checkpoint's label names; a custom task's labels, known once its
    files are read, must be the checkpoint's ``labels`` too."""
    split_data = prepare_data(task, tokenizer, config, data, need_train, labels["label_names"])
    if split_data.spec.name == "custom":
        check_label_space(labels, split_data.spec, name)
    return split_data


def evaluate_checkpoint(checkpoint: str, task: str | None = None,
                        data: DataFiles | str | None = None, device: str = "cpu",
                        progress: bool = True, max_eval_samples: int | None = None,
                        dtype: str | None = None) -> dict:
    """{split: metrics} of a saved teacher (dense) or ToP checkpoint, or a run directory;
    ``task`` defaults to the checkpoint's, whose labels must match. ``dtype`` None: float32."""
    device = check_device(device)
    resolve_dtype(dtype, device)
    return evaluate_saved(checkpoint, task, data, device, progress, max_eval_samples,
                          EvalMode(dtype=dtype))


def evaluate_saved(checkpoint: str, task: str | None, data, device: str, progress: bool,
                   max_eval_samples: int | None, mode: EvalMode) -> dict:
    """:func:`evaluate_checkpoint` under ``mode``, its ``pruning`` set by the checkpoint's stage."""
    path = checkpoint_path(str(checkpoint))
    meta = verify_checkpoint(path, "checkpoint")
    task = task or meta.get("task")
    if task is None:
        raise ValueError(f"task=None: checkpoint={checkpoint!r} records no task; pass --task")
    config = TrainConfig.from_dict(meta["config"]) if "config" in meta else TrainConfig()
    config = replace(config, max_eval_samples=max_eval_samples)  # checked there
    labels, name = meta["labels"], f"checkpoint={checkpoint!r}"
    hf_config = AutoConfig.from_pretrained(path)
    check_task(task, config, hf_config, labels, name)
    tokenizer = load_tokenizer(path, "checkpoint", hf_config)
    split_data = checkpoint_data(task, tokenizer, config, data, labels, name, need_train=False)
    top = ToPModel.from_pretrained(path, name="checkpoint", meta=meta).to(device).eval()
    mode = replace(mode, pruning=meta.get("stage") == "prune")
    return evaluate_splits(top, split_data.eval_loaders(config, tokenizer), split_data.spec,
                           split_data.padded_length, mode, device, progress)
