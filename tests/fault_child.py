"""A pruning run that SIGKILLs itself just before its K-th event (tests/test_faults.py).

Events are the training steps and every write of a checkpoint or record: the weights
(safetensors), each ``torch.save`` (gates, trainer state), each JSON file, each rename,
each history line and each removal. ``K = 0`` runs to the end and prints the event list.

    python tests/fault_child.py TEACHER OUTPUT_DIR K CONFIG_JSON
"""
import json
import os
import shutil
import signal
import sys

import torch
import transformers.modeling_utils as hf_modeling

import toplib.train.loop as loop
from toplib.train import prune
from toplib.train.config import build_train_config

EVENTS: list[str] = []


def _wrap(owner, name: str, label):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        EVENTS.append(label(*args, **kwargs))
        if len(EVENTS) == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def _base(path) -> str:
    return os.path.basename(str(path))


def main() -> None:
    teacher, out, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[4])
    _wrap(loop, "optimizer_step", lambda *a: "step")
    _wrap(loop, "_log", lambda run, record: f"history {record['kind']} {record['step']}")
    _wrap(hf_modeling, "safe_save_file", lambda state, path, **k: f"weights {_base(path)}")
    _wrap(torch, "save", lambda obj, path, *a, **k: f"torch.save {_base(path)}")
    _wrap(json, "dump", lambda obj, f, *a, **k: f"json {_base(getattr(f, 'name', '?'))}")
    _wrap(os, "replace", lambda src, dst: f"rename {_base(src)} -> {_base(dst)}")
    _wrap(shutil, "rmtree", lambda path, *a, **k: f"rmtree {_base(path)}")
    prune("rotten_tomatoes", teacher, out, build_train_config("rotten_tomatoes", None, config),
          progress=False, resume=True)
    if KILL_AT == 0:
        print(json.dumps(EVENTS))


if __name__ == "__main__":
    torch.set_num_threads(1)
    KILL_AT = int(sys.argv[3])
    main()
