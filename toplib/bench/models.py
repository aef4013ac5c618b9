"""The models a benchmark times: a checkpoint or random weights, the dense Hugging Face
baseline, and every variant optionally on prepacked oneDNN linears."""
from __future__ import annotations

import copy
import os

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from ..core.config import PruneConfig
from ..hf.model import ToPModel, load_checkpoint, plain_classifier, resolve_model_path
from ..hf.precision import inference_copy, resolve_dtype

BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072)  # Devlin et al. 2019, BERT-base


def build_model(checkpoint: str | None = None, config: str | None = None,
                tokenizer: str | None = None, prune: PruneConfig | None = None,
                num_labels: int = 2, seed: int = 0):
    """(ToPModel in eval mode, tokenizer): from a checkpoint, or random weights from a config.

    Args:
        checkpoint: toplib or plain Hugging Face checkpoint, a run directory (its
            ``best/``) or a hub name; default: the offline MiniLM.
        config: "bert-base" or a Hugging Face config name/path: random weights (seeded by
            ``seed``), with ``tokenizer`` (default: the offline MiniLM's).
        prune: pruning structure (None: the checkpoint's, or the defaults).
    """
    if config is None and os.path.isdir(path := resolve_model_path(checkpoint)):
        return load_checkpoint(path, prune, num_labels=num_labels)[:2]
    if config is None:  # a hub name
        top = ToPModel.from_pretrained(path, prune=prune, num_labels=num_labels)
        return top.eval(), AutoTokenizer.from_pretrained(path)
    if config == "bert-base":
        hf_config = BertConfig(num_labels=num_labels, **BERT_BASE)
    else:
        hf_config = AutoConfig.from_pretrained(resolve_model_path(config), num_labels=num_labels)
    torch.manual_seed(seed)
    hf = AutoModelForSequenceClassification.from_config(hf_config, attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer))
    return ToPModel(hf, prune).eval(), tok


def dense_copy(top) -> torch.nn.Module:
    """The unpatched Hugging Face classifier with SDPA attention on ``top``'s device, sharing
    no state with ``top``."""
    return plain_classifier(top, "sdpa")


class OneDNNLinear(torch.nn.Module):
    """``nn.Linear`` on oneDNN with a prepacked weight (the kernel of PyTorch's inductor on CPU).

    PyTorch's default fp32 GEMM (MKL) has a large fixed cost per call on AMD CPUs when a
    matrix has few rows, which is what pruning produces; prepacked oneDNN weights cut it.
    Same maths, float rounding aside.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, None))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x):
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def onednn_available() -> bool:
    """Whether this PyTorch build has the prepacked oneDNN linear ops."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def use_onednn(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every ``nn.Linear`` of ``model`` for :class:`OneDNNLinear`, in place. Inference
    only: no trainable linear weights remain and the state dict holds packed buffers, so
    benchmark a copy (:func:`timed_copy` makes one)."""
    resolve_onednn(True)
    for name, child in model.named_children():
        setattr(model, name, OneDNNLinear(child) if isinstance(child, torch.nn.Linear)
                else use_onednn(child))
    return model


def resolve_onednn(onednn: bool | None, device: str = "cpu") -> bool:
    """None -> whether the build has oneDNN linears (CPU only); True without them is an error."""
    if torch.device(device).type != "cpu":
        if onednn:
            raise ValueError(f"onednn=True is for the CPU, not device={device!r}")
        return False
    if onednn is None:
        return onednn_available()
    if onednn and not onednn_available():
        raise ValueError("onednn=True needs a PyTorch build with oneDNN (mkldnn) linear ops")
    return bool(onednn)


def _device(top) -> str:
    return str(next(top.parameters()).device)


def prepare_dense(top, onednn: bool | None = None, dtype=None) -> torch.nn.Module:
    """The dense baseline of ``top`` (a copy) in ``dtype`` (None: ``top``'s), on oneDNN
    linears when ``onednn`` resolves True (prepacked in that dtype)."""
    dense = dense_copy(top)
    dense.to(resolve_dtype(dtype, _device(top)) or dense.dtype)
    return use_onednn(dense) if resolve_onednn(onednn, _device(top)) else dense


def timed_copy(top, onednn: bool | None = None, dtype=None):
    """What the ToP variants time: what ``predict`` runs, the inference copy of ``top`` in
    ``dtype`` (:func:`toplib.hf.precision.inference_copy`), on oneDNN linears when
    ``onednn`` resolves True."""
    top = inference_copy(top, dtype)
    if not resolve_onednn(onednn, _device(top)):
        return top
    timed = copy.deepcopy(top)
    timed.__dict__.pop("_toplib_casts", None)
    use_onednn(timed.model)
    return timed.eval()
