"""The onnxruntime engine of :func:`~toplib.bench.run_benchmark`: ``ort_drop``
(:class:`toplib.export.DropGraph`) against ``ort_dense`` (the plain HF model), both through
onnxruntime's transformer optimizer and optionally int8, timed by the same interleaved
rounds as the torch variants; FLOPs figures are ``drop_flops``', as for torch."""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile

import numpy as np
import torch

from ..export import OrtModel, export_onnx, quantize_int8, require
from .timing import PAIRS, BenchSettings, round_robin, timing_row


def ort_engine(top, settings: BenchSettings, workdir: str | None = None):
    """(fields for the results, batches -> row): sessions of ``top``'s dense and dropping
    graphs, exported with its gates as set now; the graphs are kept in ``workdir``, or in a
    temporary folder removed once the sessions hold them (they are large)."""
    ort, threads = require("onnxruntime"), torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        folder = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="toplib-"))
        os.makedirs(folder, exist_ok=True)
        paths = {name: export_onnx(top, os.path.join(folder, name.removeprefix("ort_") + ".onnx"),
                                   dense=name == "ort_dense") for name in PAIRS["onnxruntime"]}
        if settings.quantize == "int8":
            paths = {k: quantize_int8(p, p.replace(".onnx", "-int8.onnx")) for k, p in paths.items()}
        models = {name: OrtModel(path, threads) for name, path in paths.items()}
    info = {"onnxruntime": ort.__version__, "quantize": settings.quantize or "fp32",
            "spinning": False, "graphs": paths if workdir else None}
    return info, functools.partial(_ort_row, top, models, settings)


def _ort_row(top, models: dict, settings: BenchSettings, batches) -> dict:
    """:func:`~toplib.bench.timing.timing_row` of the sessions, on inputs converted beforehand
    so only the sessions' work is timed, and ``label_agreement``."""
    feeds = [{name: model.feeds(d["input_ids"], d["attention_mask"], d.get("token_type_ids"))
              for name, model in models.items()} for _, d in batches]

    def calls(r):
        return {name: functools.partial(model.session.run, None, feeds[r % len(feeds)][name])
                for name, model in models.items()}

    row = timing_row(top, batches, lambda: round_robin(calls, settings.runs, settings.warmup,
                                                       progress=False), "onnxruntime")
    labels = {name: np.concatenate([model.session.run(["logits"], feed[name])[0].argmax(-1)
                                    for feed in feeds]) for name, model in models.items()}
    # share of examples whose label ort_drop and ort_dense agree on (int8 moves logits)
    row["label_agreement"] = float((labels["ort_dense"] == labels["ort_drop"]).mean())
    return row
