"""One sentence through ToP, step by step (notebook ``01_how_top_works``): a dense model's
attention and importance, the rank-bin table and the gate tables the figures draw."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..core.config import check
from ..core.gates import RankBinGates, prob_nonzero
from ..core.importance import rank_bins, token_importance


@dataclass
class SentenceAttention:
    """A sentence through a dense model: probs (N, A, n, n), importance (N, n), ids (1, n)."""

    tokens: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    probs: torch.Tensor
    importance: torch.Tensor


@torch.no_grad()
def sentence_attention(top, tokenizer, sentence: str, max_length: int = 128) -> SentenceAttention:
    """Every layer's attention and token importance of one sentence, run densely (eager)."""
    check("sentence", sentence, isinstance(sentence, str) and sentence.strip() != "",
          "a non-empty string")
    enc = tokenizer(sentence, truncation=True, max_length=max_length, return_tensors="pt")
    top.eval()
    out = top.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    output_attentions=True)
    probs = torch.stack(out.attentions)[:, 0]  # (N, A, n, n), batch of one
    alive = enc["attention_mask"].to(probs.dtype)
    importance = torch.cat([token_importance(p[None], alive) for p in probs])
    return SentenceAttention(tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()),
                             enc["input_ids"], enc["attention_mask"], probs, importance)


def importance_table(tokens: list[str], importance: torch.Tensor, bin_num: int,
                     eps: float = 0.0) -> pd.DataFrame:
    """Token, importance, rank (0 = most attended, [CLS] -1) and rank bin of a (n,) importance.

    Example:
        >>> importance_table(["[CLS]", "a", "b"], torch.tensor([.5, .2, .3]), 2).bin.tolist()
        [-1, 1, 0]
    """
    check("bin_num", bin_num, isinstance(bin_num, int) and bin_num >= 1, "an integer >= 1")
    alive = torch.ones(1, len(tokens))
    bins = rank_bins(importance[None], alive, bin_num, eps)[0]
    order = importance[1:].argsort(descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(len(order)))
    return pd.DataFrame({"position": range(len(tokens)), "token": tokens,
                         "importance": importance.tolist(), "rank": [-1] + rank.tolist(),
                         "bin": [-1] + bins[1:].tolist()})


def gate_table(gates: RankBinGates, prune_location) -> pd.DataFrame:
    """P(z > 0) of each bin gate and the pruner gate, per prune layer, with the bins kept.

    Example:
        >>> gate_table(RankBinGates(2, 4), (1, 2))["bins_kept"].tolist()  # fresh: all open
        [4, 4]
    """
    p_bins = prob_nonzero(gates.bin_log_alpha).detach()
    frame = pd.DataFrame(p_bins.numpy(), index=pd.Index(list(prune_location), name="layer"))
    frame["pruner"] = prob_nonzero(gates.pruner_log_alpha).detach().numpy()
    frame["bins_kept"] = gates.kept_bins().sum(-1).numpy()
    return frame


def closed_bin_gates(gates: RankBinGates) -> np.ndarray:
    """(P, BIN_NUM) bool: the bin gates evaluation closes, whatever the pruner gates say.

    Example:
        >>> int(closed_bin_gates(RankBinGates(2, 3)).sum())  # fresh: all open
        0
    """
    return (gates(training=False)[0] == 0).numpy()
