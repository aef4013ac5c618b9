"""Tokenization and batching: encoded examples, dynamic padding, loaders, a run's splits."""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..core.config import check, is_integer
from .sources import DataFiles, load_task_data, resolve_task
from .tables import TextData
from .tasks import TaskSpec

logger = logging.getLogger(__name__)

PADDED_KEYS = (("input_ids", None), ("attention_mask", 0), ("token_type_ids", 0))
"""Keys padded into a batch, with their fill (None: the pad token)."""


def encode(data: TextData, tokenizer, max_length: int) -> list[dict]:
    """Tokenize a split, truncated to ``max_length`` tokens (special ones included), unpadded."""
    check("max_length", max_length, is_integer(max_length) and max_length >= 2,
          "an integer >= 2 ([CLS] and [SEP] at least)")
    if len(data) == 0:
        return []
    columns = [list(c) for c in zip(*data.texts)]  # 1 or 2 lists of strings
    enc = tokenizer(*columns, truncation=True, max_length=max_length)
    cols = {k: enc[k] for k, _ in PADDED_KEYS if k in enc}
    return [{**{k: v[i] for k, v in cols.items()}, "label": label}
            for i, label in enumerate(data.labels)]


def pad_examples(examples: list[dict], pad_token_id: int,
                 width: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad examples into (B, width) long tensors (default: the longest), mask added if absent."""
    longest = max(len(e["input_ids"]) for e in examples)
    width = width or longest
    if longest > width:
        raise ValueError(f"pad_to={width} is shorter than an example ({longest} tokens); "
                         "encode with max_length <= pad_to")
    batch = {}
    for key, fill in PADDED_KEYS:
        if key in examples[0]:
            rows = [torch.as_tensor(e[key], dtype=torch.long) for e in examples]
            value = pad_token_id if fill is None else fill
            batch[key] = torch.stack([F.pad(r, (0, width - len(r)), value=value) for r in rows])
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch["attention_mask"] = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return batch


class Collator:
    """Pad examples to the batch's longest (or ``pad_to``) and stack them, ``index`` included."""

    def __init__(self, tokenizer, pad_to: int | None = None):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_to = pad_to

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad_examples(examples, self.pad_id, self.pad_to)
        labels = [e["label"] for e in examples]
        dtype = torch.float if isinstance(labels[0], float) else torch.long  # float: regression
        batch["labels"] = torch.tensor(labels, dtype=dtype)
        if "index" in examples[0]:
            batch["index"] = torch.tensor([e["index"] for e in examples])
        return batch


LENGTH_GROUP_BATCHES = 50  # batches per length-sorted chunk when grouping by length


def length_grouped_batches(lengths: list[int], batch_size: int,
                           generator: torch.Generator) -> list:
    """Shuffled batches of similar-length indices (as Hugging Face's ``group_by_length``)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i], reverse=True)
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def make_loader(encoded: list[dict], batch_size: int, tokenizer, shuffle: bool, seed: int = 0,
                pad_to: int | None = None, group_by_length: bool = False) -> DataLoader:
    """A DataLoader over encoded examples, its order reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    if shuffle and group_by_length:
        lengths = [len(e["input_ids"]) for e in encoded]
        batching = dict(batch_sampler=length_grouped_batches(lengths, batch_size, generator))
    else:
        batching = dict(batch_size=batch_size, shuffle=shuffle)
    # Always the generator: without one the loader draws its base seed from the global RNG,
    # which would shift gate sampling and dropout on resume.
    return DataLoader(encoded, collate_fn=Collator(tokenizer, pad_to), generator=generator,
                      **batching)


def dataset_statistics(encoded: list[dict]) -> dict:
    """Token-length (special tokens included) and label statistics of encoded examples."""
    lengths = np.array([len(e["input_ids"]) for e in encoded] or [0])
    labels = [e["label"] for e in encoded]
    stats = dict(n=len(encoded), mean_length=float(lengths.mean()),
                 median_length=float(np.median(lengths)),
                 p95_length=float(np.percentile(lengths, 95)), max_length=int(lengths.max()))
    if labels and isinstance(labels[0], float):
        stats.update(label_mean=float(np.mean(labels)), label_min=float(min(labels)),
                     label_max=float(max(labels)))
    else:
        stats["label_counts"] = dict(sorted(Counter(labels).items()))
    return stats


def real_lengths(examples: list[dict]) -> torch.Tensor:
    """(E,) real tokens of encoded examples (their attention mask's sum, else their length)."""
    return torch.tensor([int(torch.as_tensor(e["attention_mask"]).sum()) if "attention_mask" in e
                         else len(e["input_ids"]) for e in examples])


def sort_by_length(encoded: list[dict]) -> list[dict]:
    """Examples in length order: evaluation batches then hold little padding."""
    return sorted(encoded, key=lambda e: len(e["input_ids"]))


def to_device(batch: dict, device) -> dict:
    """Every tensor of a batch on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


@dataclass
class TaskData:
    """Encoded splits and loaders of one task for one run."""

    spec: TaskSpec
    train: list[dict] | None
    validation: dict[str, list[dict]]
    max_seq_length: int

    def train_loader(self, config, tokenizer, epoch: int):
        # A seeded generator per epoch: reproducible on resume. The release pads training
        # batches, then cuts them to their longest (trainer.py: shortens_inputs).
        release = getattr(config, "pad_to_max_length", False)
        return make_loader(self.train, config.batch_size, tokenizer, shuffle=True,
                           seed=config.seed * 1000 + epoch, group_by_length=not release)

    @property
    def padded_length(self) -> int:
        """Padded-FLOPs length: the release's per task (l0_module.py), custom tasks' truncation."""
        return self.max_seq_length if self.spec.name == "custom" else self.spec.max_seq_length

    def pad_to(self, config) -> int | None:
        """max_seq_length under the release's ``pad_to_max_length``, else None (the longest)."""
        return self.max_seq_length if getattr(config, "pad_to_max_length", False) else None

    def steps_per_epoch(self, config) -> int:
        return math.ceil(len(self.train) / config.batch_size)

    def eval_loaders(self, config, tokenizer) -> dict:
        return {name: make_loader(sort_by_length(split), config.eval_batch_size, tokenizer,
                                  shuffle=False, pad_to=self.pad_to(config))
                for name, split in self.validation.items()}


def prepare_data(task: str, tokenizer, config, files: DataFiles | None = None,
                 need_train: bool = True, label_names: list | None = None) -> TaskData:
    """Load, subsample and tokenize a task's splits as a TrainConfig asks."""
    files = DataFiles.of(files)
    splits = load_task_data(task, **dataclasses.asdict(files), seed=config.seed,
                            label_names=label_names)
    spec = resolve_task(task, splits)  # a custom task's labels and metrics come from its data
    max_len = config.max_seq_length or spec.max_seq_length
    train = None
    if need_train:
        if "train" not in splits:
            raise ValueError(f"task={task!r}: no training split found in "
                             f"data_dir={files.data_dir!r}")
        data = splits["train"].subset(config.max_train_samples, seed=config.seed)
        train = [dict(e, index=i) for i, e in enumerate(encode(data, tokenizer, max_len))]
    validation = {name: encode(splits[name].head(config.max_eval_samples), tokenizer, max_len)
                  for name in spec.validation_splits if name in splits}
    logger.info("task %s: %s train, %s", spec.name, len(train) if train else 0,
                {k: len(v) for k, v in validation.items()})
    return TaskData(spec=spec, train=train, validation=validation, max_seq_length=max_len)


def validation_labels(task: str, files: DataFiles | str | dict | None = None,
                      max_eval_samples: int | None = None, seed: int = 42) -> tuple[TaskSpec, list]:
    """(spec, gold labels) of the first validation split, as :func:`prepare_data` reads it."""
    splits = load_task_data(task, **dataclasses.asdict(DataFiles.of(files)), seed=seed)
    spec = resolve_task(task, splits)
    name = next((s for s in spec.validation_splits if s in splits), None)
    if name is None:
        raise ValueError(f"task={task!r}: no validation split among {sorted(splits)} "
                         f"(expected one of {list(spec.validation_splits)})")
    return spec, splits[name].head(max_eval_samples).labels
