"""Training: configuration and presets, the two stages' objectives, the one loop, runs,
evaluation and the end-to-end pipeline."""
from .config import TrainConfig
from .presets import build_train_config, overrides_from
from .runs import finetune, finished_run, prune, read_history, read_results
