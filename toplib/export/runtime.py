"""Writing ONNX graphs of a ToPModel and running them in onnxruntime (CPU).

Two graphs of one checkpoint: the token-dropping one (:class:`~toplib.export.graph.DropGraph`,
the evaluation gates baked in) and the dense Hugging Face model, the baseline users would
deploy. Both can go through onnxruntime's transformer optimizer (fused LayerNorm, GELU,
SkipLayerNorm, attention where the pattern allows) and its dynamic int8 quantization, so
pruning and int8 stack. onnx and onnxruntime are optional (``pip install -e .[export]``).
"""
from __future__ import annotations

import importlib
import os
from typing import NamedTuple

import numpy as np
import torch

from ..core.config import check
from ..hf.model import plain_classifier
from ..hf.precision import dtype_name
from ..infer import check_right_padded, length_batches
from .graph import DropGraph

OPSETS = range(14, 21)
"""ONNX opsets the export accepts: from 14 (Softmax over the last axis only, as PyTorch's,
since 13; TopK with a tensor k since 10) to 20, the newest the TorchScript exporter writes."""
EXAMPLE_LENGTHS = (11, 7)
"""Real lengths of the tracing example: padding in one row, so no shape is specialised to
a full batch (the tests run other lengths and batch sizes)."""


def require(module: str):
    """Import an optional dependency of the export, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{module} is needed to export and run ONNX graphs: "
                          "pip install -e .[export]") from err


def check_onnx_path(path: str, name: str = "path") -> str:
    """``path`` as a writable .onnx file name, or a ValueError naming ``name``."""
    path = os.fspath(path)
    check(name, path, not os.path.isdir(path), "it is a folder: give a file name ending in "
          ".onnx (inside it, e.g. model.onnx)")
    check(name, path, path.endswith(".onnx"), "give a file name ending in .onnx")
    folder = os.path.dirname(os.path.abspath(path))
    check(name, path, os.path.isdir(folder) and os.access(folder, os.W_OK),
          f"its folder {folder!r} must exist and be writable")
    return path


class _DenseLogits(torch.nn.Module):
    """The plain Hugging Face classifier, logits only (eager attention: the pattern
    onnxruntime's optimizer fuses into its Attention kernel)."""

    def __init__(self, top):
        super().__init__()
        self.model = plain_classifier(top, "eager")

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits


def example_inputs(top) -> tuple:
    """A small right-padded batch to trace with: (input_ids, attention_mask[, token_type_ids])."""
    gen = torch.Generator().manual_seed(0)
    width = max(EXAMPLE_LENGTHS)
    ids = torch.randint(5, top.config.vocab_size, (len(EXAMPLE_LENGTHS), width), generator=gen)
    mask = (torch.arange(width)[None, :] < torch.tensor(EXAMPLE_LENGTHS)[:, None]).long()
    ids = ids.masked_fill(mask == 0, top.config.pad_token_id or 0)
    has_types = top.config.model_type != "roberta"
    return (ids, mask, torch.zeros_like(ids)) if has_types else (ids, mask)


def export_onnx(top, path: str, *, opset: int = 17, dense: bool = False,
                optimize: bool = True, pruning: bool = True) -> str:
    """Write an ONNX graph of a ToPModel (CPU, fp32, dynamic batch and sequence length).

    Args:
        top: a ToPModel; its evaluation gates become constants of the graph.
        path: the ``.onnx`` file to write.
        opset: ONNX opset, in :data:`OPSETS`.
        dense: the plain Hugging Face classifier instead (outputs ``logits`` only): the
            baseline a token-dropping graph is timed against.
        optimize: run onnxruntime's transformer optimizer on the written graph.
        pruning: False writes the token-dropping graph without prune locations.
    Returns:
        ``path``. The graph's inputs are int64 ``input_ids``, ``attention_mask`` (right-padded,
        [CLS] first) and, except for RoBERTa, ``token_type_ids``; outputs ``logits`` (B, C)
        and, for the token-dropping graph, ``kept`` (B, N): real tokens entering each layer.
    Example:
        >>> export_onnx(top, "model.onnx")  # doctest: +SKIP
    """
    check("opset", opset, opset in OPSETS, f"an integer in {OPSETS.start}..{OPSETS.stop - 1}")
    weight = next(top.model.parameters())
    check("top", f"a {dtype_name(weight.dtype)} model on {weight.device}",
          weight.dtype == torch.float32 and weight.device.type == "cpu",
          "a float32 model on the CPU (top.float().cpu(); int8: quantize_int8 on the graph)")
    path = check_onnx_path(path)
    require("onnx")
    module = (_DenseLogits(top) if dense else DropGraph(top, pruning)).eval()
    inputs = example_inputs(top)
    names = ["input_ids", "attention_mask", "token_type_ids"][:len(inputs)]
    outputs = ["logits"] if dense else ["logits", "kept"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {o: {0: "batch"} for o in outputs}
    with torch.no_grad():
        torch.onnx.export(module, inputs, path, input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    if optimize:
        optimize_graph(path, top.config)
    return path


def optimize_graph(path: str, config, dst: str | None = None) -> str:
    """onnxruntime's transformer optimizer (``model_type="bert"``) on ``path``, in place or
    into ``dst``; returns the path written."""
    require("onnxruntime")
    from onnxruntime.transformers.optimizer import optimize_model
    optimized = optimize_model(path, model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=0)
    optimized.save_model_to_file(dst or path)
    return dst or path


def quantize_int8(src: str, dst: str, per_channel: bool = False) -> str:
    """Dynamic int8 quantization (onnxruntime ``quantize_dynamic``, QInt8 weights; activations
    quantized per call) of ``src`` into ``dst``; returns ``dst``. ``per_channel``: one weight
    scale per output column (the quickstart MiniLM on all 1,066 rotten_tomatoes validation
    examples, labels equal to fp32 PyTorch: token dropping 91.7% -> 93.1%, dense 91.6% ->
    92.9%; accuracy 77.9 -> 79.7 and 78.8 -> 79.4 against fp32's 78.7; not timed)."""
    check("src", src, os.path.isfile(src), "give an existing .onnx file")
    dst = check_onnx_path(dst, "dst")
    check("dst", dst, os.path.abspath(dst) != os.path.abspath(src), "must differ from src")
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    # the optimizer's fused ops (SkipLayerNormalization, ...) defeat shape inference: their
    # outputs are float32, which the quantizer must be told
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


class OrtOutput(NamedTuple):
    """Logits (B, C) float32; kept (B, N) long, or None for a dense graph."""

    logits: torch.Tensor
    kept: torch.Tensor | None


class OrtModel:
    """An exported graph in an onnxruntime CPU session.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (the benchmark's 2, or the cores to use).
        spinning: let idle intra-op threads spin for work (onnxruntime's default). Off here:
            on a machine shared with other processes spinning threads take each other's
            cores (bert-base, int8, batch 1, 2 threads, load average 1.8 on 2 cores: dense
            94 -> 52 ms, token dropping 57 -> 27 ms with it off).
    Example:
        >>> out = OrtModel("model.onnx", 2)(ids, mask, types)  # doctest: +SKIP
    """

    def __init__(self, path: str, threads: int = 1, spinning: bool = False):
        check("path", path, os.path.isfile(path), "give an existing .onnx file")
        check("threads", threads, isinstance(threads, int) and threads >= 1, "an integer >= 1")
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def feeds(self, input_ids, attention_mask, token_type_ids=None) -> dict:
        """The session's inputs as int64 numpy arrays; missing token types are zeros."""
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids}
        feeds = {k: np.asarray(v, dtype=np.int64) for k, v in given.items() if v is not None}
        if "token_type_ids" in self.inputs and token_type_ids is None:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        check_right_padded(torch.from_numpy(feeds["attention_mask"]))
        return {k: feeds[k] for k in self.inputs}

    def __call__(self, input_ids, attention_mask, token_type_ids=None) -> OrtOutput:
        values = self.session.run(None, self.feeds(input_ids, attention_mask, token_type_ids))
        out = dict(zip(self.outputs, values))
        kept = out.get("kept")
        return OrtOutput(torch.from_numpy(out["logits"]),
                         None if kept is None else torch.from_numpy(kept))


def ort_predict(model: OrtModel, examples: list[dict], batch_size: int = 64,
                pad_id: int = 0) -> OrtOutput:
    """:func:`toplib.infer.predict` in onnxruntime: longest first in batches of similar
    length, results in the order of ``examples``."""
    check("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1,
          "an integer >= 1")
    batches, inverse = length_batches(examples, batch_size, pad_id)
    outs = [model(b["input_ids"], b["attention_mask"], b.get("token_type_ids")) for b in batches]
    kept = None if outs[0].kept is None else torch.cat([o.kept for o in outs])[inverse]
    return OrtOutput(torch.cat([o.logits for o in outs])[inverse], kept)
