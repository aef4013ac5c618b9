"""The encoded splits and loaders of one run, subsampled as its TrainConfig asks."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from ..data import (
    DataFiles,
    TaskSpec,
    encode,
    get_task,
    load_task_data,
    make_loader,
    resolve_task,
    sort_by_length,
)
from .config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class TaskData:
    """Encoded splits and loaders of one task for one run."""

    spec: TaskSpec
    train: list[dict] | None
    validation: dict[str, list[dict]]
    max_seq_length: int

    def train_loader(self, config: TrainConfig, tokenizer, epoch: int):
        # A fresh seeded generator per epoch: the order of epoch e is reproducible on resume.
        return make_loader(self.train, config.batch_size, tokenizer, shuffle=True,
                           seed=config.seed * 1000 + epoch, group_by_length=True)

    def eval_loaders(self, config: TrainConfig, tokenizer) -> dict:
        return {name: make_loader(sort_by_length(split), config.eval_batch_size, tokenizer,
                                  shuffle=False)
                for name, split in self.validation.items()}


def prepare_data(task: str, tokenizer, config: TrainConfig, files: DataFiles | None = None,
                 need_train: bool = True) -> TaskData:
    """Load, subsample and tokenize a task's splits as ``config`` asks."""
    files = DataFiles.of(files)
    splits = load_task_data(get_task(task).name, **dataclasses.asdict(files), seed=config.seed)
    spec = resolve_task(task, splits)  # a custom task's labels and metrics come from its data
    max_len = config.max_seq_length or spec.max_seq_length
    train = None
    if need_train:
        if "train" not in splits:
            raise ValueError(f"task={task!r}: no training split found in "
                             f"data_dir={files.data_dir!r}")
        data = splits["train"]
        if config.max_train_samples:
            data = data.subset(config.max_train_samples, seed=config.seed)
        train = encode(data, tokenizer, max_len)
    validation = {}
    for name in [s for s in spec.validation_splits if s in splits]:
        data = splits[name]
        if config.max_eval_samples and config.max_eval_samples < len(data):
            data = data.select(range(config.max_eval_samples))
        validation[name] = encode(data, tokenizer, max_len)
    logger.info("task %s: %s train, %s", spec.name, len(train) if train else 0,
                {k: len(v) for k, v in validation.items()})
    return TaskData(spec=spec, train=train, validation=validation, max_seq_length=max_len)
