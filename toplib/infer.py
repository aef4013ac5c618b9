"""Inference that removes pruned tokens, so later layers compute on fewer tokens.

The masked formulation (``ToPModel.forward``, used in training) keeps every position and
multiplies pruned ones by zero; its cost is that of the dense model. Here, under the
deterministic evaluation gates, pruned tokens are gathered out of the hidden states:

* Padding is never computed: the batch is trimmed to its longest real input, and after
  every prune the batch is re-padded only to its longest *survivor*.
* The importance that decides pruning for layer l is known after layer l-1's attention,
  so tokens are dropped between layer l-1's attention and its FFN. That is what
  ``toplib.flops`` counts, and it is exact: in the masked formulation a pruned token's
  FFN output is zeroed before anyone reads it.

Batching scheme -- per-example gather, re-pad to the batch's longest survivor -- and why:
with rank-bin gates the number of tokens a layer keeps depends only on how many are
alive, so examples of equal length stay equal and examples of similar length stay
similar. ``predict`` sorts by length, so padding waste stays small (token slots computed
per real token, MiniLM at sparsity 0.5, batch 32: rotten_tomatoes 1.02, CoLA 1.03, RTE
1.23; in input order 1.8, 1.6, 2.6), while every linear layer remains one batched GEMM
and attention runs with the same operation order as Hugging Face's eager attention
(results within float rounding of the masked path). Packing all survivors into one
(T, H) sequence would remove the remaining padding from the linear layers, but PyTorch
has no variable-length attention kernel on CPU, so attention would need a per-example
loop or a block-diagonal mask (B times the work).

Layers whose attention feeds no prune location need no probabilities and use PyTorch's
fused ``scaled_dot_product_attention`` (the Hugging Face "sdpa" kernel). Exact enough:
over the whole rotten_tomatoes and CoLA validation sets (MiniLM, sparsity 0.5) logits
stay within 1e-7 of the masked path with or without it, with the same kept tokens.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .importance import kept_counts, rank_bin_table, rank_bins, table_size, token_importance
from .patch import encoder_of

logger = logging.getLogger(__name__)

PROBS_CHUNK_BYTES = 1 << 20
"""Attention probabilities computed per chunk of examples: about one core's L2 cache."""


@dataclass
class DropOutput:
    """Result of :func:`prune_forward`.

    logits: (B, C). kept: (B, N) long, real tokens entering each layer's attention.
    """

    logits: torch.Tensor
    kept: torch.Tensor


class SectionTimer:
    """Accumulates time per named section of :func:`prune_forward` (CPU ops are synchronous).

    Sections given ``rows`` (tokens computed, padding included) also keep one
    (rows, seconds) sample per call, to fit time against work.

    Example:
        >>> timer = SectionTimer()
        >>> with timer("ffn", rows=8):
        ...     pass
        >>> sorted(timer.totals), timer.samples["ffn"][0][0]
        (['ffn'], 8)
    """

    def __init__(self, clock=time.perf_counter):
        self.clock = clock  # time.process_time: CPU time, robust to other processes' load
        self.totals: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[tuple[int, float]]] = defaultdict(list)

    @contextmanager
    def __call__(self, name: str, rows: int | None = None):
        start = self.clock()
        try:
            yield
        finally:
            elapsed = self.clock() - start
            self.totals[name] += elapsed
            if rows is not None:
                self.samples[name].append((rows, elapsed))


def _no_timer(name: str, rows: int | None = None):
    return nullcontext()


def eval_keep_table(top, pruning: bool = True) -> dict[int, torch.Tensor]:
    """Which bins survive at each prune location that actually prunes, under eval gates.

    Args:
        top: a ToPModel.
        pruning: False gives {} (the dense model).
    Returns:
        {layer: (bin_num,) bool}, open bins; locations whose pruner gate is off or whose
        bins are all open are left out, as they keep every token.
    """
    if not pruning:
        return {}
    gates = top.gates
    # The table only changes when the gates do; in-place updates (optimiser steps,
    # load_state_dict, fill_) bump a tensor's version, so (pointer, version) keys it.
    key = tuple((t.data_ptr(), t._version) for t in (gates.bin_log_alpha, gates.pruner_log_alpha))
    cached = getattr(gates, "_toplib_keep_table", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    z_bins, z_pruner = gates(training=False)
    table = {}
    for p, layer in enumerate(top.prune.prune_location):
        # keep = 1 - (1 - z_bin) * z_pruner; with 0/1 gates a token survives iff its bin is
        # open or the pruner is off.
        open_bins = (z_bins[p] > 0) | (z_pruner[p] <= 0)
        if not bool(open_bins.all()):
            table[layer] = open_bins
    gates._toplib_keep_table = (key, table)
    return table


def self_attention(attn, hidden, bias, eager: bool, alive=None, section=_no_timer):
    """One Hugging Face attention block (BERT/RoBERTa ``layer.attention``) on its weights.

    Args:
        attn: ``layer.attention`` (``.self`` with query/key/value, ``.output``).
        hidden: (B, m, H); bias: (B, 1, 1, m) additive mask or None (nothing padded).
        eager: explicit probabilities (as the masked path) instead of fused SDPA.
        alive: (B, m) bool; if given (with ``eager``), also return token importance.
    Returns:
        (attention output (B, m, H) after the output projection and LayerNorm,
        importance (B, m) or None).
    """
    sa = attn.self
    shape = (*hidden.shape[:2], -1, sa.attention_head_size)
    with section("attn_linear"):
        q = sa.query(hidden).view(shape).transpose(1, 2)
        k = sa.key(hidden).view(shape).transpose(1, 2)
        v = sa.value(hidden).view(shape).transpose(1, 2)
    if eager:
        context, scores = _eager_attention(q, k, v, bias, alive, sa.scaling, section)
    else:
        with section("attn_core"):
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=sa.scaling)
        scores = None
    with section("attn_linear"):
        out = attn.output(context.transpose(1, 2).reshape(*hidden.shape[:2], -1), hidden)
    return out, scores


def _eager_attention(q, k, v, bias, alive, scaling: float, section=_no_timer):
    """Eager attention, and the importance of each token, a few examples at a time.

    Each chunk's probabilities stay in cache between the softmax, P @ V and the
    importance reduction, instead of streaming a (B, A, m, m) tensor through memory
    three times: 1.3-2x faster at 128-512 tokens and bitwise the same results.

    Returns:
        (context (B, A, m, d), importance (B, m) or None when ``alive`` is None).
    """
    b, a, m, _ = q.shape
    step = max(1, PROBS_CHUNK_BYTES // (a * m * m * q.element_size()))
    contexts, scores = [], []
    for start in range(0, b, step):
        rows = slice(start, start + step)
        with section("attn_core"):
            probs = _eager_probs(q[rows], k[rows], None if bias is None else bias[rows], scaling)
            contexts.append(torch.matmul(probs, v[rows]))
        if alive is not None:
            with section("importance"):
                if bias is None:  # nothing padded: a plain mean (bert-base, batch 1:
                    # 1.8 -> 0.7 ms a pass)
                    scores.append(probs.mean(dim=(1, 2)))
                else:
                    scores.append(token_importance(probs, alive[rows].to(probs.dtype)))
    join = (lambda xs: xs[0]) if len(contexts) == 1 else torch.cat
    return join(contexts), (join(scores) if alive is not None else None)


def _eager_probs(q, k, bias, scaling: float) -> torch.Tensor:
    """softmax(q k^T * scaling + bias), as Hugging Face's eager attention computes it.

    ``baddbmm`` applies the scaling and adds the mask inside the GEMM, so the (B, A, m, m)
    scores are written once instead of three times (matmul, scale, add): at 512 tokens
    that tensor is 12.6 MB per example and layer, and memory traffic dominates.
    """
    b, a, m, d = q.shape
    q3, kt3 = q.reshape(b * a, m, d), k.transpose(2, 3).reshape(b * a, d, m)
    if bias is None:
        scores = torch.bmm(q3, kt3).mul_(scaling)
    else:
        bias3 = bias.expand(b, a, 1, m).reshape(b * a, 1, m)
        scores = torch.baddbmm(bias3, q3, kt3, alpha=scaling)
    return F.softmax(scores, dim=-1).view(b, a, m, m)


def _bias(alive: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, m) bool -> (B, 1, 1, m) additive mask, or None when nothing is padded."""
    if bool(alive.all()):
        return None
    return ((~alive).to(dtype) * torch.finfo(dtype).min)[:, None, None, :]


def drop_tokens(hidden, alive, scores, open_bins, bin_num: int):
    """Prune by rank bins and gather the survivors to the front, re-padded.

    A batch without padding (always so at batch 1) takes :func:`_drop_unpadded`.

    Args:
        hidden: (B, m, H); alive: (B, m) bool; scores: (B, m) importance;
        open_bins: (bin_num,) bool; bin_num: BIN_NUM.
    Returns:
        (hidden (B, m', H), alive (B, m') bool) with m' the longest survivor; survivors
        keep their order, so rank ties break as in the masked path.
    """
    if bool(alive.all()):
        return _drop_unpadded(hidden, scores, open_bins, bin_num)
    bins = rank_bins(scores, alive.to(scores.dtype), bin_num)
    keep = alive & open_bins[bins]
    keep[:, 0] = True  # [CLS] is never pruned
    counts = keep.sum(-1)
    width = int(counts.max())
    # Stable sort of "dropped" flags puts survivors first, in their original order.
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :width]
    # Copy whole rows (index_select) rather than gather element by element: ~10x faster.
    batch, m, h = hidden.shape
    rows = (order + torch.arange(batch, device=order.device)[:, None] * m).reshape(-1)
    hidden = hidden.reshape(batch * m, h).index_select(0, rows).view(batch, width, h)
    alive = torch.arange(width, device=hidden.device)[None, :] < counts[:, None]
    return hidden, alive


def _ranks_kept(m: int, open_bins: torch.Tensor, bin_num: int, dtype) -> torch.Tensor:
    """Ranks (0 = most important) whose bin is open among ``m`` candidates."""
    bins = rank_bin_table(table_size(m), bin_num, dtype, str(open_bins.device))[m, :m]
    return open_bins[bins].nonzero().flatten()


def _drop_unpadded(hidden, scores, open_bins, bin_num: int):
    """:func:`drop_tokens` for a batch whose rows are all real tokens of equal length.

    Then every row keeps the same ranks, so no masks are needed: rank, take the kept
    ranks, restore position order, copy the rows; half the general path's small
    operations. At batch 1 the gather still costs about 0.3 ms per prune layer on two
    cores (bert-base, 128 tokens; the benchmark's profile), per-call overhead rather than
    copying. Survivors stay in position order, as in the masked path.
    """
    batch, n, h = hidden.shape
    order = scores[:, 1:].argsort(dim=1, descending=True, stable=True)
    kept = order[:, _ranks_kept(n - 1, open_bins, bin_num, scores.dtype)].sort(dim=1).values + 1
    rows = torch.cat([kept.new_zeros(batch, 1), kept], dim=1)  # [CLS] first
    width = rows.shape[1]
    if batch == 1:
        hidden = hidden[0].index_select(0, rows[0])[None]
    else:
        rows = rows + torch.arange(batch, device=rows.device)[:, None] * n
        hidden = hidden.reshape(batch * n, h).index_select(0, rows.reshape(-1)).view(batch, width, h)
    return hidden, torch.ones(batch, width, dtype=torch.bool, device=hidden.device)


def _check_right_padded(attention_mask: torch.Tensor) -> None:
    mask = attention_mask.bool()
    if not bool(mask[:, 0].all()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("attention_mask must be right-padded with [CLS] at position 0")


def classify(model, sequence: torch.Tensor) -> torch.Tensor:
    """The classification head on a (B, 1, H) [CLS]-only sequence.

    Both heads read position 0 only (BERT: pooler on [CLS], then classifier; RoBERTa:
    ``classifier(features)`` takes ``features[:, 0]``), so this is exact.
    """
    if model.config.model_type == "roberta":
        return model.classifier(sequence)
    pooled = model.base_model.pooler(sequence)
    return model.classifier(model.dropout(pooled))


@torch.inference_mode()
def prune_forward(top, input_ids, attention_mask, token_type_ids=None, *, pruning: bool = True,
                  fast_attention: bool = True, timer: SectionTimer | None = None) -> DropOutput:
    """Classify with pruned tokens removed from the computation (eval gates).

    Args:
        top: a ToPModel in eval mode.
        input_ids, attention_mask, token_type_ids: (B, n), right-padded, [CLS] first.
        pruning: False runs the dense model on real lengths only (same kernels).
        fast_attention: fused SDPA in layers whose probabilities nothing needs; False
            uses eager attention everywhere, like the masked path.
        timer: optional :class:`SectionTimer` to attribute time to sections.
    Returns:
        DropOutput with logits (B, C) and kept (B, N).
    Example:
        >>> out = prune_forward(top, batch["input_ids"], batch["attention_mask"])  # doctest: +SKIP
    """
    if top.model.training:
        raise RuntimeError("prune_forward is inference only: call top.eval() first")
    section = timer or _no_timer
    _check_right_padded(attention_mask)
    width = int(attention_mask.sum(-1).max())  # never compute on padding
    input_ids, attention_mask = input_ids[:, :width], attention_mask[:, :width]
    if token_type_ids is not None:
        token_type_ids = token_type_ids[:, :width]
    with section("embeddings"):
        hidden = top.model.base_model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    with section("gates"):
        table = eval_keep_table(top, pruning)
    alive = attention_mask.bool()
    kept = []
    for i, layer in enumerate(encoder_of(top.model).layer):
        kept.append(alive.sum(-1))
        prune_next = table.get(i + 1)  # pruning that layer i's importance decides
        prune_here = prune_next is not None
        hidden, scores = self_attention(layer.attention, hidden, _bias(alive, hidden.dtype),
                                        prune_here or not fast_attention,
                                        alive if prune_here else None, section)
        if prune_here:
            with section("gather"):
                hidden, alive = drop_tokens(hidden, alive, scores, prune_next, top.prune.bin_num)
        with section("ffn", rows=hidden.shape[0] * hidden.shape[1]):
            hidden = layer.feed_forward_chunk(hidden)
    with section("head"):
        logits = classify(top.model, hidden[:, :1])
    return DropOutput(logits=logits, kept=torch.stack(kept, dim=1))


@dataclass
class Predictions:
    """Result of :func:`predict`, in the input order: logits (E, C), kept (E, N), lengths (E,)."""

    logits: torch.Tensor
    kept: torch.Tensor
    lengths: torch.Tensor


def pad_batch(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded examples (lists or 1-D tensors) to the batch's longest."""
    width = max(len(e["input_ids"]) for e in examples)
    batch = {}
    for key, fill in (("input_ids", pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key not in examples[0]:
            continue
        rows = [torch.as_tensor(e[key], dtype=torch.long) for e in examples]
        batch[key] = torch.stack([F.pad(r, (0, width - len(r)), value=fill) for r in rows])
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch["attention_mask"] = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return batch


def predict(top, examples: list[dict], batch_size: int = 64, progress: bool = False,
            **kwargs) -> Predictions:
    """Run :func:`prune_forward` over encoded examples, batching inputs of similar length.

    Args:
        top: a ToPModel (put in eval mode here).
        examples: dicts with ``input_ids`` (and optionally ``attention_mask``,
            ``token_type_ids``), as ``toplib.data.encode`` returns.
        batch_size: examples per forward pass.
        kwargs: passed to :func:`prune_forward` (``pruning``, ``fast_attention``).
    Returns:
        Predictions in the order of ``examples``.
    Example:
        >>> enc = encode(load_task_data("rotten_tomatoes")["validation"], tok, 64)  # doctest: +SKIP
        >>> predict(top, enc, batch_size=64).logits.argmax(-1)  # doctest: +SKIP
    """
    top.eval()
    pad_id = top.config.pad_token_id if top.config.pad_token_id is not None else 0
    lengths = torch.tensor([int(torch.as_tensor(e["attention_mask"]).sum()) if "attention_mask" in e
                            else len(e["input_ids"]) for e in examples])
    # Longest first: a batch of similar lengths wastes little padding, in every layer.
    order = torch.argsort(lengths, descending=True, stable=True)
    logits, kept = [], []
    starts = range(0, len(examples), batch_size)
    for start in tqdm(starts, desc="predict", leave=False, disable=not progress):
        batch = pad_batch([examples[j] for j in order[start:start + batch_size].tolist()], pad_id)
        out = prune_forward(top, batch["input_ids"], batch["attention_mask"],
                            batch.get("token_type_ids"), **kwargs)
        logits.append(out.logits)
        kept.append(out.kept)
    inverse = torch.argsort(order)
    return Predictions(logits=torch.cat(logits)[inverse], kept=torch.cat(kept)[inverse],
                       lengths=lengths)


# ---- deterministic gates for a target sparsity (benchmarks with random weights) ---------
GATE_OPEN, GATE_CLOSED = 10.0, -10.0
"""Log-alphas far enough out that ``deterministic_gates`` opens/closes exactly these gates."""


def simulate_kept(lengths: torch.Tensor, closed, prune_location, num_layers: int,
                  bin_num: int) -> torch.Tensor:
    """Tokens entering each layer when the ``closed[p]`` lowest-ranked bins close at location p.

    Args:
        lengths: (E,) real lengths; closed: closed bins per prune location.
    Returns:
        (E, N) long, as :func:`toplib.importance.kept_counts` counts them.
    """
    keep = torch.ones(len(prune_location), bin_num)
    for p, c in enumerate(closed):
        keep[p, bin_num - c:] = 0.0  # c = 0: an empty slice
    return kept_counts(lengths, keep, prune_location, num_layers, bin_num)


def set_eval_sparsity(top, lengths: torch.Tensor, target: float) -> float:
    """Set the gates so the real-length FLOPs sparsity on ``lengths`` is closest to ``target``.

    Every prune location closes its lowest-ranked bins with its pruner on, the same number
    everywhere up to one bin (locations p < j close one more): ``t = k * P + j`` orders the
    schedules monotonically in FLOPs, so bisection on t finds the closest one.

    Args:
        top: a ToPModel; lengths: (E,) real lengths of the inputs; target: in [0, 1).
    Returns:
        The sparsity achieved (as ``toplib.flops`` counts it).
    """
    from .flops import dense_macs, encoder_macs
    loc, bin_num, n_layers = list(top.prune.prune_location), top.prune.bin_num, top.dims.num_layers
    dense = dense_macs(lengths.double(), top.dims).sum()

    def schedule(t: int) -> list[int]:
        k, j = divmod(t, len(loc))
        return [k + (p < j) for p in range(len(loc))]

    def sparsity_of(t: int) -> float:
        kept = simulate_kept(lengths, schedule(t), loc, n_layers, bin_num).double()
        return float(1 - encoder_macs(kept, top.dims).sum() / dense)

    lo, hi = 0, bin_num * len(loc)  # smallest t with sparsity >= target lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if sparsity_of(mid) < target else (lo, mid)
    best = min((t for t in (lo - 1, lo) if t >= 0), key=lambda t: abs(sparsity_of(t) - target))
    with torch.no_grad():
        for p, c in enumerate(schedule(best)):
            top.gates.bin_log_alpha[p].fill_(GATE_OPEN)
            top.gates.bin_log_alpha[p, bin_num - c:] = GATE_CLOSED
            top.gates.pruner_log_alpha[p] = GATE_OPEN if c else GATE_CLOSED
    achieved = sparsity_of(best)
    logger.info("gates set: closed bins per location %s, sparsity %.3f (target %.3f)",
                schedule(best), achieved, target)
    return achieved
