"""The models a benchmark times: a checkpoint or random weights, the dense baseline, and every
variant optionally on prepacked oneDNN linears."""
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
    """(ToPModel in eval mode, tokenizer) from ``checkpoint`` (toplib or HF folder, run
    directory, hub name; default: the offline MiniLM), or random weights seeded by ``seed``
    from ``config`` ("bert-base" or an HF config). ``prune``: None keeps the checkpoint's."""
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
    """The unpatched HF classifier (SDPA) on ``top``'s device, sharing no state with it."""
    return plain_classifier(top, "sdpa")


class OneDNNLinear(torch.nn.Module):
    """``nn.Linear`` on a prepacked oneDNN weight: PyTorch's default fp32 GEMM (MKL) has a large
    fixed cost per call on AMD CPUs for the few-row matrices pruning leaves."""

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
    """Swap every ``nn.Linear`` of ``model`` for :class:`OneDNNLinear`, in place (inference
    only: the state dict then holds packed buffers; benchmark a copy)."""
    resolve_onednn(True)
    for name, child in model.named_children():
        setattr(model, name, OneDNNLinear(child) if isinstance(child, torch.nn.Linear)
                else use_onednn(child))
    return model


def resolve_onednn(onednn: bool | None, device: str = "cpu", dtype=None) -> bool:
    """None -> whether the build has oneDNN linears (CPU only) for ``dtype``; True without
    them is an error. oneDNN's bf16 linears need avx512bw/vl/dq or avx_ne_convert."""
    if torch.device(device).type != "cpu":
        if onednn:
            raise ValueError(f"onednn=True is for the CPU, not device={device!r}")
        return False
    bf16 = resolve_dtype(dtype, device) is torch.bfloat16
    usable = onednn_available() and (not bf16 or torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if onednn is None:
        return usable
    if onednn and not usable:
        cpu = " and, for bfloat16, a CPU with avx512bw or avx_ne_convert" if bf16 else ""
        raise ValueError(f"onednn=True needs a PyTorch build with oneDNN (mkldnn) linear ops{cpu}")
    return bool(onednn)


def _device(top) -> str:
    return str(next(top.parameters()).device)


def prepare_dense(top, onednn: bool | None = None, dtype=None) -> torch.nn.Module:
    """A dense copy of ``top`` in ``dtype`` (None: ``top``'s), on oneDNN if ``onednn`` resolves."""
    dense = dense_copy(top)
    dense.to(resolve_dtype(dtype, _device(top)) or dense.dtype)
    return use_onednn(dense) if resolve_onednn(onednn, _device(top), dtype) else dense


def timed_copy(top, onednn: bool | None = None, dtype=None):
    """What the ToP variants time: the inference copy ``predict`` runs in ``dtype``, on oneDNN
    linears if ``onednn`` resolves True."""
    top = inference_copy(top, dtype)
    if not resolve_onednn(onednn, _device(top), dtype):
        return top
    timed = copy.deepcopy(top)
    timed.__dict__.pop("_toplib_casts", None)
    use_onednn(timed.model)
    return timed.eval()
