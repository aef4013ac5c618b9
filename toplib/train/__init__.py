"""Training: configuration and presets, objectives, the loop, runs, evaluation, pipeline."""
from .config import TrainConfig, build_train_config, overrides_from
from .runs import finetune, finished_run, prune, read_history, read_results
