"""The grid on Ray Tune, after Hugging Face's ``Trainer.hyperparameter_search`` (backend "ray").

Unlike a plain Tune sweep, the table and the winner are read from the trial run folders
(Tune's state only schedules), and the winner must have met its sparsity target, as the paper
requires, which Tune's ``get_best_result`` cannot know.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..core.config import check, is_finite, is_integer
from ..data import DataFiles, get_task
from ..train.rundir import check_output_dir
from .grid import load_grid, trial_name
from .table import DIRECTIONS, BestRun, best_run, open_sweep, trial_table, write_trials
from .trial import TrialSpec, check_teacher, check_trial_runs, run_trial

logger = logging.getLogger(__name__)
TUNE_DIR, EXPERIMENT = "tune", "sweep"  # Tune's state: <output_dir>/tune/sweep
DEFAULT_RESOURCES = {"cpu": 1, "gpu": 0}
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0",  # no usage report over the network
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}  # workers run this interpreter as it is
INSTALL_HINT = 'hyperparameter_search needs Ray Tune: pip install "toplib[sweep]"'


@dataclass
class SearchOptions:
    """How a sweep runs (Hugging Face's names where it has one)."""

    grid: str | Mapping[str, list] = "small"  # "paper", "small" or a JSON file (hp_space)
    preset: str | None = "quick"  # per-task defaults under overrides and the grid
    data: DataFiles | str | None = None  # the task's own data when None
    overrides: Mapping[str, Any] | None = None  # knobs every trial shares
    direction: str = "maximize"  # of the score
    resources_per_trial: Mapping[str, float] | None = None  # {"cpu": 1, "gpu": 0}
    address: str | None = None  # a running Ray cluster (default: a local one, in-process)
    resume: bool = True  # continue the sweep in output_dir (False: refuse to touch one)
    max_concurrent_trials: int | None = None  # default: as many as the resources allow
    progress: bool = True  # Tune's progress report
    backend: str = "ray"  # the only one

    def __post_init__(self):
        check("direction", self.direction, self.direction in DIRECTIONS,
              f"choose one of {', '.join(DIRECTIONS)}")
        check("backend", self.backend, self.backend == "ray", "only 'ray' is supported")
        self.resources_per_trial = dict(self.resources_per_trial or DEFAULT_RESOURCES)
        res = self.resources_per_trial
        amounts_ok = all(is_finite(v) and v >= 0 for v in res.values())
        check("resources_per_trial", res, set(res) <= set(DEFAULT_RESOURCES) and amounts_ok
              and res.get("cpu", 1) > 0, "give {'cpu': N > 0, 'gpu': M >= 0}")
        check("max_concurrent_trials", self.max_concurrent_trials,
              self.max_concurrent_trials is None or (is_integer(self.max_concurrent_trials)
                                                     and self.max_concurrent_trials >= 1),
              "an integer >= 1 or None")


def hyperparameter_search(task: str, teacher: str, output_dir: str, **options) -> BestRun | None:
    """Prune from one teacher at every point of a grid, on Ray Tune; return the paper's winner.

    ``options`` are :class:`SearchOptions` fields. Everything is checked before Ray starts.
    Trial ``t`` runs in ``output_dir/trials/<trial_name(t)>``, Tune's state in
    ``output_dir/tune``; a rerun reads finished trials back and resumes interrupted ones.

    Returns:
        the :class:`BestRun` of the best finished trial that met its sparsity target, or None
        (with a warning) when none did; the table goes to ``trials.json`` and ``trials.md``.
    Raises:
        ImportError: Ray Tune is not installed.
    """
    opts = SearchOptions(**options)
    spec, grid = prepare_search(task, teacher, output_dir, opts)
    ray, tune = import_ray()
    open_sweep(spec.output_dir, _record(spec, grid), opts.resume)
    with ray_session(ray, opts.address):
        results = _tuner(tune, spec, grid, opts).fit()
    for error in results.errors:
        logger.error("a trial failed (rerun the sweep to retry it): %s", error)
    rows = trial_table(spec.output_dir)
    write_trials(spec.output_dir, rows, opts.direction)
    best = best_run(rows, opts.direction)
    if best is None:
        logger.warning("no finished trial of %s met its sparsity target: there is no winner "
                       "(see %s/trials.md)", spec.output_dir, spec.output_dir)
    else:
        logger.info("winner: %s, score %.4f", best.run_id, best.objective)
    return best


def prepare_search(task: str, teacher: str, output_dir: str, opts: SearchOptions
                   ) -> tuple[TrialSpec, dict[str, list]]:
    """Check everything before Ray starts (task, teacher, output folder, the grid's
    configurations, existing trial runs); returns the shared :class:`TrialSpec` and the grid.
    Trials get torch threads = their CPUs, and CUDA when given GPUs.
    """
    get_task(task)
    check_teacher(teacher)
    check_output_dir(output_dir)
    overrides = {k: v for k, v in (opts.overrides or {}).items() if v is not None}
    grid = load_grid(opts.grid, task, opts.preset, overrides)
    shadowed = sorted(set(overrides) & set(grid))
    if shadowed:
        logger.warning("the grid sets %s: the override(s) of the same name are ignored",
                       ", ".join(shadowed))
    res = opts.resources_per_trial
    spec = TrialSpec(task, teacher, output_dir, opts.preset, overrides, opts.data,
                     device="cuda" if res.get("gpu", 0) > 0 else "cpu",
                     threads=max(1, int(res.get("cpu", 1))))
    check_trial_runs(spec, grid)
    return spec, grid


def _record(spec: TrialSpec, grid: dict) -> dict:
    """What ``sweep.json`` records: what a resumed sweep must not change."""
    return {"task": get_task(spec.task).name, "teacher": spec.teacher, "preset": spec.preset,
            "overrides": spec.overrides, "data": dataclasses.asdict(spec.data), "grid": grid}


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


@contextlib.contextmanager
def ray_session(ray, address: str | None = None):
    """Ray inside the block: the running one, the cluster at ``address``, or a local one started
    here (every CPU, no dashboard) and shut down after, even on an error.
    """
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _trainable(config: dict, spec: TrialSpec) -> None:
    """Tune's function trainable: one trial, HF progress bars off (Tune shows the progress)."""
    from ray import tune
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    run_trial(spec, config, tune.report)


def _trial_dirname(trial) -> str:
    """Tune names its trials as the trial folders are named."""
    return trial_name(trial.config)


def _tuner(tune, spec: TrialSpec, grid: dict, opts: SearchOptions):
    """A Tuner restored from ``output_dir/tune`` when there is one to resume, else new."""
    path = os.path.join(spec.output_dir, TUNE_DIR, EXPERIMENT)
    trainable = tune.with_resources(tune.with_parameters(_trainable, spec=spec),
                                    opts.resources_per_trial)
    if opts.resume and tune.Tuner.can_restore(path):
        logger.info("resuming the Tune experiment in %s", path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable, param_space={k: tune.grid_search(v) for k, v in grid.items()},
        tune_config=tune.TuneConfig(
            metric="score", mode="max" if opts.direction == "maximize" else "min",
            max_concurrent_trials=opts.max_concurrent_trials,
            trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=os.path.dirname(path),
                                  verbose=1 if opts.progress else 0))
