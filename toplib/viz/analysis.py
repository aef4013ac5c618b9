"""What a trained ToP model does with tokens: kept-token matrices, ranking agreement with the
teacher (on the tokens alive at a layer, [CLS] excluded) and the kind of each word type."""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.flops import bin_occupancy
from ..core.ranking import graded_relevance, kendall_tau, ndcg_at_k
from ..data import get_task, load_task_data
from ..train import TrainConfig, finished_run, prune, read_results

logger = logging.getLogger(__name__)

Text = str | tuple[str, ...]
BASELINES = ("attention", "random")
BATCH_SIZE = 32  # texts per forward pass
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "<s>", "</s>", "<pad>", "<unk>")
NORANK_SUFFIX = "-norank"  # <run>-norank: the run's twin trained without rank distillation


@dataclass
class KeptTokens:
    """Tokens of one input entering each layer: ``kept`` (N, n) bool over the n real tokens;
    ``probabilities`` is [] for regression."""

    tokens: list[str]
    kept: np.ndarray
    prediction: int | float
    probabilities: list[float]


def is_pruned(meta: dict) -> bool:
    """Whether a checkpoint's meta says it was trained by ToP (else: a dense teacher)."""
    return meta.get("stage") == "prune"


def _batches(tokenizer, texts: Sequence[Text], max_length: int, batch_size: int) -> Iterator[dict]:
    """Padded (B, n) tensors of consecutive texts (single strings or pairs)."""
    for start in range(0, len(texts), batch_size):
        chunk = [t if isinstance(t, (tuple, list)) else (t,)
                 for t in texts[start:start + batch_size]]
        if len({len(t) for t in chunk}) > 1:
            raise ValueError("texts mix single sentences and pairs; pass one kind at a time")
        columns = [list(c) for c in zip(*chunk)]
        yield tokenizer(*columns, truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")


@torch.no_grad()
def kept_tokens(top, tokenizer, texts: Sequence[Text], max_length: int = 128,
                pruning: bool = True, gates=None, batch_size: int = 32) -> list[KeptTokens]:
    """One KeptTokens per text (string or pair) under the evaluation gates; ``[CLS]`` always kept.
    ``gates``: (z_bins, z_pruner) to use instead of the model's (a baseline)."""
    top.eval()
    out_list = []
    for enc in _batches(tokenizer, list(texts), max_length, batch_size):
        out = top(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"),
                  pruning=pruning, gates=gates if pruning else None)
        logits = out.logits.float()  # a bf16 model's too
        regression = logits.shape[-1] == 1
        probs = logits.softmax(-1) if not regression else logits
        for b in range(len(enc["input_ids"])):
            n = int(enc["attention_mask"][b].sum())
            out_list.append(KeptTokens(
                tokens=tokenizer.convert_ids_to_tokens(enc["input_ids"][b, :n].tolist()),
                kept=(out.alive[b, :, :n] > 0).numpy(),
                prediction=float(logits[b, 0]) if regression else int(probs[b].argmax()),
                probabilities=[] if regression else probs[b].tolist()))
    return out_list


@torch.no_grad()
def ranking_agreement(model, teacher, tokenizer, texts: Sequence[Text], k: int = 10,
                      pruning: bool = True, max_length: int = 128) -> pd.DataFrame:
    """Per layer, Kendall tau and NDCG@k of the model's importance against the dense teacher's
    final layer (ToP Sec. 3.4), on the tokens alive there; layer l's ranking prunes layer l + 1
    (``decides_pruning``). A teacher with ``pruning=False`` gives the attention baseline."""
    model.eval()
    teacher.eval()
    n_layers = model.dims.num_layers
    last = teacher.dims.num_layers - 1
    taus, ndcgs, alive_counts = defaultdict(list), defaultdict(list), defaultdict(list)
    for enc in _batches(tokenizer, list(texts), max_length, BATCH_SIZE):
        args = (enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        ref = teacher(*args, pruning=False, record_layers=(last,)).importance[last]
        out = model(*args, pruning=pruning, record_layers=tuple(range(n_layers)))
        for layer in range(n_layers):
            mask = out.alive[:, layer] > 0
            mask[:, 0] = False  # [CLS] is never ranked
            imp = out.importance[layer]
            taus[layer].append(kendall_tau(imp, ref, mask))
            ndcgs[layer].append(ndcg_at_k(imp, graded_relevance(ref, mask, k), mask, k))
            alive_counts[layer].append(mask.sum(-1).double() + 1)
    locations = set(model.prune.prune_location)
    return pd.DataFrame([{  # means over the defined values (NaN where there are none)
        "layer": layer, "kendall_tau": float(torch.cat(taus[layer]).nanmean()),
        "ndcg": float(torch.cat(ndcgs[layer]).nanmean()),
        "decides_pruning": (layer + 1) in locations and pruning,
        "tokens": float(torch.cat(alive_counts[layer]).mean()),
    } for layer in range(n_layers)])


def token_kind(token: str) -> str:
    """"special", "punctuation", "word piece", "stop word" (scikit-learn's) or "content word".

    Example:
        >>> [token_kind(t) for t in ("[SEP]", ",", "##ing", "the", "film")]
        ['special', 'punctuation', 'word piece', 'stop word', 'content word']
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    if token in SPECIAL_TOKENS:
        return "special"
    if not any(ch.isalnum() for ch in token):
        return "punctuation"
    if token.startswith("##"):
        return "word piece"
    return "stop word" if token.lower() in ENGLISH_STOP_WORDS else "content word"


def validation_texts(task: str, data_dir: str | None = None, limit: int | None = None) -> list:
    """The first ``limit`` texts (strings, or pairs) of a task's first validation split."""
    spec = get_task(task)
    data = load_task_data(spec.name, data_dir=data_dir)[spec.validation_splits[0]]
    return [t[0] if len(t) == 1 else tuple(t) for t in data.texts[:limit or None]]


def retrain(top_dir: str, output_dir: str, changes: dict, data_dir: str | None = None,
            device: str = "cpu", progress: bool = True) -> str:
    """Train ToP again as the finished run ``top_dir`` was, with ``changes`` to its config, into
    ``output_dir`` (returned); a finished run there is reused, an interrupted one resumed."""
    results = read_results(top_dir)
    config = TrainConfig.from_dict(dict(results["config"], **changes))
    if finished_run(output_dir) is None:
        prune(results["task"], results["teacher"], output_dir, config, data_dir,
              resume=os.path.isdir(output_dir), device=device, progress=progress)
    return output_dir


def bin_occupancy_at(kept: torch.Tensor, prune_location: Sequence[int], bin_num: int) -> torch.Tensor:
    """(P, bin_num) share of each prune layer's candidates in each rank bin, averaged over examples.

    ``kept``: (E, N) tokens entering each layer. Rank r of m falls in bin floor(r / m * BIN_NUM),
    so for m < BIN_NUM some bins (always the last) are empty and their gates get no gradient.
    """
    table = bin_occupancy(int(kept.max()), bin_num)
    return torch.stack([table[(kept[:, loc - 1] - 1).clamp_min(0).long()].mean(0).float()
                        for loc in prune_location])
