"""Checkpoint directories: atomic writes, a run directory's ``best/``, ``toplib.json``.

A checkpoint is written into a temporary sibling directory and moved into place with
``os.replace``; an interrupted write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import torch

META_FILE = "toplib.json"
GATES_FILE = "gates.pt"


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yield a temporary directory that replaces ``path`` only if the block succeeds.

    Example:
        >>> import os, tempfile
        >>> target = os.path.join(tempfile.mkdtemp(), "ckpt")
        >>> with atomic_directory(target) as tmp:
        ...     open(os.path.join(tmp, "w.txt"), "w").write("x")
        1
        >>> os.listdir(target)
        ['w.txt']
    """
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


def save_state(obj, path: str) -> None:
    """``torch.save`` to a temporary file, then rename over ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_meta(path: str) -> dict:
    """The ``toplib.json`` of a checkpoint directory ({} for a plain HF checkpoint)."""
    meta_path = os.path.join(path, META_FILE)
    if not os.path.exists(meta_path):
        return {}
    with open(meta_path) as f:
        return json.load(f)
