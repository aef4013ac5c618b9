"""Self-attention on a Hugging Face layer's weights, shared by the masked and the dropping path.

It returns token importance beside the output, so the (B, A, m, m) probabilities never leave it.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..core.importance import score_dtype, token_importance

PROBS_CHUNK_BYTES = 1 << 20
"""Attention probabilities computed per chunk of examples at inference: about one core's L2."""


def no_section(name: str, rows: int | None = None):  # noqa: ARG001 (the timer protocol)
    """The default section timer: times nothing (see ``toplib.bench.profile.SectionTimer``)."""
    return nullcontext()


def padding_bias(alive: torch.Tensor, dtype: torch.dtype,
                 padded: bool | None = None) -> torch.Tensor | None:
    """(B, m) mask (> 0: present) -> (B, 1, 1, m) additive bias, None when nothing is absent;
    ``padded``: whether something is, if known (no device read-back)."""
    absent = ~alive if alive.dtype == torch.bool else alive <= 0
    if padded is None:
        padded = bool(absent.any())
    return (absent.to(dtype) * torch.finfo(dtype).min)[:, None, None, :] if padded else None


class Ranked(NamedTuple):
    """Tokens an attention block ranks: ``present`` (B, m) bool, also the query rows averaged
    unless ``all_rows`` (the release: every row, padding and pruned ones too)."""

    present: torch.Tensor
    all_rows: bool = False


def self_attention(attn, hidden, bias, ranked: Ranked | None = None, eager: bool = True,
                   whole: bool = True, section=no_section):
    """One Hugging Face attention block (``layer.attention``) on (B, m, H) hidden states.

    Args:
        bias: (B, 1, 1, m) additive mask or None.
        ranked: with ``eager``, also return token importance (ToP Sec. 3.1).
        whole: one chunk, returning the (B, A, m, m) probabilities; False: chunks of examples.
    Returns:
        (output (B, m, H), importance (B, m) or None, probabilities or None).
    """
    sa = attn.self
    shape = (*hidden.shape[:2], -1, sa.attention_head_size)
    fused = getattr(sa, "qkv", None)
    scaling = sa.scaling
    with section("attn_linear"):
        if fused is not None and not sa.training:  # one GEMM, one weight stream
            q, k, v = fused(hidden).view(*shape[:2], 3, *shape[2:]).permute(2, 0, 3, 1, 4)
            scaling = 1.0  # folded into the query's weights
        else:
            q, k, v = (p(hidden).view(shape).transpose(1, 2) for p in (sa.query, sa.key, sa.value))
    dropout = sa.dropout.p if sa.training else 0.0
    probs = scores = None
    if eager:
        context, scores, probs = _eager_attention((q, k, v), bias, ranked, scaling, dropout,
                                                  not whole, section)
    else:
        with section("attn_core"):
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout,
                                                     scale=scaling)
    with section("attn_linear"):
        out = attn.output(context.transpose(1, 2).reshape(*hidden.shape[:2], -1), hidden)
    return out, scores, probs if whole else None


def _eager_attention(qkv, bias, ranked: Ranked | None, scaling: float, dropout: float,
                     chunked: bool, section=no_section):
    """Eager attention on (q, k, v), each (B, A, m, d) -> (context (B, A, m, d), importance
    (B, m) or None, the last chunk's probabilities)."""
    q, k, v = qkv
    b, a, m, _ = q.shape
    # chunks keep probabilities in a CPU core's cache; a GPU wants one launch for the batch
    cache_sized = chunked and q.device.type == "cpu"
    step = max(1, PROBS_CHUNK_BYTES // (a * m * m * q.element_size())) if cache_sized else b
    contexts, scores = [], []
    for start in range(0, b, step):
        rows = slice(start, start + step)
        with section("attn_core"):
            probs = _eager_probs(q[rows], k[rows], None if bias is None else bias[rows], scaling,
                                 fused=chunked)
            if dropout:  # training, as HF: after the softmax
                probs = F.dropout(probs, p=dropout, training=True)
            contexts.append(torch.matmul(probs, v[rows]))
        if ranked is not None:
            with section("importance"):
                if bias is None and chunked:  # nothing masked: a plain mean is cheaper;
                    # the masked path keeps the release's formula
                    scores.append(probs.mean(dim=(1, 2), dtype=score_dtype(probs.dtype)))
                else:
                    alive = ranked.present[rows]
                    scores.append(token_importance(
                        probs, alive, torch.ones_like(alive) if ranked.all_rows else None))
    join = (lambda xs: xs[0]) if len(contexts) == 1 else torch.cat
    return join(contexts), (join(scores) if ranked is not None else None), probs


def _eager_probs(q, k, bias, scaling: float, fused: bool) -> torch.Tensor:
    """softmax(q k^T * scaling + bias) in Hugging Face's operation order, or ``fused``:
    ``baddbmm`` scales and masks inside the GEMM, writing the (B, A, m, m) scores once."""
    if not fused:
        scores = torch.matmul(q, k.transpose(2, 3)) * scaling
        return F.softmax(scores if bias is None else scores + bias, dim=-1)
    b, a, m, d = q.shape
    q3, kt3 = q.reshape(b * a, m, d), k.transpose(2, 3).reshape(b * a, d, m)
    if bias is None:
        scores = torch.bmm(q3, kt3)
        scores = scores if scaling == 1.0 else scores.mul_(scaling)
    else:
        bias3 = bias.expand(b, a, 1, m).reshape(b * a, 1, m)
        scores = torch.baddbmm(bias3, q3, kt3, alpha=scaling)
    return F.softmax(scores, dim=-1).view(b, a, m, m)


def fuse_qkv_(model: torch.nn.Module) -> torch.nn.Module:
    """Stack every self-attention's query, key and value into one ``qkv`` projection, in place
    (benchmarks/results/README.md), the score scaling folded into the query rows (exact for power-of-4 head
    sizes). For inference copies only: training would leave the stack stale."""
    for module in model.modules():
        parts = [getattr(module, name, None) for name in ("query", "key", "value")]
        if not all(isinstance(p, torch.nn.Linear) for p in parts):
            continue
        first = parts[0]
        fused = torch.nn.Linear(first.in_features, sum(p.out_features for p in parts),
                                bias=first.bias is not None, device=first.weight.device,
                                dtype=first.weight.dtype)
        scale = [module.scaling, 1.0, 1.0]
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight * c for p, c in zip(parts, scale)]))
            if first.bias is not None:
                fused.bias.copy_(torch.cat([p.bias * c for p, c in zip(parts, scale)]))
        module.qkv = fused.eval().requires_grad_(False)
    return model
