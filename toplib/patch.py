"""Model surgery: swap a Hugging Face encoder's class for one that prunes tokens.

Only the encoder's ``forward`` changes; every parameter keeps its Hugging Face name, so
``save_pretrained`` / ``from_pretrained`` work on the patched model unchanged. The layers'
own ``attention`` and ``feed_forward_chunk`` modules do all the computing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions as EncoderOutput

from .importance import keep_mask, rank_bins, token_importance

SUPPORTED_MODEL_TYPES = ("bert", "roberta")


@dataclass
class PruneState:
    """Inputs and records of one forward pass through a patched encoder.

    ``z_bins`` (P, bin_num) and ``z_pruner`` (P,) are None for a dense pass.
    After the pass, ``alive`` holds the (B, n) mask entering each layer and
    ``importance`` the (B, n) importance of every layer in ``record_layers``.
    """

    attention_mask: torch.Tensor
    prune_location: tuple[int, ...] = ()
    bin_num: int = 1
    z_bins: torch.Tensor | None = None
    z_pruner: torch.Tensor | None = None
    record_layers: frozenset[int] = frozenset()
    random_ranking: bool = False  # rank tokens at random (a training-free baseline)
    alive: list[torch.Tensor] = field(default_factory=list)
    importance: dict[int, torch.Tensor] = field(default_factory=dict)


def additive_mask(alive: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, n) alive mask -> (B, 1, 1, n) additive attention bias (0 kept, min dropped)."""
    return ((alive <= 0).to(dtype) * torch.finfo(dtype).min)[:, None, None, :]


class ToPEncoderMixin:
    """Forward of a token-pruning encoder, mixed into the model's own encoder class."""

    _top_state: PruneState | None = None

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        state = self._top_state
        if state is None:  # used as a plain Hugging Face model
            return super().forward(hidden_states, attention_mask, *args, **kwargs)
        alive = state.attention_mask.to(hidden_states.dtype)
        locations = {loc: p for p, loc in enumerate(state.prune_location)}
        needs_probs = set(state.record_layers) | {loc - 1 for loc in locations}
        probs = prev_alive = None
        for i, layer in enumerate(self.layer):
            if i in locations and state.z_bins is not None:
                scores = token_importance(probs, prev_alive)
                if state.random_ranking:
                    scores = torch.rand_like(scores) * prev_alive
                bins = rank_bins(scores, (alive > 0).to(alive.dtype), state.bin_num)
                p = locations[i]
                alive = keep_mask(bins, alive, state.z_bins[p], state.z_pruner[p])
                hidden_states = hidden_states * alive[..., None]  # soft mask: gates get gradients
            state.alive.append(alive)
            attention_out, probs = layer.attention(hidden_states, additive_mask(alive, hidden_states.dtype))
            hidden_states = layer.feed_forward_chunk(attention_out)
            prev_alive = (alive > 0).to(alive.dtype)
            if i in needs_probs and probs is None:
                raise RuntimeError("attention probabilities are missing: load the model with "
                                   "attn_implementation='eager'")
            if i in state.record_layers:
                state.importance[i] = token_importance(probs, prev_alive)
        return EncoderOutput(last_hidden_state=hidden_states)


def check_supported(model: nn.Module) -> None:
    """Raise a clear error for a model family the patch does not cover."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model type {model_type!r} is not supported; "
                         f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder module (holding ``.layer``) of a Hugging Face model."""
    return model.base_model.encoder


def apply_patch(model: nn.Module) -> nn.Module:
    """Patch ``model`` in place so its encoder can prune tokens; returns the model.

    Attention probabilities are needed for the importance scores, so the model is
    switched to eager attention. Patching twice is a no-op.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> m = apply_patch(BertForSequenceClassification(BertConfig(num_hidden_layers=2)))
        >>> isinstance(encoder_of(m), ToPEncoderMixin)
        True
    """
    check_supported(model)
    model.set_attn_implementation("eager")
    encoder = encoder_of(model)
    if not isinstance(encoder, ToPEncoderMixin):
        cls = encoder.__class__
        encoder.__class__ = type(f"ToP{cls.__name__}", (ToPEncoderMixin, cls), {})
    return model
