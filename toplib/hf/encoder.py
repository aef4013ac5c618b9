"""Model surgery: one encoder loop that prunes tokens, for training and for inference.

:func:`apply_patch` swaps a Hugging Face encoder's class for one whose ``forward`` runs
:func:`run_layers` when a :class:`TokenRun` is attached (a plain Hugging Face forward
otherwise). Parameters keep their Hugging Face names, so ``save_pretrained`` /
``from_pretrained`` work unchanged. The two paths differ only in what a prune location does
to the tokens (``TokenRun.drop``):

* masked (training, ``ToPModel.forward``): every position stays; after layer l-1's FFN the
  hidden states are multiplied by the (soft) keep mask, so gates get gradients;
* dropped (inference, ``toplib.infer.prune_forward``): pruned tokens are gathered out
  between layer l-1's attention and its FFN. This is exact (and what ``toplib.core.flops``
  counts): layer l's pruning importance is known once layer l-1's attention is done, and the
  masked path zeroes a pruned token's FFN output before anyone reads it.

Both paths share one self-attention on the layer's own weights (:func:`self_attention`),
which returns the token importance beside the output, so the (B, A, m, m) probabilities
never leave it:

* eager: ``softmax(q k^T * scaling + bias)``; the masked path in Hugging Face's operation
  order (training reproduces its values and gradients bitwise), the dropping path a few
  examples at a time, so each chunk's probabilities stay in cache between the softmax,
  P @ V and the importance reduction (1.3-2x faster at 128-512 tokens than streaming the
  whole tensor through memory three times);
* fused: PyTorch's ``scaled_dot_product_attention`` (Hugging Face's "sdpa" kernel) for
  layers whose probabilities nothing needs. Over the whole rotten_tomatoes and CoLA
  validation sets (MiniLM, sparsity 0.5) logits stay within 1e-7 of eager attention, with
  the same kept tokens.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions as EncoderOutput

from ..core.importance import drop_tokens, keep_mask, rank_bins, token_importance

# ---- attention on an HF layer's weights, for both paths --------------------------------
PROBS_CHUNK_BYTES = 1 << 20
"""Attention probabilities computed per chunk of examples at inference: about one core's L2."""


def no_section(name: str, rows: int | None = None):  # noqa: ARG001 (the timer protocol)
    """The default section timer: times nothing (see ``toplib.bench.profile.SectionTimer``)."""
    return nullcontext()


def padding_bias(alive: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, m) mask (> 0: present) -> (B, 1, 1, m) additive attention bias (0 kept, min
    dropped), or None when every position is present (one check for a bool mask: batch 1)."""
    if alive.dtype == torch.bool:
        absent = None if bool(alive.all()) else ~alive
    else:
        absent = alive <= 0
        absent = absent if bool(absent.any()) else None
    if absent is None:
        return None
    return (absent.to(dtype) * torch.finfo(dtype).min)[:, None, None, :]


class Ranked(NamedTuple):
    """Which tokens an attention block ranks: ``present`` (B, m) bool, the tokens that may
    be ranked (and, by default, the query rows importance averages); ``all_rows``: average
    every query row instead (the release: padding and pruned rows too)."""

    present: torch.Tensor
    all_rows: bool = False


def self_attention(attn, hidden, bias, ranked: Ranked | None = None, eager: bool = True,
                   whole: bool = True, section=no_section):
    """One Hugging Face attention block (``layer.attention``: ``.self`` with query/key/value,
    ``.output``) on (B, m, H) hidden states; ``section(name)`` is a timer context factory.

    Args:
        bias: (B, 1, 1, m) additive mask or None (nothing masked).
        ranked: if given (with ``eager``), also return each token's importance (attention
            received, ToP Sec. 3.1) for the tokens and query rows it names.
        eager: explicit probabilities instead of fused SDPA.
        whole: the batch in one chunk (as Hugging Face), returning the (B, A, m, m)
            probabilities; False: chunks of examples (the token-dropping path).
    Returns:
        (output (B, m, H) after the output projection and LayerNorm, importance (B, m) or
        None, probabilities or None).
    """
    sa = attn.self
    shape = (*hidden.shape[:2], -1, sa.attention_head_size)
    with section("attn_linear"):
        q, k, v = (p(hidden).view(shape).transpose(1, 2) for p in (sa.query, sa.key, sa.value))
    dropout = sa.dropout.p if sa.training else 0.0
    probs = scores = None
    if eager:
        context, scores, probs = _eager_attention((q, k, v), bias, ranked, sa.scaling, dropout,
                                                  not whole, section)
    else:
        with section("attn_core"):
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout,
                                                     scale=sa.scaling)
    with section("attn_linear"):
        out = attn.output(context.transpose(1, 2).reshape(*hidden.shape[:2], -1), hidden)
    return out, scores, probs if whole else None


def _eager_attention(qkv, bias, ranked: Ranked | None, scaling: float, dropout: float,
                     chunked: bool, section=no_section):
    """Eager attention and importance on ``qkv`` = (q, k, v), each (B, A, m, d), a chunk of
    examples at a time when ``chunked``. Returns (context (B, A, m, d), importance (B, m) or
    None, probabilities of the last chunk)."""
    q, k, v = qkv
    b, a, m, _ = q.shape
    step = max(1, PROBS_CHUNK_BYTES // (a * m * m * q.element_size())) if chunked else b
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
                if bias is None and chunked:  # nothing masked: a plain mean (1.8 -> 0.7 ms
                    # a pass, bert-base, batch 1); the masked path keeps the release's formula
                    scores.append(probs.mean(dim=(1, 2)))
                else:
                    alive = ranked.present[rows].to(probs.dtype)
                    scores.append(token_importance(
                        probs, alive, torch.ones_like(alive) if ranked.all_rows else None))
    join = (lambda xs: xs[0]) if len(contexts) == 1 else torch.cat
    return join(contexts), (join(scores) if ranked is not None else None), probs


def _eager_probs(q, k, bias, scaling: float, fused: bool) -> torch.Tensor:
    """softmax(q k^T * scaling + bias): in Hugging Face's operation order (bitwise its
    values and gradients: the masked, training path), or ``fused``, where ``baddbmm``
    applies the scaling and adds the mask inside the GEMM, so the (B, A, m, m) scores are
    written once instead of three times: at 512 tokens that tensor is 12.6 MB per example
    and layer, and memory traffic dominates.
    """
    if not fused:
        scores = torch.matmul(q, k.transpose(2, 3)) * scaling
        return F.softmax(scores if bias is None else scores + bias, dim=-1)
    b, a, m, d = q.shape
    q3, kt3 = q.reshape(b * a, m, d), k.transpose(2, 3).reshape(b * a, d, m)
    if bias is None:
        scores = torch.bmm(q3, kt3).mul_(scaling)
    else:
        bias3 = bias.expand(b, a, 1, m).reshape(b * a, 1, m)
        scores = torch.baddbmm(bias3, q3, kt3, alpha=scaling)
    return F.softmax(scores, dim=-1).view(b, a, m, m)


# ---- the encoder loop and the patch -----------------------------------------------------
SUPPORTED_MODEL_TYPES = ("bert", "roberta")


@dataclass
class TokenRun:
    """One forward pass through the patched encoder: what to prune and what it recorded.

    ``alive`` (B, n) holds the tokens entering the current layer: a float mask, soft where the
    gates are (masked), or bool over the gathered survivors (``drop``). ``prune_at`` maps each
    layer that receives pruned inputs to its gates: ``(z_bins (bin_num,), z_pruner ())`` when
    masking, the (bin_num,) bool bins kept when dropping. After the pass ``alive_per_layer``
    holds the (B, n) masks (masked) or (B,) counts (dropped) entering each layer, and
    ``importance`` the (B, n) importance of every layer in ``record_layers``.
    """

    alive: torch.Tensor
    prune_at: dict = field(default_factory=dict)
    bin_num: int = 1
    bin_eps: float = 0.0  # rank-to-bin rounding (core.importance.rank_bins; the release: 1e-6)
    drop: bool = False
    record_layers: frozenset[int] = frozenset()
    random_ranking: bool = False  # rank tokens at random (a training-free baseline)
    importance_rows: str = "alive"  # query rows importance averages: alive or all (release)
    # The release's masked pass. Training (release_training): a prune layer scales the
    # hidden states by its soft keep x the previous binary decision, and attention masks
    # padding (``real``) only. Evaluation (zero_pruned False): pruned tokens leave
    # attention's keys but stay as queries, still updated, so their rows count in an
    # all-rows importance.
    release_training: bool = False
    zero_pruned: bool = True
    real: torch.Tensor | None = None  # (B, n) real tokens
    fast_attention: bool = False  # fused SDPA where no importance is needed
    section: Callable = no_section
    alive_per_layer: list = field(default_factory=list)
    importance: dict[int, torch.Tensor] = field(default_factory=dict)
    hooks: frozenset[str] = frozenset()  # Hugging Face outputs being recorded


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, run: TokenRun) -> torch.Tensor:
    """The encoder's layers on (B, n, H) hidden states, pruning as ``run`` says."""
    for i, layer in enumerate(layers):
        run.alive_per_layer.append(run.alive.sum(-1) if run.drop else run.alive)
        prune_next = run.prune_at.get(i + 1)  # the pruning layer i's importance decides
        wants = prune_next is not None or i in run.record_layers
        present = (run.alive if run.drop else run.alive > 0) if wants else None  # (B, n) bool
        keys = run.real if run.release_training else run.alive
        all_rows = run.importance_rows == "all"
        # the release scores every real token, pruned ones too (its rank loss sees them),
        # and ranks among the tokens still alive (rank_bins masks the others)
        scored = run.real > 0 if run.release_training and all_rows and wants else present
        ranked = None if present is None else Ranked(scored, all_rows)
        attn_out, scores, probs = self_attention(
            layer.attention, hidden, padding_bias(keys, hidden.dtype),
            ranked, eager=wants or not run.fast_attention,
            whole=not run.drop or "attentions" in run.hooks, section=run.section)
        _emit(layer.attention.self, (hidden,), (attn_out, probs), "attentions" in run.hooks)
        if i in run.record_layers:
            run.importance[i] = scores
        if prune_next is not None and run.random_ranking:
            scores = torch.rand_like(scores) * present
        if prune_next is not None and run.drop:
            with run.section("gather"):
                attn_out, run.alive = drop_tokens(attn_out, run.alive, scores, prune_next,
                                                  run.bin_num, run.bin_eps)
        with run.section("ffn", rows=attn_out.shape[0] * attn_out.shape[1]):
            out = layer.feed_forward_chunk(attn_out)
        if prune_next is not None and not run.drop:
            bins = rank_bins(scores, present.to(run.alive.dtype), run.bin_num, run.bin_eps)
            # toplib: the running product of soft keeps; release: this layer's x binary before
            before = present.to(run.alive.dtype) if run.release_training else run.alive
            run.alive = keep_mask(bins, before, *prune_next)
            if run.zero_pruned:
                out = out * run.alive[..., None]  # soft mask: gates get gradients
        _emit(layer, (hidden,), out, "hidden_states" in run.hooks)
        hidden = out
    return hidden


def _emit(module: nn.Module, args: tuple, output, wanted: bool) -> None:
    """Hand ``output`` to the module's forward hooks, as calling it would: Hugging Face
    records ``output_hidden_states`` / ``output_attentions`` with such hooks."""
    if wanted:
        for hook in module._forward_hooks.values():
            hook(module, args, output)


def _recorded_outputs() -> frozenset[str]:
    """Which outputs the Hugging Face forward now running records (hidden_states, ...)."""
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:  # another transformers release: no recording to serve
        return frozenset()
    return frozenset(_active_collector.get() or ())


class ToPEncoderMixin:
    """Forward of a token-pruning encoder, mixed into the model's own encoder class."""

    _top_run: TokenRun | None = None

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        run = self._top_run
        if run is None:  # used as a plain Hugging Face model
            return super().forward(hidden_states, attention_mask, *args, **kwargs)
        run.hooks = _recorded_outputs()
        return EncoderOutput(last_hidden_state=run_layers(self.layer, hidden_states, run))


def check_supported(model_type: str | None, what: str = "the model") -> None:
    """Raise a clear error for a model family the patch does not cover."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{what} has model type {model_type!r}; "
                         f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder module (holding ``.layer``) of a Hugging Face model."""
    return model.base_model.encoder


def apply_patch(model: nn.Module) -> nn.Module:
    """Patch ``model`` in place so its encoder can prune tokens (twice is a no-op); returns
    the model, switched to eager attention: the importance scores need the probabilities."""
    check_supported(getattr(getattr(model, "config", None), "model_type", None))
    model.set_attn_implementation("eager")
    encoder = encoder_of(model)
    if not isinstance(encoder, ToPEncoderMixin):
        cls = encoder.__class__
        encoder.__class__ = type(f"ToP{cls.__name__}", (ToPEncoderMixin, cls), {})
    return model


def classify(model, sequence: torch.Tensor) -> torch.Tensor:
    """The classification head on a (B, 1, H) [CLS]-only sequence; exact, as both heads read
    position 0 only (BERT: pooler on [CLS], then classifier; RoBERTa: ``classifier(features)``
    takes ``features[:, 0]``)."""
    if model.config.model_type == "roberta":
        return model.classifier(sequence)
    return model.classifier(model.dropout(model.base_model.pooler(sequence)))
