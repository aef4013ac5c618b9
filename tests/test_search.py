"""Hyper-parameter search: grid checks, trial names, the paper's pick of the winner, the
table; one trial trained in-process; and a Ray Tune sweep killed part-way and resumed."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import RUN

from toplib.search import (
    Sweep,
    format_trials,
    hyperparameter_search,
    load_grid,
    read_trials,
    run_trial,
    select_best,
    trial_dir,
    trial_name,
    trial_rows,
    trials,
    write_trials,
)
from toplib.search.grid import MAX_NAME
from toplib.search.table import open_sweep
from toplib.train import build_train_config, prune
from toplib.train.pipeline import SPARSITY_KEYS, table_row
from toplib.train.records import absolute_inputs

TASK = "rotten_tomatoes"
# The tiny runs of test_train; they barely prune, so the target counts as met within
# sparsity_epsilon (a finished trial can win).
TINY_RUN = dict(RUN, sparsity=0.3, sparsity_epsilon=0.3)


# ---- grids ------------------------------------------------------------------------------
def _file(tmp_path, text: str) -> str:
    path = tmp_path / "grid.json"
    path.write_text(text)
    return str(path)


GRID_ERRORS = [  # (grid, or a function of tmp_path giving one; what the message must name)
    ({}, "it is empty"),
    ({"learning_rat": [1e-5]}, "did you mean 'learning_rate'"),
    ({"lr": [1e-5]}, "allowed: sparsity, learning_rate"),
    ({"learning_rate": 5e-5}, "a non-empty list of values"),
    ({"learning_rate": []}, "a non-empty list of values"),
    ({"learning_rate": [1e-5, 1e-5]}, "repeats 1e-05"),
    ({"learning_rate": [3e-5, -1.0]}, "learning_rate=-1.0 is invalid"),
    ({"sparsity": [0.5, 1.0]}, "sparsity=1.0 is invalid"),
    ({"topk": [10, 2.5]}, "topk=2.5 is invalid"),
    ("no-such-grid", "choose a named grid (paper, small)"),
    (lambda tmp: _file(tmp, "{not json"), "not a readable JSON file"),
    (lambda tmp: _file(tmp, "[1e-5]"), "it holds a list"),
]


@pytest.mark.parametrize("grid, needle", GRID_ERRORS)
def test_bad_grids_are_refused_naming_the_grid(grid, needle, tmp_path):
    spec = grid(tmp_path) if callable(grid) else grid
    with pytest.raises(ValueError) as err:
        load_grid(spec, "rte", "quick")
    assert str(err.value).startswith("grid=") and needle in str(err.value)


def test_named_and_file_grids():
    paper = load_grid("paper", "rte", "quick")
    assert paper == {"learning_rate": [6e-5, 5e-5, 4e-5, 3e-5, 2e-5, 1e-5],
                     "reg_learning_rate": [0.04, 0.02, 0.01],
                     "distill_rank_loss_alpha": [1e-2, 1e-3, 1e-4, 1e-5]}
    combos = trials(paper)
    assert len(combos) == 72 and len({trial_name(t) for t in combos}) == 72
    assert combos[0] == {"learning_rate": 6e-5, "reg_learning_rate": 0.04,
                         "distill_rank_loss_alpha": 1e-2}
    assert len(trials(load_grid("small"))) == 4


def test_file_grid_equals_the_mapping(tmp_path):
    grid = {"learning_rate": [5e-5, 3e-5], "prune_location": [[2, 3], "1-3"]}
    assert load_grid(_file(tmp_path, json.dumps(grid)), "rte", "quick") == grid


def test_trial_names_are_stable_unique_and_safe():
    assert trial_name({"reg_learning_rate": 0.04, "learning_rate": 5e-5}) == \
        "learning_rate=5e-05,reg_learning_rate=0.04"
    assert trial_name({"fix_pruners_after_warmup": True}) == "fix_pruners_after_warmup=true"
    odd = [{"prune_location": [2, 3]}, {"prune_location": [23]}, {"prune_location": "2-3"},
           {"select_by": "a/b"}, {"select_by": "a b"}, {"learning_rate": 1e-5, "topk": 10},
           {"learning_rate": 1e-5, "topk": 100}, {"rank_score": "x" * 300}]
    names = [trial_name(t) for t in odd]
    assert len(set(names)) == len(odd)
    assert all(re.fullmatch(r"[A-Za-z0-9._=,+-]+", n) and len(n) <= MAX_NAME for n in names)
    assert names == [trial_name(dict(reversed(list(t.items())))) for t in odd]  # key order
    assert trial_dir("out", odd[0]).endswith(os.path.join("out", "trials", names[0]))


# ---- the winner and the table -------------------------------------------------------------
def _row(trial, score, missed=False, status="finished", **extra):
    return dict(trial=trial, hyperparameters={"learning_rate": float(trial)}, status=status,
                score=score, target_missed=None if status != "finished" else missed, **extra)


SELECTIONS = [  # (rows, direction, winning trial or None)
    ([_row("1", 0.9, missed=True), _row("2", 0.8), _row("3", 0.7)], "maximize", "2"),
    ([_row("1", 0.9, missed=True), _row("2", 0.8), _row("3", 0.7)], "minimize", "3"),
    ([_row("1", 0.95, status="unfinished"), _row("2", 0.6)], "maximize", "2"),
    ([_row("1", 0.7), _row("2", 0.7)], "maximize", "1"),  # a tie: the earlier row
    ([_row("1", float("nan")), _row("2", 0.1)], "maximize", "2"),
    ([_row("1", 0.9, missed=True), _row("2", None, status="not started")], "maximize", None),
    ([], "maximize", None),
]


@pytest.mark.parametrize("rows, direction, winner", SELECTIONS)
def test_select_best_needs_the_sparsity_target(rows, direction, winner):
    best = select_best(rows, direction)
    assert (best and best["trial"]) == winner


def test_select_best_refuses_an_unknown_direction():
    with pytest.raises(ValueError, match="direction='max' is invalid"):
        select_best([], "max")


def test_format_trials_marks_the_winner_once():
    rows = [_row("1", 0.9, missed=True, sparsity_real=0.21, target_sparsity=0.3),
            _row("2", 0.8, sparsity_real=0.31, target_sparsity=0.3, steps=6),
            _row("3", None, status="not started")]
    lines = format_trials(rows).splitlines()
    assert lines[0].startswith("| learning_rate | Status | Score") and len(lines) == 5
    assert "**winner**" in lines[3] and sum("**winner**" in line for line in lines) == 1
    assert "90.00" in lines[2] and "0.210 / 0.3 (target missed)" in lines[2]
    assert "| not started | - |" in lines[4]


# ---- one trial in-process, and the table made from its reports --------------------------
def test_trial_trains_once_reports_and_fills_the_table(teacher_dir, tmp_path):
    grid = {"learning_rate": [5e-5, 3e-5]}
    sweep = Sweep(TASK, teacher_dir, str(tmp_path / "sweep"), grid, None, overrides=TINY_RUN)
    first, seen = trials(grid)[0], []
    row = run_trial(sweep, first, seen.append)
    evals, final = seen[:-1], seen[-1]
    assert len(evals) == 3 and all({"score", "step", "sparsity_real"} <= set(e) for e in evals)
    assert final["final"] and final["score"] == row["score"] and final["steps"] == 6
    results = os.path.join(trial_dir(sweep.output_dir, first), "results.json")
    stamp = os.stat(results).st_mtime_ns
    again = []
    assert run_trial(sweep, first, again.append) == row  # read back, not retrained
    assert len(again) == 1 and os.stat(results).st_mtime_ns == stamp

    # Tune's table (ResultGrid.get_dataframe()) holds each trial's last report, as
    # json_normalize makes it: a trial that reported only evaluations leaves NaN holes
    frame = pd.json_normalize([final, evals[-1]], sep="/")
    rows = trial_rows(frame, sweep.output_dir, grid)
    assert [r["status"] for r in rows] == ["finished", "not started"]
    assert {k: rows[0][k] for k in row} == row  # the run folder's own table row
    assert rows[0]["steps"] == 6 and isinstance(rows[0]["steps"], int)
    assert rows[1]["score"] is None and rows[1]["hyperparameters"] == {"learning_rate": 3e-5}
    lost = trial_rows(frame.iloc[1:], sweep.output_dir, grid)  # Tune's state without its report
    assert lost[0]["status"] == "finished" and {k: lost[0][k] for k in row} == row
    write_trials(sweep.output_dir, rows)
    with open(os.path.join(sweep.output_dir, "trials.json")) as f:
        saved = json.load(f)
    best = select_best(rows)
    assert saved["winner"] == (best and best["trial"]) and len(saved["trials"]) == 2


def test_sweep_arguments_are_checked_before_ray_starts(teacher_dir, tmp_path, monkeypatch):
    def no_ray():
        raise AssertionError("Ray was imported before the arguments were checked")
    monkeypatch.setattr("toplib.search.tune.import_ray", no_ray)
    unfinished = tmp_path / "teacher"
    (unfinished / "last").mkdir(parents=True)
    cases = [(dict(teacher=str(unfinished)), "teacher="),
             (dict(grid={"learning_rat": [1e-5]}), "grid="),
             (dict(resources_per_trial={"cpu": 0}), "resources_per_trial="),
             (dict(direction="up"), "direction=")]
    for change, needle in cases:
        args = dict(dict(task=TASK, teacher=teacher_dir, output_dir=str(tmp_path / "s")), **change)
        with pytest.raises(ValueError, match=re.escape(needle)):
            hyperparameter_search(**args)
    # a trial folder holding a run of another configuration is found before Ray starts
    grid = {"learning_rate": [5e-5]}
    sweep = Sweep(TASK, teacher_dir, str(tmp_path / "s"), grid, None,
                  overrides=dict(TINY_RUN, seed=1))
    run_trial(sweep, trials(grid)[0], lambda _: None)
    with pytest.raises(ValueError, match="seed: 1 -> 42"):
        hyperparameter_search(TASK, teacher_dir, sweep.output_dir, grid=grid, preset=None,
                              overrides=dict(TINY_RUN, seed=42))


def test_a_sweep_folder_is_resumed_only_as_the_same_sweep(tmp_path, monkeypatch):
    (tmp_path / "teacher").mkdir()
    monkeypatch.chdir(tmp_path)  # a teacher given relative to the working directory
    out, record = str(tmp_path / "s"), {"task": TASK, "grid": {"learning_rate": [5e-5]},
                                        "teacher": "teacher"}
    open_sweep(out, record, resume=True)
    open_sweep(out, dict(record), resume=True)  # the same sweep: resumed
    with pytest.raises(ValueError, match="already holds a sweep"):
        open_sweep(out, record, resume=False)
    with pytest.raises(ValueError, match=r"grid: \{'learning_rate': \[5e-05\]\} -> "):
        open_sweep(out, dict(record, grid={"learning_rate": [3e-5]}), resume=True)
    saved = json.load(open(os.path.join(out, "sweep.json")))
    assert saved["teacher"] == "../teacher"  # relative to the sweep folder
    assert absolute_inputs(saved, out) == dict(record, teacher=str(tmp_path / "teacher"))


# ---- Ray Tune end to end: killed part-way, resumed ----------------------------------------
def _session_processes(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (the sweep and every Ray process it started)."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(int(pid))
    return alive


def _wait_gone(sid: int, timeout: float = 60) -> list[int]:
    deadline = time.time() + timeout
    while (left := _session_processes(sid)) and time.time() < deadline:
        time.sleep(0.5)
    return left


def _sweep_command(teacher_dir, out, grid_file) -> list[str]:
    knobs = [x for k, v in TINY_RUN.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    return [sys.executable, "-m", "toplib", "sweep", "--task", TASK, "--teacher", teacher_dir,
            "--output-dir", out, "--grid", grid_file, "--preset", "quick",
            "--max-concurrent", "1", "--quiet", *knobs]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ray_sweep_killed_part_way_resumes_to_the_same_table(teacher_dir, tmp_path):
    pytest.importorskip("ray.tune")
    grid = {"learning_rate": [5e-5, 3e-5]}
    grid_file, out = _file(tmp_path, json.dumps(grid)), str(tmp_path / "sweep")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    command = _sweep_command(teacher_dir, out, grid_file)
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log,
                                start_new_session=True)
    done = os.path.join(trial_dir(out, trials(grid)[0]), "results.json")
    deadline = time.time() + 300
    while not os.path.exists(done) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, Ray and the running trial, at once
    proc.wait()
    assert not _wait_gone(proc.pid), "Ray processes outlived the killed sweep"
    with open(done, "rb") as f:
        before = f.read(), os.stat(done).st_mtime_ns

    second = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    assert not _wait_gone(second.pid, 30), "Ray processes outlived the sweep"
    with open(done, "rb") as f:
        assert (f.read(), os.stat(done).st_mtime_ns) == before, "the finished trial retrained"
    rows = read_trials(out)
    assert [r["status"] for r in rows] == ["finished", "finished"]
    for row, hparams in zip(rows, trials(grid)):  # the same as uninterrupted runs
        config = build_train_config(TASK, "quick", {**TINY_RUN, **hparams})
        direct = str(tmp_path / "direct" / trial_name(hparams))
        prune(TASK, teacher_dir, direct, config, progress=False)
        expected = table_row(direct)
        for key in ("score", "target_missed", *SPARSITY_KEYS):
            assert row[key] == pytest.approx(expected[key], abs=1e-6), (row["trial"], key)
    assert format_trials(rows) in stdout and f"winner: {select_best(rows)['trial']}" in stdout
