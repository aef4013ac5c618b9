"""Hyper-parameter search over ToP pruning runs from one teacher, on Ray Tune (the authors'
grid). Only ``hyperparameter_search`` needs Ray (``pip install "toplib[sweep]"``).
"""
from .grid import GRIDS, PAPER_GRID, load_grid, trial_dir, trial_name, trials
from .table import (
    BestRun,
    best_run,
    format_trials,
    read_sweep,
    select_best,
    trial_table,
    write_trials,
)
from .trial import TrialSpec, check_teacher, check_trial_runs, run_trial
from .tune import SearchOptions, hyperparameter_search
