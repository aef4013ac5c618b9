"""The frozen teacher's outputs, computed once per pruning run (``TrainConfig.cache_teacher``).

ToP asks two things of the teacher on every batch: its logits (logit distillation) and its
final layer's top-k tokens (the ranking loss's targets, :func:`toplib.core.ranking.top_tokens`).
Both are fixed per example, so one length-sorted, no-grad pass over the training examples
before training gives them all, and ``output_dir/teacher_targets.pt`` keeps them for a
resumed run. Memory: per example C floats and TOPK int16 positions, no attention maps.

The file is keyed by what the targets depend on: the teacher's weights (a hash of its
tensors) and config, the encoded training examples (so the data, tokenizer and
``max_seq_length``), TOPK and the importance rows; a different key recomputes them. Each
run folder (a sweep's trials too) computes its own. Equal to the live teacher's up to float
summation order (a batch's padding changes it by ulps), so a near-tie of two tokens'
importance may order them differently; the loss is otherwise the same.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..core.ranking import top_tokens
from ..data import make_loader, sort_by_length, to_device

logger = logging.getLogger(__name__)
TARGETS_FILE = "teacher_targets.pt"
FORMAT = 1


@dataclass
class TeacherTargets:
    """Per training example: ``logits`` (E, C) float32 and ``top`` (E, K) int16 token
    positions (best first, -1 past the example's tokens)."""

    logits: torch.Tensor
    top: torch.Tensor
    key: str

    def batch(self, index: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, C), top (B, K) long) of the examples ``index`` (B,)."""
        index = index.cpu()
        return (self.logits[index].to(device, non_blocking=True),
                self.top[index].long().to(device, non_blocking=True))


def teacher_targets(teacher, examples: list[dict], tokenizer, config, output_dir: str,
                    device: str = "cpu", progress: bool = True) -> TeacherTargets:
    """The targets of ``examples`` (encoded, each with its ``index``): read from
    ``output_dir``'s file when its key matches, else computed and saved there."""
    key = targets_key(teacher, examples, config)
    path = os.path.join(output_dir, TARGETS_FILE)
    if os.path.exists(path):
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            return TeacherTargets(saved["logits"], saved["top"], key)
        logger.info("%s belongs to another teacher, data or TOPK: recomputing", path)
    logits, top = compute_targets(teacher, examples, tokenizer, config, device, progress)
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save({"key": key, "logits": logits, "top": top}, tmp)
    os.replace(tmp, path)
    return TeacherTargets(logits, top, key)


@torch.no_grad()
def compute_targets(teacher, examples: list[dict], tokenizer, config, device: str = "cpu",
                    progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (E, C), top (E, K)) of the teacher on every example, in ``index`` order, with
    K = min(TOPK, longest - 1): one evaluation-mode pass in length-sorted batches."""
    was_training = teacher.training
    teacher.eval()
    last = teacher.dims.num_layers - 1
    width = max(1, min(config.topk, max(len(e["input_ids"]) for e in examples) - 1))
    logits = torch.zeros(len(examples), teacher.config.num_labels)
    top = torch.full((len(examples), width), -1, dtype=torch.int16)
    loader = make_loader(sort_by_length(examples), config.eval_batch_size, tokenizer,
                         shuffle=False)
    for batch in tqdm(loader, desc="teacher targets", disable=not progress, leave=False):
        index = batch.pop("index")
        batch = to_device(batch, device)
        out = teacher(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                      pruning=False, record_layers=(last,))
        logits[index] = out.logits.float().cpu()
        best = top_tokens(out.importance[last], batch["attention_mask"], width).cpu()
        top[index, :best.shape[1]] = best.to(torch.int16)
    teacher.train(was_training)
    return logits, top


def targets_key(teacher, examples: list[dict], config) -> str:
    """A hash of what the targets depend on (see the module's docstring)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    digest.update(teacher.config.to_json_string().encode())  # eps, activation, ...
    fields = ("input_ids", "attention_mask", "token_type_ids")
    for e in examples:
        digest.update(json.dumps([e.get(f) for f in fields]).encode())
    digest.update(json.dumps([FORMAT, config.topk, teacher.prune.importance_rows]).encode())
    return digest.hexdigest()
