"""The grid on Ray Tune, after Hugging Face's ``Trainer.hyperparameter_search`` (backend "ray").

Tune expands the grid (``tune.grid_search``), restores an interrupted sweep (``Tuner.restore``)
and keeps each trial's reports (``ResultGrid.get_dataframe()``, the table). toplib adds what
Tune cannot know: every configuration, the teacher and the trial runs already there are checked
before Ray starts, and each trial is a resumable pruning run in ``trials/<trial_name>``, so a
finished one is read back, never retrained, even when Tune's state was lost.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from ..core.config import check, is_finite, is_integer
from ..data import DataFiles, get_task
from ..hf.model import checkpoint_path, read_meta, verify_checkpoint
from ..train import TrainConfig, build_train_config, prune
from ..train.identity import run_differences, run_identity
from ..train.pipeline import table_row
from ..train.records import HISTORY_FILE, RESULTS_FILE, read_results
from ..train.rundir import check_output_dir, saved_step
from .grid import load_grid, trial_dir, trial_name, trials
from .table import DIRECTIONS, BestRun, open_sweep, select_best, trial_rows, write_trials

logger = logging.getLogger(__name__)
TUNE_DIR, EXPERIMENT = "tune", "sweep"  # Tune's state: <output_dir>/tune/sweep
DEFAULT_RESOURCES = {"cpu": 1, "gpu": 0}
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0",  # no usage report over the network
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}  # workers run this interpreter as it is
INSTALL_HINT = 'hyperparameter_search needs Ray Tune: pip install "toplib[sweep]"'


@dataclass
class Sweep:
    """A sweep: what its trials share and how Tune runs them (Hugging Face's names where it has
    one). After init, paths are absolute (Ray workers run elsewhere) and ``grid`` is checked."""

    task: str
    teacher: str  # the fine-tuned teacher's run folder (or a saved classifier)
    output_dir: str  # trials/<trial_name>/ runs, sweep.json, trials.md / .json, tune/
    grid: str | Mapping[str, list] = "small"  # "paper", "small", a JSON file or a mapping
    preset: str | None = "quick"  # per-task defaults under overrides and the grid
    data: DataFiles | str | None = None  # the task's own data when None
    overrides: Mapping[str, Any] | None = None  # knobs every trial shares, under the grid's
    direction: str = "maximize"  # of the score
    resources_per_trial: Mapping[str, float] | None = None  # {"cpu": 1, "gpu": 0}; gpu > 0: CUDA
    address: str | None = None  # a running Ray cluster (default: a local one, in-process)
    resume: bool = True  # continue the sweep in output_dir (False: refuse to touch one)
    max_concurrent_trials: int | None = None  # default: as many as the resources allow
    progress: bool = True  # Tune's progress report
    backend: str = "ray"  # the only one

    def __post_init__(self):
        check("direction", self.direction, self.direction in DIRECTIONS,
              f"choose one of {', '.join(DIRECTIONS)}")
        check("backend", self.backend, self.backend == "ray", "only 'ray' is supported")
        res = self.resources_per_trial = dict(self.resources_per_trial or DEFAULT_RESOURCES)
        check("resources_per_trial", res, set(res) <= set(DEFAULT_RESOURCES) and all(
            is_finite(v) and v >= 0 for v in res.values()) and res.get("cpu", 1) > 0,
            "give {'cpu': N > 0, 'gpu': M >= 0}")
        most = self.max_concurrent_trials
        check("max_concurrent_trials", most, most is None or (is_integer(most) and most >= 1),
              "an integer >= 1 or None")
        get_task(self.task)
        self.teacher, self.output_dir = map(os.path.abspath, (self.teacher, self.output_dir))
        files = dataclasses.asdict(DataFiles.of(self.data))
        self.data = DataFiles(**{k: os.path.abspath(v) if k.endswith(("_dir", "_file")) and v
                                 else v for k, v in files.items()})
        self.overrides = {k: v for k, v in (self.overrides or {}).items() if v is not None}
        self.grid = load_grid(self.grid, self.task, self.preset, self.overrides)
        if shared := sorted(set(self.overrides) & set(self.grid)):
            logger.warning("the grid sets %s: the override(s) of the same name are ignored",
                           ", ".join(shared))

    def config(self, hparams: Mapping[str, Any]) -> TrainConfig:
        """A trial's configuration: defaults < preset < overrides < the grid's values."""
        return build_train_config(self.task, self.preset, {**self.overrides, **hparams})


def hyperparameter_search(task: str, teacher: str, output_dir: str, **options) -> BestRun | None:
    """Prune from one teacher at every point of a grid, on Ray Tune; return the paper's winner.

    ``options`` are :class:`Sweep` fields. Everything is checked before Ray starts. Trial ``t``
    runs in ``output_dir/trials/<trial_name(t)>``, Tune's state in ``output_dir/tune``; a rerun
    restores it, reads finished trials back and resumes interrupted ones.

    Returns:
        the :class:`BestRun` of the best finished trial that met its sparsity target (its
        ``run_summary``: every trial's row), or None (with a warning) when none did; the table
        goes to ``trials.json`` and ``trials.md``.
    Raises:
        ValueError: a bad argument, or ``output_dir`` holds another sweep.
        ImportError: Ray Tune is not installed.
    """
    sweep = Sweep(task, teacher, output_dir, **options)
    check_sweep(sweep)
    ray, tune = import_ray()
    record = {"task": get_task(task).name, "teacher": sweep.teacher, "preset": sweep.preset,
              "overrides": sweep.overrides, "data": dataclasses.asdict(sweep.data),
              "grid": sweep.grid}  # what a resumed sweep must not change
    open_sweep(sweep.output_dir, record, sweep.resume)
    started = not ray.is_initialized()  # else: the caller's Ray, left running
    if started:  # a local Ray with every CPU, no dashboard; or the cluster at address
        ray.init(address=sweep.address, num_cpus=None if sweep.address else os.cpu_count(),
                 include_dashboard=False, logging_level=logging.WARNING)
    try:
        results = _tuner(tune, sweep).fit()
    finally:
        if started:
            ray.shutdown()
    for error in results.errors:
        logger.error("a trial failed (rerun the sweep to retry it): %s", error)
    rows = trial_rows(results.get_dataframe(), sweep.output_dir, sweep.grid)
    write_trials(sweep.output_dir, rows, sweep.direction)
    best = select_best(rows, sweep.direction)
    if best is None:
        logger.warning("no finished trial of %s met its sparsity target: there is no winner "
                       "(see %s/trials.md)", sweep.output_dir, sweep.output_dir)
        return None
    logger.info("winner: %s, score %.4f", best["trial"], best["score"])
    return BestRun(best["trial"], best["score"], dict(best["hyperparameters"]), rows)


def check_sweep(sweep: Sweep) -> None:
    """The checks of a :class:`Sweep` that read files: the teacher (whole, and finished: a
    running teacher's ``best/`` would change under the trials), the output folder, and each
    trial run already there (compared as ``prune`` does on resume).

    Raises:
        ValueError: naming ``teacher`` or ``output_dir`` and what differs (CheckpointError for
            a damaged teacher checkpoint).
    """
    teacher = sweep.teacher
    started = any(os.path.exists(os.path.join(teacher, n)) for n in ("last", HISTORY_FILE))
    if started and not os.path.exists(os.path.join(teacher, RESULTS_FILE)):
        raise ValueError(f"teacher={teacher!r} is an unfinished run (no {RESULTS_FILE}): "
                         "finish it first (toplib finetune --resume ...)")
    verify_checkpoint(checkpoint_path(teacher), "teacher")
    check_output_dir(sweep.output_dir)
    source = {"teacher": os.path.abspath(checkpoint_path(teacher))}
    for hparams in trials(sweep.grid):
        run_dir = trial_dir(sweep.output_dir, hparams)
        if os.path.exists(os.path.join(run_dir, RESULTS_FILE)):
            saved = read_results(run_dir)
        elif saved_step(run_dir) is not None:
            saved = read_meta(os.path.join(run_dir, "last"))
        else:
            continue
        identity = run_identity("prune", sweep.task, source, sweep.config(hparams), sweep.data)
        diffs = run_differences(saved, identity)
        if diffs:
            raise ValueError(f"output_dir={sweep.output_dir!r}: the trial run in {run_dir!r} "
                             f"differs from this sweep ({'; '.join(diffs)}); choose another "
                             "output_dir or resume with the same arguments")


def import_ray():
    """``(ray, ray.tune)``, imported now with ``RAY_ENV`` defaults; ImportError says what to do."""
    for name, value in RAY_ENV.items():
        os.environ.setdefault(name, value)
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return ray, tune


def run_trial(sweep: Sweep, hparams: Mapping[str, Any], report: Callable[[dict], None]) -> dict:
    """Train, resume or read back one trial (no Ray here); returns its ``table_row``.

    ``report`` (``ray.tune.report`` under Tune) gets every evaluation's numbers, then once the
    finished run's row with its ``trial`` name, ``steps`` and ``final=True``.
    """
    res = sweep.resources_per_trial
    torch.set_num_threads(max(1, int(res.get("cpu", 1))))
    run_dir = trial_dir(sweep.output_dir, hparams)
    if not os.path.exists(os.path.join(run_dir, RESULTS_FILE)):
        prune(sweep.task, sweep.teacher, run_dir, sweep.config(hparams), sweep.data,
              resume=os.path.isdir(run_dir), progress=False,
              device="cuda" if res.get("gpu", 0) > 0 else "cpu",
              callback=functools.partial(_forward, report))
    row = table_row(run_dir)
    report(dict(row, trial=trial_name(hparams), steps=read_results(run_dir)["steps"], final=True))
    return row


def _forward(report: Callable[[dict], None], record: dict) -> None:
    """Hand an evaluation's numbers to Tune (train lines, lists and dicts stay in history)."""
    if record.get("kind") == "eval":
        report({k: v for k, v in record.items() if isinstance(v, (int, float))})


def _trainable(config: dict, sweep: Sweep) -> None:
    """Tune's function trainable: one trial, HF progress bars off (Tune shows the progress)."""
    from ray import tune
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    run_trial(sweep, config, tune.report)


def _trial_dirname(trial) -> str:
    """Tune names its trials as the trial run folders are named."""
    return trial_name(trial.config)


def _tuner(tune, sweep: Sweep):
    """A Tuner restored from ``output_dir/tune`` when there is one to resume, else new."""
    path = os.path.join(sweep.output_dir, TUNE_DIR, EXPERIMENT)
    trainable = tune.with_resources(tune.with_parameters(_trainable, sweep=sweep),
                                    sweep.resources_per_trial)
    if sweep.resume and tune.Tuner.can_restore(path):
        logger.info("resuming the Tune experiment in %s", path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable, param_space={k: tune.grid_search(v) for k, v in sweep.grid.items()},
        tune_config=tune.TuneConfig(
            metric="score", mode="max" if sweep.direction == "maximize" else "min",
            max_concurrent_trials=sweep.max_concurrent_trials,
            trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=os.path.dirname(path),
                                  verbose=1 if sweep.progress else 0))
