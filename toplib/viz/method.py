"""One sentence through ToP, step by step (notebook ``01_how_top_works``): :mod:`toplib.core`'s
formulas, their outputs arranged as tables."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..core.config import check
from ..core.flops import MAC_TERMS, EncoderDims, ffn_tokens, layer_mac_terms
from ..core.gates import (
    RankBinGates,
    deterministic_gates,
    hard_concrete_cdf,
    prob_nonzero,
    sample_hard_concrete,
)
from ..core.importance import rank_bins, token_importance
from ..core.ranking import RANK_SCORES, rank_distillation_loss, rank_loss_weight


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


def hard_concrete_summary(log_alphas, num_samples: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Per log-alpha: P(z = 0), P(z = 1), P(z > 0), their sampled shares and the evaluation gate.

    Example:
        >>> [round(p, 3) for p in hard_concrete_summary([0.0], 1000)["P(z>0)"]]
        [0.832]
    """
    check("num_samples", num_samples, isinstance(num_samples, int) and num_samples >= 1,
          "an integer >= 1")
    a = torch.tensor(list(log_alphas), dtype=torch.float32)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z = sample_hard_concrete(a[:, None].expand(-1, num_samples))
    return pd.DataFrame({"log_alpha": a.numpy(), "P(z=0)": hard_concrete_cdf(0.0, a).numpy(),
                         "P(z=1)": (1 - hard_concrete_cdf(1.0, a)).numpy(),
                         "P(z>0)": prob_nonzero(a).numpy(),
                         "sampled z>0": (z > 0).double().mean(-1).numpy(),
                         "sampled z=1": (z == 1).double().mean(-1).numpy(),
                         "eval gate": deterministic_gates(a[:, None])[:, 0].numpy()})


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


def eval_gate_split(gates: RankBinGates, prune_location) -> pd.DataFrame:
    """How the evaluation rule splits each layer's bin gates: sum P(z > 0), the k expected closed,
    those closed, the largest P closed and smallest P open (NaN if none).

    Example:
        >>> split = eval_gate_split(RankBinGates(1, 4), (2,))  # fresh: all open
        >>> int(split["closed"][0]), bool(split["largest P closed"].isna()[0])
        (0, True)
    """
    p_open = prob_nonzero(gates.bin_log_alpha).detach()
    z_bins = gates(training=False)[0]
    rows = []
    for loc, p_row, z_row in zip(prune_location, p_open, z_bins):
        shut, left_open = p_row[z_row == 0], p_row[z_row > 0]
        rows.append({"layer": loc, "sum P(z>0)": float(p_row.sum()),
                     "k expected zeros": round(len(p_row) - float(p_row.sum())),
                     "closed": int((z_row == 0).sum()),
                     "largest P closed": float(shut.max()) if len(shut) else np.nan,
                     "smallest P open": float(left_open.min()) if len(left_open) else np.nan})
    return pd.DataFrame(rows)


def closed_bin_gates(gates: RankBinGates) -> np.ndarray:
    """(P, BIN_NUM) bool: the bin gates evaluation closes, whatever the pruner gates say.

    Example:
        >>> int(closed_bin_gates(RankBinGates(2, 3)).sum())  # fresh: all open
        0
    """
    return (gates(training=False)[0] == 0).numpy()


def gate_findings(p_open: np.ndarray, kept: np.ndarray, occupancy: np.ndarray,
                  prune_location) -> dict:
    """What the gates learned, from (P, BIN_NUM) P(z > 0), bins kept and bin occupancy: monotone
    layers, open last bins, closed bins, and mean P(open) of empty vs occupied bins.

    Example:
        >>> found = gate_findings([[.9, .1]], [[1, 0]], [[1.0, 0.0]], (1,))
        >>> found["monotone_layers"], found["empty_bins"]
        ([1], 1)
    """
    p_open, kept, occupancy = map(np.asarray, (p_open, kept, occupancy))
    empty = occupancy < EMPTY_SHARE / occupancy.shape[1]
    return {
        "monotone_layers": [loc for loc, row in zip(prune_location, p_open)
                            if bool(np.all(np.diff(row) <= 0))],
        "last_bin_open_layers": [loc for loc, k in zip(prune_location, kept) if k[-1] > 0],
        "closed_bins": {loc: int((k == 0).sum()) for loc, k in zip(prune_location, kept)},
        "last_bin_share": {loc: float(o[-1]) for loc, o in zip(prune_location, occupancy)},
        "p_open_empty_bins": float(p_open[empty].mean()) if empty.any() else None,
        "p_open_occupied_bins": float(p_open[~empty].mean()) if (~empty).any() else None,
        "empty_bins": int(empty.sum()),
    }


EMPTY_SHARE = 0.25
"""A bin under this fraction of the uniform share counts as (almost) empty."""


def mac_terms(kept: torch.Tensor, dims: EncoderDims) -> pd.DataFrame:
    """MACs per layer and term for (N,) tokens entering each layer (FFN on the next layer's count).

    Example:
        >>> mac_terms(torch.tensor([4, 2]), EncoderDims(2, 4, 2, 8))["total"].tolist()
        [544, 296]
    """
    t = kept.to(torch.int64)[None]
    t_ffn = ffn_tokens(t)
    frame = pd.DataFrame({"tokens": t[0].numpy(), "ffn_tokens": t_ffn[0].numpy()})
    for name, value in layer_mac_terms(t[0], t_ffn[0], dims).items():
        frame[name] = value.numpy()
    frame["total"] = frame[list(MAC_TERMS)].sum(axis=1)
    return frame.rename_axis("layer")


def mac_summary(dense: pd.DataFrame, pruned: pd.DataFrame) -> pd.DataFrame:
    """Each term summed over layers, dense vs pruned, in millions of MACs, with pruned / dense.

    Example:
        >>> dims = EncoderDims(2, 4, 2, 8)
        >>> s = mac_summary(mac_terms(torch.tensor([4, 4]), dims),
        ...                 mac_terms(torch.tensor([4, 2]), dims))
        >>> round(float(s.iloc[-1]["pruned / dense"]), 3)
        0.625
    """
    terms = list(MAC_TERMS) + ["total"]
    frame = pd.DataFrame({"term": terms, "dense (M MACs)": dense[terms].sum().values / 1e6,
                          "pruned (M MACs)": pruned[terms].sum().values / 1e6})
    frame["pruned / dense"] = frame["pruned (M MACs)"] / frame["dense (M MACs)"]
    return frame


def lambda_loss_orders(teacher: torch.Tensor, topk: int, seed: int = 0) -> pd.DataFrame:
    """LambdaLoss per score of the teacher's own order, a shuffle and the reverse of its values.

    Example:
        >>> t = torch.tensor([0.4, 0.3, 0.2, 0.1])
        >>> loss = lambda_loss_orders(t, topk=3).set_index("student ranking")["loss (log)"]
        >>> bool(loss["teacher's order"] < loss["reversed"])
        True
    """
    values, order = teacher[1:].sort(descending=True)
    gen = torch.Generator().manual_seed(seed)
    orders = {"teacher's order": order, "shuffled": order[torch.randperm(len(order), generator=gen)],
              "reversed": order.flip(0)}
    real = torch.ones(1, len(teacher))
    rows = []
    for name, positions in orders.items():
        student = teacher.clone()
        student[1 + positions] = values  # the best value goes to positions[0], and so on
        rows.append({"student ranking": name, **{
            f"loss ({how})": float(rank_distillation_loss(student[None], teacher[None], real,
                                                          topk, how)) for how in RANK_SCORES}})
    return pd.DataFrame(rows)


def rank_weight_schedule(alpha: float, warmup_steps: int, total_steps: int) -> pd.DataFrame:
    """Step and :func:`~toplib.core.ranking.rank_loss_weight` over a run of ``total_steps``.

    Example:
        >>> float(rank_weight_schedule(1e-3, 10, 20)["weight"].iloc[5])
        0.0005
    """
    steps = range(total_steps + 1)
    return pd.DataFrame({"step": steps,
                         "weight": [rank_loss_weight(s, alpha, warmup_steps) for s in steps]})
