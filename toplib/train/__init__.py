"""Training: configuration and presets, the two stages' objectives, the one loop, runs,
evaluation and the end-to-end pipeline."""
from .config import TrainConfig, build_train_config, overrides_from
from .runs import finetune, finished_run, prune, read_history, read_results
