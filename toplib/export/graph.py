"""The token-dropping forward pass as plain tensor operations, for tracing to ONNX.

:func:`toplib.infer.prune_forward` decides shapes on the host, which a tracer would freeze;
:class:`DropGraph` keeps them as data: survivors are gathered by a TopK whose ``k`` is a 0-d
tensor, ranks are counted pairwise (the stable descending rank of ``rank_bins`` without a
sort) and binned by rank_bins' float formula; the open bins are graph constants. Attention
follows Hugging Face's eager order. Inputs: right-padded, [CLS] at position 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..hf.attention import padding_bias
from ..hf.encoder import classify, encoder_of
from ..infer.engine import eval_keep_table


def gather_kept(hidden: torch.Tensor, keep: torch.Tensor):
    """(hidden (B, m', ...), alive (B, m') bool): the survivors of (B, m) bool ``keep`` to the
    front in position order, re-padded, for ``hidden`` (B, m, H) or (B, m) token ids."""
    positions = torch.ones_like(keep, dtype=torch.float32).cumsum(1) - 1  # (B, m) 0..m-1
    width = keep.shape[1]
    key = keep.float() * width - positions  # kept: (0, m], earlier first; dropped: <= 0
    longest = keep.sum(-1).max()  # 0-d tensor: TopK of dynamic width in the graph
    order = torch.topk(key, longest, dim=1, largest=True, sorted=True).indices  # (B, m')
    alive = keep.gather(1, order)  # survivors come first, so True up to each row's count
    if hidden.dim() == 2:
        return hidden.gather(1, order), alive
    batch_offset = (torch.ones_like(order[:, :1]).cumsum(0) - 1) * width  # (B, 1) row starts
    flat = hidden.reshape(-1, hidden.shape[-1])  # (B*m, H): copy whole rows (ONNX Gather)
    return F.embedding(order + batch_offset, flat), alive


def importance(probs: torch.Tensor, alive: torch.Tensor, all_rows: bool) -> torch.Tensor:
    """(B, m) :func:`toplib.core.importance.token_importance`, the row average taken first as
    one batched product ((B, A, 1, m), not (B, m, m))."""
    alive = alive.to(probs.dtype)
    rows = torch.ones_like(alive) if all_rows else alive
    weights = rows / rows.sum(-1, keepdim=True).clamp_min(1.0)  # (B, m) query weights
    received = torch.matmul(weights[:, None, None, :], probs)  # (B, A, 1, m)
    return received.mean(dim=1)[:, 0] * alive


def bin_keep(scores: torch.Tensor, alive: torch.Tensor, open_bins: torch.Tensor,
             bin_num: int, eps: float) -> torch.Tensor:
    """(B, m) bool tokens kept at a prune location: alive and in an open rank bin, [CLS] always."""
    positions = torch.ones_like(scores).cumsum(1)  # (B, m) 1..m
    first = positions == 1  # [CLS]
    candidates = alive & ~first
    masked = scores.masked_fill(~candidates, float("-inf"))
    above = masked[:, None, :] > masked[:, :, None]  # (B, j, k): k scores above j
    earlier = positions[:, None, :] < positions[:, :, None]  # k before j
    ties = (masked[:, None, :] == masked[:, :, None]) & earlier
    ranks = (above | ties).sum(-1).to(scores.dtype)  # (B, m) stable descending rank
    m = candidates.sum(-1, keepdim=True).clamp_min(1).to(scores.dtype)
    bins = torch.floor(ranks / (m + eps) * bin_num).long().clamp(0, bin_num - 1)
    return (candidates & open_bins[bins]) | first


def packed_qkv(sa: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(3H, H) weight and (3H,) bias stacking a self-attention's query, key and value, the query
    pre-scaled by the score scaling: one GEMM, no pass over the scores to scale them (exact
    when the head size is a power of 4, as BERT-base's 64)."""
    weight = torch.cat([sa.query.weight * sa.scaling, sa.key.weight, sa.value.weight])
    bias = torch.cat([sa.query.bias * sa.scaling, sa.key.bias, sa.value.bias])
    return weight.detach().clone(), bias.detach().clone()


def attention(attn: nn.Module, qkv: tuple, hidden: torch.Tensor, bias: torch.Tensor):
    """(output (B, m, H), probabilities (B, A, m, m)) of a Hugging Face attention block in its
    eager order, on ``qkv`` = :func:`packed_qkv`."""
    b, m = hidden.shape[0], hidden.shape[1]
    heads = F.linear(hidden, *qkv).view(b, m, 3, -1, attn.self.attention_head_size)
    q, k, v = heads.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, A, m, d)
    probs = F.softmax(torch.matmul(q, k.transpose(2, 3)) + bias, dim=-1)
    context = torch.matmul(probs, v).transpose(1, 2)
    return attn.output(context.reshape(b, m, -1), hidden), probs


class DropGraph(nn.Module):
    """A ToPModel's token-dropping pass, its evaluation gates constants: ``forward`` gives
    (logits (B, C), kept (B, N)) as ``prune_forward``; ``pruning=False``: no prune locations."""

    def __init__(self, top, pruning: bool = True):
        super().__init__()
        self.model = top.model
        self.bin_num, self.eps = top.prune.bin_num, top.prune.bin_eps
        self.all_rows = top.prune.importance_rows == "all"
        self.type_ids = top.config.model_type != "roberta"  # RoBERTa: one segment, no input
        table = eval_keep_table(top, pruning)
        self.prune_at = sorted(table)
        for layer, bins in table.items():
            self.register_buffer(f"open_bins_{layer}", bins.clone().bool())
        for i, layer in enumerate(encoder_of(self.model).layer):
            weight, bias = packed_qkv(layer.attention.self)
            self.register_buffer(f"qkv_weight_{i}", weight)
            self.register_buffer(f"qkv_bias_{i}", bias)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        ids, alive = gather_kept(input_ids, attention_mask > 0)  # trim to the longest input
        types = torch.zeros_like(ids) if token_type_ids is None else \
            token_type_ids.gather(1, torch.ones_like(ids).cumsum(1) - 1)
        hidden = self.model.base_model.embeddings(input_ids=ids, token_type_ids=types)
        kept = []
        for i, layer in enumerate(encoder_of(self.model).layer):
            kept.append(alive.sum(-1))
            qkv = getattr(self, f"qkv_weight_{i}"), getattr(self, f"qkv_bias_{i}")
            out, probs = attention(layer.attention, qkv, hidden, padding_bias(alive, hidden.dtype, True))
            if i + 1 in self.prune_at:  # layer i's attention ranks layer i+1's input
                scores = importance(probs, alive, self.all_rows)
                keep = bin_keep(scores, alive, getattr(self, f"open_bins_{i + 1}"),
                                self.bin_num, self.eps)
                out, alive = gather_kept(out, keep)
            hidden = layer.feed_forward_chunk(out)
        return classify(self.model, hidden[:, :1]), torch.stack(kept, dim=1)
