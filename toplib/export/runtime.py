"""ONNX graphs of a ToPModel (token-dropping, or the dense baseline) run in onnxruntime (CPU),
optionally optimised and int8-quantized; onnx and onnxruntime: ``pip install -e .[export]``.
"""
from __future__ import annotations

import importlib
import os

import numpy as np
import torch

from ..core.config import check
from ..hf.model import plain_classifier
from ..hf.precision import dtype_name
from ..infer import DropOutput, check_right_padded, length_batches
from .graph import DropGraph

OPSETS = range(14, 21)
"""ONNX opsets the export accepts: from 14 (Softmax over the last axis only, as PyTorch's,
since 13; TopK with a tensor k since 10) to 20, the newest the TorchScript exporter writes."""
EXAMPLE_LENGTHS = (11, 7)
"""Real lengths of the tracing batch: one row padded, so no shape specialises to a full batch."""


def require(module: str):
    """Import an optional dependency of the export, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{module} is needed to export and run ONNX graphs: "
                          "pip install -e .[export]") from err


def check_output_file(path: str, name: str = "path", suffix: str = ".onnx") -> str:
    """``path`` as a writable file name ending in ``suffix``, or a ValueError naming ``name``."""
    path = os.fspath(path)
    wanted = f"give a file name ending in {suffix}" if suffix else "give a file name"
    check(name, path, not os.path.isdir(path), f"it is a folder: {wanted}")
    check(name, path, path.endswith(suffix), wanted)
    folder = os.path.dirname(os.path.abspath(path))
    check(name, path, os.path.isdir(folder) and os.access(folder, os.W_OK),
          f"its folder {folder!r} must exist and be writable")
    return path


class _DenseLogits(torch.nn.Module):
    """The plain HF classifier, logits only, eager (the attention onnxruntime's optimizer fuses)."""

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
    """Write an ONNX graph of a float32 CPU ToPModel, its eval gates constants, batch and length
    dynamic; returns ``path``. Inputs: int64 ``input_ids``, ``attention_mask`` (right-padded,
    [CLS] first), ``token_type_ids`` (not RoBERTa); outputs ``logits`` (B, C) and, unless
    ``dense`` (the plain HF classifier), ``kept`` (B, N). ``pruning=False``: no prune layers."""
    check("opset", opset, opset in OPSETS, f"an integer in {OPSETS.start}..{OPSETS.stop - 1}")
    weight = next(top.model.parameters())
    check("top", f"a {dtype_name(weight.dtype)} model on {weight.device}",
          weight.dtype == torch.float32 and weight.device.type == "cpu",
          "a float32 model on the CPU (top.float().cpu(); int8: quantize_int8 on the graph)")
    path = check_output_file(path)
    require("onnx")
    module = (_DenseLogits(top) if dense else DropGraph(top, pruning)).eval()
    inputs = example_inputs(top)
    names = ["input_ids", "attention_mask", "token_type_ids"][:len(inputs)]
    outputs = ["logits"] if dense else ["logits", "kept"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {o: {0: "batch"} for o in outputs}
    with torch.no_grad():
        torch.onnx.export(module, inputs, path, input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    if optimize:  # onnxruntime's transformer optimizer, in place
        require("onnxruntime")
        from onnxruntime.transformers.optimizer import optimize_model
        optimize_model(path, model_type="bert", num_heads=top.config.num_attention_heads,
                       hidden_size=top.config.hidden_size, opt_level=0).save_model_to_file(path)
    return path


def quantize_int8(src: str, dst: str, per_channel: bool = False) -> str:
    """Dynamic int8 quantization of ``src`` into ``dst`` (onnxruntime ``quantize_dynamic``,
    QInt8 weights); returns ``dst``. ``per_channel``: one weight scale per output column
    (benchmarks/results/README.md)."""
    check("src", src, os.path.isfile(src), "give an existing .onnx file")
    dst = check_output_file(dst, "dst")
    check("dst", dst, os.path.abspath(dst) != os.path.abspath(src), "must differ from src")
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    # the optimizer's fused ops (SkipLayerNormalization, ...) defeat shape inference: their
    # outputs are float32, which the quantizer must be told
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


OrtOutput = DropOutput  # logits (B, C) float32; kept (B, N), None for a dense graph


class OrtModel:
    """An exported graph in an onnxruntime CPU session. ``spinning`` (onnxruntime's default) is
    off here: on a shared machine, idle threads spinning for work take each other's cores."""

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
        out = {name: torch.from_numpy(v) for name, v in zip(self.outputs, values)}
        return OrtOutput(out["logits"], out.get("kept"))


def ort_predict(model: OrtModel, examples: list[dict], batch_size: int = 64,
                pad_id: int = 0) -> OrtOutput:
    """:func:`toplib.infer.predict` in onnxruntime: batched by length, results in input order."""
    batches, inverse = length_batches(examples, batch_size, pad_id)
    outs = [model(b["input_ids"], b["attention_mask"], b.get("token_type_ids")) for b in batches]
    kept = None if outs[0].kept is None else torch.cat([o.kept for o in outs])[inverse]
    return OrtOutput(torch.cat([o.logits for o in outs])[inverse], kept)
