"""The run folder: one writer, no leftovers, overwrite keeps the old run until the new one
has a checkpoint, resumes refuse another configuration, training stops when not finite."""
import json
import logging
import os
import shutil
import socket
import subprocess
from collections import namedtuple

import pytest
import torch
from conftest import RUN
from safetensors.torch import load_file

from toplib.train import finetune, prune, read_history
from toplib.train.config import build_train_config
from toplib.train.evaluate import evaluate_checkpoint
from toplib.train.identity import run_differences
from toplib.train.loop import NonFiniteError
from toplib.train.rundir import LOCK_FILE, REPLACED, RunFolderBusy

TASK = "rotten_tomatoes"


def _config(**overrides):
    return build_train_config(TASK, None, dict(RUN, **overrides))


def _finetune(out, model, **options):
    config = options.pop("config", None) or _config()
    return finetune(TASK, str(out), model=model, config=config, progress=False, **options)


def _lock(out, pid):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, LOCK_FILE), "w") as f:
        json.dump({"pid": pid, "host": socket.gethostname()}, f)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_live_lock_is_refused_and_a_dead_one_taken_over(tmp_path, tiny_model_dir, caplog):
    out = tmp_path / "run"
    _lock(out, os.getppid())  # a live process
    with pytest.raises(RunFolderBusy, match=f"in use by another toplib run.*PID {os.getppid()}"):
        _finetune(out, tiny_model_dir)
    _lock(out, _dead_pid())
    with caplog.at_level(logging.WARNING):
        assert _finetune(out, tiny_model_dir)["steps"] == 6
    assert "stale lock" in caplog.text
    assert not os.path.exists(out / LOCK_FILE), "the lock outlives its run"


def test_an_interrupted_swap_and_leftover_temporaries_resume_to_the_same_run(
        tmp_path, tiny_model_dir, teacher_dir):
    out = tmp_path / "run"
    assert _finetune(out, tiny_model_dir, stop_after=4) == {"interrupted_at": 4}
    # A kill between the two renames of a swap: last/ is in .last.old-*/ckpt, a temporary
    # is half written, and a results temporary was left behind.
    os.makedirs(out / ".last.old-7")
    os.replace(out / "last", out / ".last.old-7" / "ckpt")
    os.makedirs(out / ".last.tmp-8")
    (out / ".last.tmp-8" / "model.safetensors").write_bytes(b"partial")
    (out / "results.json.tmp-9").write_text("{")
    with open(out / "history.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a torn line
    assert _finetune(out, tiny_model_dir, resume=True)["steps"] == 6
    assert sorted(os.listdir(out)) == ["best", "history.jsonl", "last", "results.json"]
    assert read_history(str(out)) == read_history(teacher_dir), "not the uninterrupted run"
    for name in ("best", "last"):
        a, b = load_file(out / name / "model.safetensors"), load_file(
            os.path.join(teacher_dir, name, "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(
        tmp_path, tiny_model_dir, teacher_dir):
    out = tmp_path / "run"
    shutil.copytree(teacher_dir, out)

    def fail_at_first_record(record):
        raise KeyboardInterrupt(record["step"])

    with pytest.raises(KeyboardInterrupt):
        _finetune(out, tiny_model_dir, overwrite=True, callback=fail_at_first_record)
    assert os.path.isdir(out / REPLACED / "best") and not os.path.exists(out / "best")
    with pytest.raises(ValueError, match="checkpoint"):  # never the old model
        evaluate_checkpoint(str(out), TASK, max_eval_samples=8, progress=False)
    assert _finetune(out, tiny_model_dir, overwrite=True)["steps"] == 6
    assert not os.path.exists(out / REPLACED)
    assert read_history(str(out)) == read_history(teacher_dir), "histories were appended"


def test_resume_refuses_a_changed_configuration_and_lists_the_differences(
        tmp_path, tiny_model_dir, caplog):
    out = tmp_path / "run"
    _finetune(out, tiny_model_dir, stop_after=2)
    changed = _config(finetune_learning_rate=1e-3, max_eval_samples=16)
    with pytest.raises(ValueError, match=r"finetune_learning_rate: 2e-05 -> 0\.001.*"
                                         r"max_eval_samples: 24 -> 16.*--accept-config-change"):
        _finetune(out, tiny_model_dir, resume=True, config=changed)
    with pytest.raises(ValueError, match="prune.bin_num: 4 -> 8.*cannot change"):
        _finetune(out, tiny_model_dir, resume=True, config=_config(bin_num=8),
                  accept_config_change=True)
    with caplog.at_level(logging.WARNING):
        assert _finetune(out, tiny_model_dir, resume=True, config=changed,
                         accept_config_change=True)["steps"] == 6
    assert "changed configuration: finetune_learning_rate" in caplog.text


def test_run_differences_compare_what_both_sides_record():
    saved = {"task": "sst2", "config": {"epochs": 2.0, "prune": {"bin_num": 4}}}
    now = {"task": "sst2", "data": {"data_dir": "x"},
           "config": {"epochs": 3.0, "prune": {"bin_num": 4, "prune_location": (1, 2)}}}
    assert run_differences(saved, now) == ["epochs: 2.0 -> 3.0"]


def test_a_diverging_run_stops_naming_the_step_and_quantity(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"step \d+: the (loss|gradient norm|weight)"):
        _finetune(out, tiny_model_dir, config=_config(finetune_learning_rate=1e35))
    for name in ("best", "last"):
        if os.path.exists(out / name):
            weights = load_file(out / name / "model.safetensors")
            assert all(torch.isfinite(w).all() for w in weights.values()), name
    assert not os.path.exists(out / LOCK_FILE)


def test_a_diverging_multiplier_stops_the_pruning_run(tmp_path, teacher_dir):
    config = _config(sparsity=0.5, reg_learning_rate=1e35)
    with pytest.raises(NonFiniteError, match=r"step \d+: the "):
        prune(TASK, teacher_dir, str(tmp_path / "top"), config, progress=False)


Usage = namedtuple("Usage", "total used free")


def test_the_output_dir_is_checked_before_any_model_is_loaded(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="output_dir=.*is a file"):
        _finetune(tmp_path / "file", None)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(2**30, 2**30, 2**20))
    with pytest.raises(ValueError, match="1 MiB free.*free space or choose another"):
        _finetune(tmp_path / "new", None)


# ---- a run folder owns only what toplib wrote ------------------------------------------
def _tree(root) -> dict:
    """{relative path: bytes} of every file below ``root``."""
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _finished_without_last(out, teacher_dir):
    shutil.copytree(teacher_dir, out)
    shutil.rmtree(out / "last")


def _users_files(out, teacher_dir):  # noqa: ARG001
    os.makedirs(out / "notes")
    (out / "notes" / "paper.txt").write_text("mine")
    (out / "data.csv").write_text("text,label\n")


def _users_file_beside_a_run(out, teacher_dir):
    shutil.copytree(teacher_dir, out)
    (out / "analysis.ipynb").write_text("{}")


@pytest.mark.parametrize("make", [_users_files, _users_file_beside_a_run, _finished_without_last])
@pytest.mark.parametrize("mode", [dict(), dict(resume=True), dict(overwrite=True)])
def test_nothing_the_user_owns_is_moved_or_deleted(tmp_path, tiny_model_dir, teacher_dir,
                                                    make, mode):
    out = tmp_path / "run"
    make(out, teacher_dir)
    before = _tree(out)
    if make is _finished_without_last and mode.get("overwrite"):
        return  # a run of toplib's own: --overwrite may replace it (tested above)
    if make is _users_file_beside_a_run and mode.get("resume"):  # resumes, deletes nothing
        assert _finetune(out, tiny_model_dir, **mode)["steps"] == 6
        assert _tree(out)["analysis.ipynb"] == before["analysis.ipynb"]
        return
    with pytest.raises(ValueError, match="output_dir|resum"):
        _finetune(out, tiny_model_dir, **mode)
    assert _tree(out) == before


def test_resume_after_an_interrupted_overwrite_brings_the_old_run_back(
        tmp_path, tiny_model_dir, teacher_dir):
    out = tmp_path / "run"
    shutil.copytree(teacher_dir, out)
    before = _tree(out)

    def interrupt(record):
        raise KeyboardInterrupt(record["step"])

    with pytest.raises(KeyboardInterrupt):
        _finetune(out, tiny_model_dir, overwrite=True, callback=interrupt)
    assert os.path.isdir(out / REPLACED)
    assert _finetune(out, tiny_model_dir, resume=True)["steps"] == 6  # the old run, finished
    assert not os.path.exists(out / REPLACED)
    after = _tree(out)
    for name in ("best/model.safetensors", "last/model.safetensors", "history.jsonl"):
        assert after[name] == before[name], name


def test_resume_and_overwrite_together_and_inputs_inside_the_output_are_refused(
        tmp_path, tiny_model_dir, teacher_dir):
    with pytest.raises(ValueError, match="choose one"):
        _finetune(tmp_path / "a", tiny_model_dir, resume=True, overwrite=True)
    out = tmp_path / "run"
    shutil.copytree(teacher_dir, out / "teacher")
    before = _tree(out)
    with pytest.raises(ValueError, match="teacher=.*inside output_dir"):
        prune(TASK, str(out / "teacher"), str(out), _config(), progress=False, overwrite=True)
    train = out / "train.csv"
    train.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(40)))
    with pytest.raises(ValueError, match="train_file=.*inside output_dir"):
        finetune("custom", str(out), model=tiny_model_dir, config=_config(),
                 data=dict(train_file=str(train), validation_file=str(train)), progress=False,
                 overwrite=True)
    assert _tree(out) == dict(before, **{"train.csv": train.read_bytes()})


@pytest.mark.parametrize("source", ["train_file", "data_dir"])
def test_resume_lists_a_changed_data_file(tmp_path, tiny_model_dir, source):
    rows = "".join(f"a short text {i}\t{i % 2}\n" for i in range(48))
    if source == "train_file":
        task, train = "custom", tmp_path / "train.tsv"
        data = dict(train_file=str(train), validation_file=str(train))
    else:  # the GLUE layout: the files the task reads from the folder are fingerprinted
        task, train = "sst2", tmp_path / "glue" / "SST-2" / "train.tsv"
        train.parent.mkdir(parents=True)
        (train.parent / "dev.tsv").write_text("sentence\tlabel\n" + rows)
        data = dict(data_dir=str(tmp_path / "glue"))
    train.write_text("sentence\tlabel\n" + rows)
    out = tmp_path / "run"
    finetune(task, str(out), model=tiny_model_dir, config=_config(), data=data,
             progress=False, stop_after=3)
    train.write_text("sentence\tlabel\n" + rows.replace("short", "long"))  # same size
    with pytest.raises(ValueError, match=f"{source}(_train)?_fingerprint"):
        finetune(task, str(out), model=tiny_model_dir, config=_config(), data=data,
                 progress=False, resume=True)


def test_results_name_their_inputs_relative_to_the_run_folder(tmp_path, teacher_dir):
    from toplib.train.records import read_results
    out = tmp_path / "top"
    results = prune(TASK, teacher_dir, str(out), _config(), progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["teacher"] == os.path.relpath(results["teacher"], out)
    assert saved["teacher"].startswith("..") and os.path.isabs(results["teacher"])
    assert read_results(str(out))["teacher"] == results["teacher"]


def test_a_teacher_of_another_task_or_a_pruned_one_is_refused(tmp_path, teacher_dir):
    top = tmp_path / "top"
    prune(TASK, teacher_dir, str(top), _config(), progress=False)
    with pytest.raises(ValueError, match="pruned checkpoint"):
        prune(TASK, str(top), str(tmp_path / "again"), _config(), progress=False)
    with pytest.raises(ValueError, match="fine-tuned on task 'rotten_tomatoes', not 'cola'"):
        prune("cola", teacher_dir, str(tmp_path / "cola"), _config(), progress=False)
    assert not os.path.exists(tmp_path / "again") and not os.path.exists(tmp_path / "cola")


def test_non_finite_gates_and_a_torn_training_state_are_named(tmp_path, teacher_dir):
    from toplib.hf.checkpoint import CheckpointError
    from toplib.hf.model import load_checkpoint
    top = tmp_path / "top"
    config = _config(sparsity=0.3)
    prune(TASK, teacher_dir, str(top), config, progress=False, stop_after=4)
    gates_file = top / "last" / "gates.pt"
    gates = torch.load(gates_file)
    gates["bin_log_alpha"][0, 0] = float("nan")
    bad = tmp_path / "bad"
    shutil.copytree(top / "last", bad)
    torch.save(gates, bad / "gates.pt")
    with pytest.raises(CheckpointError, match="non-finite gates"):
        load_checkpoint(str(bad))
    with pytest.raises(CheckpointError, match="non-finite gates"):
        evaluate_checkpoint(str(bad), TASK, max_eval_samples=8, progress=False)
    state = top / "last" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # cut short
    with pytest.raises(ValueError, match="trainer_state.pt' could not be loaded"):
        prune(TASK, teacher_dir, str(top), config, progress=False, resume=True)
