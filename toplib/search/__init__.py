"""Hyper-parameter search over ToP pruning runs from one teacher, on Ray Tune (the authors'
grid). Only ``hyperparameter_search`` needs Ray (``pip install "toplib[sweep]"``).
"""
from .grid import GRIDS, PAPER_GRID, load_grid, trial_dir, trial_name, trials
from .table import BestRun, format_trials, read_trials, select_best, trial_rows, write_trials
from .tune import Sweep, hyperparameter_search, run_trial
