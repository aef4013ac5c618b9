"""One sentence through ToP, step by step (notebook ``01_how_top_works``): the teacher's
attention and token importance, rank bins, hard-concrete gates and the learned ones against
the bins' occupancy, the MACs of a sentence term by term, and the LambdaLoss of orderings
(the toy run of the constraint: :mod:`toplib.viz.constraint_toy`). Every formula is :mod:`toplib.core`'s; this module only arranges
their outputs as tables.
"""
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
    """A sentence through a dense model: tokens (n,), ``input_ids``/``attention_mask``
    (1, n), probs (N, A, n, n) attention probabilities of every layer, importance (N, n)."""

    tokens: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    probs: torch.Tensor
    importance: torch.Tensor


@torch.no_grad()
def sentence_attention(top, tokenizer, sentence: str, max_length: int = 128) -> SentenceAttention:
    """Run ``top``'s Hugging Face model densely (eager attention) on one sentence and take
    every layer's attention probabilities and token importance
    (:func:`toplib.core.importance.token_importance`).

    Example:
        >>> att = sentence_attention(teacher, tokenizer, "a fine film")  # doctest: +SKIP
        >>> att.probs.shape  # (layers, heads, n, n)  # doctest: +SKIP
    """
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
    """Token, importance, rank (0 = most attended, [CLS] unranked) and rank bin
    (:func:`toplib.core.importance.rank_bins`) of one sentence's (n,) importance.

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
    """Each log-alpha's gate: P(z = 0) = Q(0), P(z = 1) = 1 - Q(1), P(z > 0) = 1 - Q(0)
    (:func:`toplib.core.gates.prob_nonzero`), the same shares among ``num_samples`` draws
    of :func:`~toplib.core.gates.sample_hard_concrete`, and the gate the deterministic
    evaluation rule gives the log-alpha alone (:func:`~toplib.core.gates.deterministic_gates`).

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
    """P(z > 0) of every bin gate (columns 0 .. BIN_NUM-1) and of the pruner gate, one row
    per prune layer, with the bins the deterministic evaluation gates keep.

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
    """How evaluation's deterministic rule (the gates' own ``gates(training=False)``,
    :func:`~toplib.core.gates.deterministic_gates`) splits each prune layer's bin gates:
    sum of P(z > 0), the k = round(BIN_NUM - sum P) gates expected closed, the gates it
    closes, the largest P(z > 0) among them and the smallest P(z > 0) left open (NaN when
    a layer's bins are all open, or all closed).

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
    """(P, BIN_NUM) bool: the bin gates evaluation closes (``gates(training=False)``, the
    rule :func:`~toplib.core.gates.deterministic_gates`), whatever the pruner gates say.

    Example:
        >>> int(closed_bin_gates(RankBinGates(2, 3)).sum())  # fresh: all open
        0
    """
    return (gates(training=False)[0] == 0).numpy()


def gate_findings(p_open: np.ndarray, kept: np.ndarray, occupancy: np.ndarray,
                  prune_location) -> dict:
    """What the gates learned, from (P, BIN_NUM) P(z > 0), the 0/1 bins kept at evaluation
    and the bins' occupancy (``toplib.viz.analysis.bin_occupancy_at``): whether P(open)
    falls monotonically with rank, where the last (least-attended) bin is open, how many
    bins close, and the mean P(open) of bins that hold (almost) nobody vs the rest.

    Args:
        p_open, kept, occupancy: (P, BIN_NUM) arrays; prune_location: the P layers.
    Returns:
        dict of monotone_layers, last_bin_open_layers, closed_bins, last_bin_share,
        p_open_empty_bins, p_open_occupied_bins, empty_bins.
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
"""A bin counts as (almost) empty when it holds less than a quarter of the uniform share."""


def mac_terms(kept: torch.Tensor, dims: EncoderDims) -> pd.DataFrame:
    """MACs of each layer term by term (:func:`toplib.core.flops.layer_mac_terms`) for the
    (N,) tokens entering each layer's attention; the FFN runs on the next layer's count
    (:func:`toplib.core.flops.ffn_tokens`), as :func:`~toplib.core.flops.encoder_macs`.

    Returns:
        one row per layer: tokens, ffn_tokens, the six terms and their total.
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
    """Each term summed over layers, dense vs pruned (two :func:`mac_terms` tables), in
    millions of MACs, with the share of each term the pruned encoder still computes.

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
    """LambdaLoss (:func:`toplib.core.ranking.rank_distillation_loss`) of three student
    rankings of one sentence against the teacher's (n,) importance: the teacher's own
    order, a random shuffle (``seed``), and the reverse. Students reuse the teacher's
    values, only their order changes. One column per score (:data:`RANK_SCORES`).

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
    """Step and rank-loss weight (:func:`toplib.core.ranking.rank_loss_weight`) of a run
    of ``total_steps`` steps.

    Example:
        >>> float(rank_weight_schedule(1e-3, 10, 20)["weight"].iloc[5])
        0.0005
    """
    steps = range(total_steps + 1)
    return pd.DataFrame({"step": steps,
                         "weight": [rank_loss_weight(s, alpha, warmup_steps) for s in steps]})
