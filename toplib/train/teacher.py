"""The frozen teacher's logits and final-layer top-k tokens, computed once per pruning run in
one length-sorted pass and kept in ``output_dir/teacher_targets.pt`` (``cache_teacher``).
Equal to the live teacher's up to float summation order, so near-tied tokens may swap.
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
    """``logits`` (E, C) float32 and ``top`` (E, K) int16 positions (best first, -1: none)."""

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
    """The targets of encoded ``examples``: read from ``output_dir`` when the key matches,
    else computed and saved there."""
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
    """(logits (E, C), top (E, K)) in ``index`` order, K = min(TOPK, longest - 1)."""
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
    """A hash of the teacher's weights and config, the encoded examples, TOPK and the
    importance rows: what the targets depend on."""
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
