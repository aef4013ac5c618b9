"""Checkpoint directories: written whole, checked file by file when read.

A checkpoint is a directory: the Hugging Face model and tokenizer (``save_pretrained``),
``toplib.json`` (:data:`META_FILE`: the pruning structure, the stage, the task, the
configuration and the label space) and ``gates.pt`` (:data:`GATES_FILE`) beside them.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import torch


class CheckpointError(ValueError):
    """A checkpoint folder misses a file or holds a corrupt one (the message names it)."""


META_FILE = "toplib.json"
GATES_FILE = "gates.pt"


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yield a temporary directory that replaces ``path`` only if the block succeeds: on an
    exception it is deleted, and the old ``path`` (if any) stays as it was."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
        os.replace(path, os.path.join(old, "ckpt"))
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_path(path: str) -> str:
    """A run's output directory resolves to its ``best/`` checkpoint."""
    best = os.path.join(path, "best")
    return best if os.path.isdir(best) else path


def read_meta(path: str) -> dict:
    """The ``toplib.json`` of a checkpoint directory ({} for a plain HF checkpoint)."""
    meta_path = os.path.join(path, META_FILE)
    if not os.path.exists(meta_path):
        return {}
    return _read_json(meta_path)


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path!r} is corrupt (not JSON: {err}); restore it or "
                              "retrain the checkpoint") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path!r} is corrupt: expected a JSON object")
    return value


WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer_config.json")


def verify_checkpoint(path: str, name: str = "checkpoint", tokenizer: bool = True) -> dict:
    """Check that ``path`` holds every file a checkpoint needs, and that the small ones
    parse; returns its meta. Errors name ``name``, the folder and the missing/corrupt file."""
    if not os.path.isdir(path):
        raise CheckpointError(f"{name}={path!r} is not a directory; pass the output_dir of "
                              "`toplib finetune`/`prune` or a saved classifier")
    files = set(os.listdir(path))
    if "config.json" not in files:
        raise CheckpointError(f"{name}={path!r} is not a checkpoint: it holds no config.json "
                              f"(found {sorted(files)[:8]}); pass the output_dir of `toplib "
                              "finetune`/`prune` or a saved classifier")
    _read_json(os.path.join(path, "config.json"))
    if not files & set(WEIGHTS):
        raise CheckpointError(f"{name}={path!r} holds no weights ({' or '.join(WEIGHTS)})")
    if tokenizer and not files & set(TOKENIZER):
        raise CheckpointError(f"{name}={path!r} holds no tokenizer files ({', '.join(TOKENIZER)})")
    meta = read_meta(path)
    if meta.get("stage") == "prune" and GATES_FILE not in files:
        raise CheckpointError(f"{name}={path!r} is a pruned checkpoint without its {GATES_FILE}:"
                              " its gates are lost, so it cannot prune; restore the file")
    return meta


def load_gates(path: str) -> dict:
    """The state dict in ``path`` (a ``gates.pt``), or an error naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{path!r} is corrupt ({type(err).__name__}); restore it or "
                              "retrain the checkpoint") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path!r} is corrupt: not a state dict of tensors")
    return state


def label_space(hf_config) -> dict:
    """The label space of a model config: problem type, number of labels and their names
    (None when the config holds only Hugging Face's placeholders LABEL_0, ...)."""
    num = hf_config.num_labels
    regression = hf_config.problem_type == "regression" or num == 1
    names = [hf_config.id2label[i] for i in range(num)] if not regression else None
    if names is not None and names == [f"LABEL_{i}" for i in range(num)]:
        names = None
    return {"problem_type": "regression" if regression else "classification",
            "num_labels": num, "label_names": names}


