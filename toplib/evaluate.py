"""Evaluation: task metrics, measured FLOPs two ways, and kept tokens per layer.

FLOPs are measured from the tokens that actually enter each layer under the
deterministic gates, against two dense baselines: each example at its real
(unpadded) length, and every example padded to max_seq_length (the convention of the
paper's table). Both are always reported, labelled.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from .flops import dense_macs, encoder_macs
from .metrics import compute_metrics, score

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_model(top, loader, spec, max_seq_length: int, pruning: bool = True,
                   device: torch.device | str = "cpu", progress: bool = True, gates=None,
                   random_ranking: bool = False) -> dict:
    """Evaluate a ToPModel on one split.

    Args:
        top: ToPModel (put in eval mode here); loader: batches from ``data.make_loader``.
        spec: the task's TaskSpec; max_seq_length: length of the padded convention.
        pruning: False evaluates the dense model.
        gates: (z_bins, z_pruner) to use instead of the model's; random_ranking: rank
            tokens at random (the training-free baselines of ``toplib.sweep``).
    Returns:
        dict with the task metrics, ``score``, ``sparsity_real``, ``reduction_real``,
        ``sparsity_padded``, ``reduction_padded``, ``keep_ratio`` (one per layer: tokens
        entering it / real tokens) and ``expected_sparsity`` (the gates' training estimate).
    """
    top.eval()
    logits, labels, kept, lengths = [], [], [], []
    for batch in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        batch = {k: v.to(device) for k, v in batch.items()}
        out = top(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                  pruning=pruning, gates=gates, random_ranking=random_ranking)
        logits.append(out.logits.float().cpu())
        labels.append(batch["labels"].cpu())
        kept.append((out.alive > 0).sum(-1).cpu())  # (B, N) tokens entering each layer
        lengths.append(batch["attention_mask"].sum(-1).cpu())
    logits_np = torch.cat(logits).numpy()
    metrics = compute_metrics(spec, logits_np, torch.cat(labels).numpy())
    metrics["score"] = score(spec, metrics)
    metrics.update(flops_report(top.dims, torch.cat(kept), torch.cat(lengths), max_seq_length))
    metrics["expected_sparsity"] = float(top.expected_sparsity(torch.cat(lengths)).item()) \
        if pruning else 0.0
    metrics["num_examples"] = int(logits_np.shape[0])
    return metrics


def flops_report(dims, kept: torch.Tensor, lengths: torch.Tensor, max_seq_length: int) -> dict:
    """FLOPs sparsity and reduction of measured token counts, against both baselines.

    Args:
        kept: (E, N) tokens entering each layer per example; lengths: (E,) real lengths.
    """
    kept = kept.to(torch.float64)
    lengths = lengths.to(torch.float64)
    pruned = encoder_macs(kept, dims).sum()
    real = dense_macs(lengths, dims).sum()
    padded = dense_macs(torch.full_like(lengths, float(max_seq_length)), dims).sum()
    return {
        "sparsity_real": float(1 - pruned / real),
        "reduction_real": float(real / pruned),
        "sparsity_padded": float(1 - pruned / padded),
        "reduction_padded": float(padded / pruned),
        "keep_ratio": (kept.sum(0) / lengths.sum()).tolist(),
        "mean_length": float(lengths.mean()),
    }


def evaluate_splits(top, loaders: dict, spec, max_seq_length: int, pruning: bool = True,
                    device="cpu", progress: bool = True, **kwargs) -> dict[str, dict]:
    """``evaluate_model`` on every validation split (MNLI has two); kwargs go through."""
    return {name: evaluate_model(top, loader, spec, max_seq_length, pruning, device, progress,
                                 **kwargs)
            for name, loader in loaders.items()}


def summarize(results: dict[str, dict]) -> str:
    """One readable block per split."""
    lines = []
    for split, m in results.items():
        keys = [k for k in m if k not in ("keep_ratio",) and isinstance(m[k], float)]
        lines.append(f"[{split}] " + "  ".join(f"{k}={m[k]:.4f}" for k in keys))
        lines.append(f"[{split}] keep_ratio per layer: "
                     + " ".join(f"{r:.2f}" for r in m["keep_ratio"]))
    return "\n".join(lines)


def mean_score(results: dict[str, dict]) -> float:
    """Primary score averaged over the validation splits."""
    return float(np.mean([m["score"] for m in results.values()]))


def evaluate_checkpoint(checkpoint: str, task: str | None = None, data_dir: str | None = None,
                        train_file: str | None = None, validation_file: str | None = None,
                        device: str = "cpu", progress: bool = True,
                        max_eval_samples: int | None = None) -> dict[str, dict]:
    """Evaluate a saved teacher or ToP checkpoint (or a run's output directory).

    The task defaults to the one the checkpoint was trained on; a teacher (no trained
    gates) is evaluated dense.
    """
    from transformers import AutoTokenizer

    from .checkpoint import checkpoint_path
    from .config import TrainConfig
    from .loading import prepare_data
    from .model import ToPModel, read_meta

    path = checkpoint_path(checkpoint)
    if not os.path.isdir(path):
        raise ValueError(f"checkpoint={checkpoint!r} is not a directory")
    meta = read_meta(path)
    task = task or meta.get("task")
    if task is None:
        raise ValueError(f"task=None: checkpoint={checkpoint!r} records no task; pass --task")
    config = TrainConfig.from_dict(meta["config"]) if "config" in meta else TrainConfig()
    config.max_eval_samples = max_eval_samples
    tokenizer = AutoTokenizer.from_pretrained(path)
    top = ToPModel.from_pretrained(path).to(device)
    data = prepare_data(task, tokenizer, config, data_dir, train_file, validation_file,
                        need_train=False)
    pruning = meta.get("stage") == "prune"
    return evaluate_splits(top, data.eval_loaders(config, tokenizer), data.spec,
                           data.max_seq_length, pruning, device, progress)
