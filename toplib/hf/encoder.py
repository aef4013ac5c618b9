"""Model surgery: one encoder loop that prunes tokens, for training and for inference.

:func:`apply_patch` swaps the encoder's class for one that runs :func:`run_layers` when a
:class:`TokenRun` is attached (plain Hugging Face otherwise); parameter names stay HF's.
What a prune location does to the tokens:

* masked (training): hidden states times the soft keep mask after layer l-1's FFN;
* dropped (inference): pruned tokens are gathered out between layer l-1's attention and its
  FFN, exactly, since the masked path zeroes their FFN output before anything reads it;
* compacted (training, ``TokenRun.compact``): masked, but tokens whose keep is exactly 0 are
  gathered out there; nothing reads them, so with dropout off loss and gradients equal the
  masked path's (dropout draws depend on the shapes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions as EncoderOutput

from ..core.importance import drop_tokens, drop_zero_keeps, keep_mask, rank_bins
from .attention import Ranked, no_section, padding_bias, self_attention  # noqa: F401 (no_section: re-exported)

# ---- the encoder loop and the patch -----------------------------------------------------
SUPPORTED_MODEL_TYPES = ("bert", "roberta")


@dataclass
class TokenRun:
    """One forward pass through the patched encoder: what to prune and what it recorded.

    ``alive`` (B, n): the tokens entering the current layer, a float (soft) mask when masking,
    bool over the survivors when dropping. ``prune_at``: layer -> ``(z_bins (bin_num,),
    z_pruner ())`` when masking, the (bin_num,) bool bins kept when dropping. Afterwards
    ``alive_per_layer`` holds (B, n) masks or (B,) counts per layer, ``importance`` the (B, n)
    scores of ``record_layers``.
    """

    alive: torch.Tensor
    prune_at: dict = field(default_factory=dict)
    bin_num: int = 1
    bin_eps: float = 0.0  # rank-to-bin rounding (core.importance.rank_bins; the release: 1e-6)
    drop: bool = False
    record_layers: frozenset[int] = frozenset()
    random_ranking: bool = False  # rank tokens at random (a training-free baseline)
    importance_rows: str = "alive"  # query rows importance averages: alive or all (release)
    # The release's masked pass. Training (release_training): soft keep x the previous binary
    # decision, attention masks padding (``real``) only. Evaluation (zero_pruned False):
    # pruned tokens leave the keys but stay as queries, so they count in all-rows importance.
    release_training: bool = False
    zero_pruned: bool = True
    real: torch.Tensor | None = None  # (B, n) real tokens
    fast_attention: bool = False  # fused SDPA where no importance is needed
    # (B, N) host tensor of tokens entering each layer, planned (toplib.infer): no read-back
    counts: torch.Tensor | None = None
    section: Callable = no_section
    alive_per_layer: list = field(default_factory=list)
    importance: dict[int, torch.Tensor] = field(default_factory=dict)
    hooks: frozenset[str] = frozenset()  # Hugging Face outputs being recorded
    compact: bool = False  # gather out exact-0 keeps (masked toplib pass only)
    positions: torch.Tensor | None = None  # (B, m) input position of each current token
    width: int = 0  # n, the input's

    def __post_init__(self):
        if self.compact and (self.drop or self.release_training or self.importance_rows == "all"):
            raise ValueError("TokenRun(compact=True) needs the masked toplib pass with "
                             f"importance over alive rows; got drop={self.drop}, "
                             f"release_training={self.release_training}, "
                             f"importance_rows={self.importance_rows!r} (there pruned tokens "
                             "are still read, so dropping them would change the result)")

    def start(self) -> None:
        """Before the first layer: a compacting pass starts from the input's positions."""
        if not self.compact:
            return
        if self.hooks:
            raise ValueError(f"TokenRun(compact=True) cannot serve {sorted(self.hooks)}: its "
                             "hidden states change width; record them without compacting")
        batch, self.width = self.alive.shape
        self.positions = torch.arange(self.width, device=self.alive.device).expand(batch, -1)

    def widen(self, x: torch.Tensor) -> torch.Tensor:
        """(B, m) values of the current tokens -> (B, n) at their input positions (0 elsewhere)."""
        if self.positions is None:
            return x
        return x.new_zeros(len(x), self.width).scatter(1, self.positions, x)


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, run: TokenRun) -> torch.Tensor:
    """The encoder's layers on (B, n, H) hidden states, pruning as ``run`` says."""
    padded = _planned_padding(run.counts, len(layers))
    run.start()
    for i, layer in enumerate(layers):
        if run.counts is None:
            run.alive_per_layer.append(run.alive.sum(-1) if run.drop else run.widen(run.alive))
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
            layer.attention, hidden, padding_bias(keys, hidden.dtype, padded[i]),
            ranked, eager=wants or not run.fast_attention,
            whole=not run.drop or "attentions" in run.hooks, section=run.section)
        _emit(layer.attention.self, (hidden,), (attn_out, probs), "attentions" in run.hooks)
        if i in run.record_layers:
            run.importance[i] = run.widen(scores)
        if prune_next is not None and run.random_ranking:
            scores = torch.rand_like(scores) * present
        if prune_next is not None and run.drop:
            with run.section("gather"):
                survivors = None if run.counts is None else run.counts[:, i + 1]
                alive = None if padded[i] is False else run.alive  # None: nothing padded
                attn_out, run.alive = drop_tokens(attn_out, alive, scores, prune_next,
                                                  run.bin_num, run.bin_eps, survivors)
        masking = prune_next is not None and not run.drop
        if masking:
            bins = rank_bins(scores, present.to(run.alive.dtype), run.bin_num, run.bin_eps)
            # toplib: the running product of soft keeps; release: this layer's x binary before
            before = present.to(run.alive.dtype) if run.release_training else run.alive
            run.alive = keep_mask(bins, before, *prune_next).to(run.alive.dtype)  # bf16 too
            if run.compact:
                with run.section("gather"):
                    attn_out, run.alive, run.positions = drop_zero_keeps(
                        attn_out, run.alive, run.positions)
        with run.section("ffn", rows=attn_out.shape[0] * attn_out.shape[1]):
            out = layer.feed_forward_chunk(attn_out)
        if masking and run.zero_pruned:
            out = out * run.alive[..., None]  # soft mask: gates get gradients
        _emit(layer, (hidden,), out, "hidden_states" in run.hooks)
        hidden = out
    return hidden


def _planned_padding(counts: torch.Tensor | None, num_layers: int) -> list[bool | None]:
    """Per layer, whether its inputs hold padding, from planned ``counts``; None: not planned."""
    if counts is None:
        return [None] * num_layers
    return (counts != counts[:1]).any(0).tolist()


def _emit(module: nn.Module, args: tuple, output, wanted: bool) -> None:
    """Hand ``output`` to the module's forward hooks, where HF records hidden states/attentions."""
    if wanted:
        for hook in module._forward_hooks.values():
            hook(module, args, output)


def _recorded_outputs() -> frozenset[str]:
    """Outputs the running Hugging Face forward records (hidden_states, ...)."""
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
    """Patch ``model`` in place (idempotent) and switch it to eager attention."""
    check_supported(getattr(getattr(model, "config", None), "model_type", None))
    model.set_attn_implementation("eager")
    encoder = encoder_of(model)
    if not isinstance(encoder, ToPEncoderMixin):
        cls = encoder.__class__
        encoder.__class__ = type(f"ToP{cls.__name__}", (ToPEncoderMixin, cls), {})
    return model


def classify(model, sequence: torch.Tensor) -> torch.Tensor:
    """The classification head on a (B, 1, H) [CLS]-only sequence (both heads read position 0)."""
    if model.config.model_type == "roberta":
        return model.classifier(sequence)
    return model.classifier(model.dropout(model.base_model.pooler(sequence)))
