"""Faults: a pruning run SIGKILLed anywhere resumes to the uninterrupted run, and a full
disk leaves the previous checkpoint whole."""
import errno
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import transformers.modeling_utils as hf_modeling
from conftest import RUN
from safetensors.torch import load_file

from toplib.cli import main as cli_main
from toplib.train import finetune, prune, read_history
from toplib.train.config import build_train_config

TASK = "rotten_tomatoes"
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_child.py")
CONFIG = dict(RUN, epochs=2, warmup_epochs=1, eval_steps=4, sparsity=0.3,
              sparsity_epsilon=0.3)  # 12 steps, 3 evaluations, each eligible for best/
KILL_POINTS = 24
RUN_FILES = ["best", "history.jsonl", "last", "results.json", "teacher_targets.pt"]


def _child(teacher, out, kill_at: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, CHILD, teacher, str(out), str(kill_at),
                           json.dumps(CONFIG)], capture_output=True, text=True, env=env,
                          timeout=300)


def _tensors(run_dir) -> dict:
    out = {}
    for name in ("best", "last"):
        out.update({f"{name}/{k}": v for k, v in
                    load_file(os.path.join(run_dir, name, "model.safetensors")).items()})
        gates = torch.load(os.path.join(run_dir, name, "gates.pt"), map_location="cpu")
        out.update({f"{name}/gates.{k}": v for k, v in gates.items()})
    return out


def _kill_points(events: list[str]) -> list[int]:
    """Every write of one checkpoint of the middle evaluation, then steps and writes spread
    evenly over the rest of the run (1-based event numbers)."""
    writes = [i + 1 for i, e in enumerate(events) if not e.startswith(("step", "history train"))]
    middle = writes[len(writes) // 3: len(writes) // 3 + 10]
    spread = [round(1 + k * (len(events) - 1) / (KILL_POINTS - len(middle) - 1))
              for k in range(KILL_POINTS - len(middle))]
    return sorted(set(middle) | set(spread))


def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_run(teacher_dir, tmp_path):
    counted = _child(teacher_dir, tmp_path / "reference", 0)
    assert counted.returncode == 0, counted.stderr[-3000:]
    events = json.loads(counted.stdout.strip().splitlines()[-1])
    reference = tmp_path / "reference"
    want_tensors, want_history = _tensors(reference), read_history(str(reference))
    points = _kill_points(events)
    assert len(points) >= 20
    assert {events[k - 1].split()[0] for k in points} >= {"step", "weights", "torch.save",
                                                         "json", "rename"}
    with ThreadPoolExecutor(2) as pool:  # the kills, two at a time
        killed = list(pool.map(lambda k: _child(teacher_dir, tmp_path / f"k{k}", k), points))
    config = build_train_config(TASK, None, CONFIG)
    failures = []
    for k, proc in zip(points, killed):
        out = tmp_path / f"k{k}"
        assert proc.returncode == -signal.SIGKILL, (k, events[k - 1], proc.stderr[-2000:])
        prune(TASK, teacher_dir, str(out), config, progress=False, resume=True)
        got = _tensors(out)
        same = got.keys() == want_tensors.keys() and all(
            torch.equal(got[n], want_tensors[n]) for n in got)
        if not same or read_history(str(out)) != want_history or \
                sorted(os.listdir(out)) != RUN_FILES:
            failures.append(f"kill before event {k} ({events[k - 1]}): tensors equal {same}, "
                            f"entries {sorted(os.listdir(out))}")
    assert not failures, "\n".join(failures)


def test_a_full_disk_keeps_the_previous_checkpoint_and_removes_the_temporary(
        tiny_model_dir, tmp_path, monkeypatch, capsys):
    original, calls = hf_modeling.safe_save_file, []

    def full_disk(state, path, **kwargs):
        calls.append(path)
        if len(calls) >= 3:  # the second evaluation's first weights file
            with open(path, "wb") as f:
                f.write(b"\0" * 1024)  # a partial file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return original(state, path, **kwargs)

    monkeypatch.setattr(hf_modeling, "safe_save_file", full_disk)
    out = tmp_path / "run"
    config = build_train_config(TASK, None, RUN)
    with pytest.raises(OSError, match="No space left"):
        finetune(TASK, str(out), model=tiny_model_dir, config=config, progress=False)
    assert sorted(os.listdir(out)) == ["best", "history.jsonl", "last"], "a temporary is left"
    state = torch.load(out / "last" / "trainer_state.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 2
    assert all(torch.isfinite(w).all() for w in load_file(out / "last" / "model.safetensors").values())
    argv = ["finetune", "--task", TASK, "--model", tiny_model_dir, "--output-dir",
            str(tmp_path / "cli"), "--quiet", "--max-train-samples", "48", "--max-eval-samples", "24",
            "--batch-size", "8", "--eval-batch-size", "12", "--finetune-epochs", "1",
            "--eval-steps", "2", "--max-seq-length", "32", "--bin-num", "4"]
    calls.clear()
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "free space" in err and "Traceback" not in err
    assert ".tmp-" not in "".join(os.listdir(tmp_path / "cli"))
