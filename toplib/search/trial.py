"""One trial of a sweep: a resumable ToP pruning run from the shared teacher (no Ray here). A
finished trial only reports its result and an interrupted one resumes from ``last/``, so
rerunning a sweep retrains nothing that is done.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ..data import DataFiles
from ..hf.model import checkpoint_path, read_meta, verify_checkpoint
from ..train import TrainConfig, build_train_config, prune
from ..train.identity import run_differences, run_identity
from ..train.pipeline import table_row
from ..train.records import HISTORY_FILE, RESULTS_FILE, read_results
from ..train.rundir import saved_step
from .grid import trial_dir, trials

logger = logging.getLogger(__name__)
REPORTED_KINDS = ("eval",)  # history records forwarded to the tuner (train lines are not)


@dataclass
class TrialSpec:
    """What every trial of a sweep shares; paths absolute, as Ray workers run elsewhere."""

    task: str
    teacher: str  # the fine-tuned teacher's run folder (or a saved classifier)
    output_dir: str  # the sweep's folder; trial runs go to trials/<trial_name>
    preset: str | None = "quick"
    overrides: dict = field(default_factory=dict)  # knobs under the grid's, over the preset's
    data: DataFiles | None = None
    device: str = "cpu"
    threads: int = 1  # torch threads of a trial (its CPUs)

    def __post_init__(self):
        self.teacher, self.output_dir = map(os.path.abspath, (self.teacher, self.output_dir))
        self.overrides = {k: v for k, v in (self.overrides or {}).items() if v is not None}
        files = dataclasses.asdict(DataFiles.of(self.data))
        self.data = DataFiles(**{k: os.path.abspath(v) if k.endswith(("_dir", "_file")) and v
                                 else v for k, v in files.items()})

    def config(self, hparams: Mapping[str, Any]) -> TrainConfig:
        """The trial's configuration: defaults < preset < overrides < the grid's values."""
        return build_train_config(self.task, self.preset, {**self.overrides, **hparams})

    def run_dir(self, hparams: Mapping[str, Any]) -> str:
        return trial_dir(self.output_dir, hparams)


def run_trial(spec: TrialSpec, hparams: Mapping[str, Any],
              report: Callable[[dict], None]) -> dict:
    """Train, resume or read back one trial; returns its ``table_row``.

    ``report`` (``ray.tune.report`` under Tune) gets every evaluation's numbers, then once the
    finished run's result (its best evaluation) with ``final=True``.
    """
    torch.set_num_threads(max(1, int(spec.threads)))
    run_dir = spec.run_dir(hparams)
    if not os.path.exists(os.path.join(run_dir, RESULTS_FILE)):
        prune(spec.task, spec.teacher, run_dir, spec.config(hparams), spec.data,
              resume=os.path.isdir(run_dir), progress=False, device=spec.device,
              callback=functools.partial(_forward, report))
    row = table_row(run_dir)
    report(dict(_numbers(row), steps=read_results(run_dir)["steps"], final=True))
    return row


def _forward(report: Callable[[dict], None], record: dict) -> None:
    """Hand an evaluation's numbers to the tuner (lists and dicts stay in the run's history)."""
    if record.get("kind") in REPORTED_KINDS:
        report(_numbers(record))


def _numbers(record: Mapping[str, Any]) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, (int, float))}


def check_teacher(teacher: str) -> dict:
    """The teacher checkpoint's ``toplib.json`` meta, once checked whole and, for a run folder,
    finished (a running teacher's ``best/`` would change under the trials).

    Raises:
        ValueError: naming ``teacher`` (CheckpointError for a damaged checkpoint).
    """
    started = any(os.path.exists(os.path.join(teacher, n)) for n in ("last", HISTORY_FILE))
    if started and not os.path.exists(os.path.join(teacher, RESULTS_FILE)):
        raise ValueError(f"teacher={teacher!r} is an unfinished run (no {RESULTS_FILE}): "
                         "finish it first (toplib finetune --resume ...)")
    return verify_checkpoint(checkpoint_path(teacher), "teacher")


def check_trial_runs(spec: TrialSpec, grid: Mapping[str, list]) -> None:
    """Check that each trial folder already there holds this sweep's run (compared as ``prune``
    does on resume); a ValueError names the folder and what differs.
    """
    for hparams in trials(grid):
        run_dir = spec.run_dir(hparams)
        if os.path.exists(os.path.join(run_dir, RESULTS_FILE)):
            saved = read_results(run_dir)
        elif saved_step(run_dir) is not None:
            saved = read_meta(os.path.join(run_dir, "last"))
        else:
            continue
        identity = run_identity("prune", spec.task,
                                {"teacher": os.path.abspath(checkpoint_path(spec.teacher))},
                                spec.config(hparams), spec.data)
        diffs = run_differences(saved, identity)
        if diffs:
            raise ValueError(f"output_dir={spec.output_dir!r}: the trial run in {run_dir!r} "
                             f"differs from this sweep ({'; '.join(diffs)}); choose another "
                             "output_dir or resume with the same arguments")
