"""Tokenization and batching: encoded examples, dynamic-padding collator, loaders."""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

from .tables import TextData

PADDED_KEYS = (("input_ids", None), ("attention_mask", 0), ("token_type_ids", 0))
"""Keys of an encoded example padded into a batch, with their fill (None: the pad token)."""


def encode(data: TextData, tokenizer, max_length: int) -> list[dict]:
    """Tokenize every example in one batched call (truncation, no padding).

    Args:
        data: one split.
        tokenizer: a Hugging Face tokenizer (fast ones are ~100x quicker).
        max_length: truncation length in tokens, special tokens included.
    Returns:
        One dict per example: input_ids, attention_mask, token_type_ids (if the tokenizer
        returns them) and label.
    """
    if len(data) == 0:
        return []
    columns = [list(c) for c in zip(*data.texts)]  # 1 or 2 lists of strings
    enc = tokenizer(*columns, truncation=True, max_length=max_length)
    cols = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return [{**{k: v[i] for k, v in cols.items()}, "label": label}
            for i, label in enumerate(data.labels)]


def pad_examples(examples: list[dict], pad_token_id: int,
                 width: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad encoded examples (lists or 1-D tensors) to ``width`` (default: the longest).

    Returns:
        (B, width) long tensors of the keys present; ``attention_mask`` is built from the
        lengths when the examples carry none.
    Example:
        >>> pad_examples([{"input_ids": [101, 7, 102]}, {"input_ids": [101, 102]}], 0)["attention_mask"]
        tensor([[1, 1, 1],
                [1, 1, 0]])
    """
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
    """Pad encoded examples to the batch's longest (or to `pad_to`) and stack them as tensors."""

    def __init__(self, tokenizer, pad_to: int | None = None):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_to = pad_to

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad_examples(examples, self.pad_id, self.pad_to)
        labels = [e["label"] for e in examples]
        dtype = torch.float if isinstance(labels[0], float) else torch.long  # float: regression
        batch["labels"] = torch.tensor(labels, dtype=dtype)
        return batch


LENGTH_GROUP_BATCHES = 50  # batches per length-sorted chunk when grouping by length


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list:
    """Shuffled batches of indices whose examples have similar lengths.

    Indices are shuffled, cut into chunks of ``LENGTH_GROUP_BATCHES`` batches, sorted by
    length within each chunk, batched, and the batches shuffled again: batches stay random
    while padding to each batch's longest example wastes little (as Hugging Face's
    ``group_by_length``).
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i], reverse=True)
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def make_loader(encoded: list[dict], batch_size: int, tokenizer, shuffle: bool, seed: int = 0,
                pad_to: int | None = None, group_by_length: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over encoded examples; the order is reproducible from `seed`.

    ``group_by_length`` (with ``shuffle``) batches examples of similar length together.
    """
    generator = torch.Generator().manual_seed(seed)
    collate = Collator(tokenizer, pad_to)
    if shuffle and group_by_length:
        batches = length_grouped_batches([len(e["input_ids"]) for e in encoded], batch_size, generator)
        # The loader gets the generator too: without one it draws its base seed from the
        # global RNG, which would shift gate sampling and dropout on resume.
        return torch.utils.data.DataLoader(encoded, batch_sampler=batches, collate_fn=collate,
                                           generator=generator)
    return torch.utils.data.DataLoader(encoded, batch_size=batch_size, shuffle=shuffle,
                                       generator=generator, collate_fn=collate)


def dataset_statistics(encoded: list[dict]) -> dict:
    """Token-length and label statistics of encoded examples.

    Returns:
        n, mean_length, median_length, p95_length, max_length (tokens, special tokens
        included) and label_counts (classes) or label_mean/min/max (regression).
    """
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
