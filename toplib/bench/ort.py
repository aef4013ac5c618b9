"""Latency in onnxruntime: ``ort_drop`` (:class:`toplib.export.DropGraph`) against ``ort_dense``
(the plain HF model), both through onnxruntime's transformer optimizer and optionally int8, on
``run_benchmark``'s batches, interleaved; FLOPs figures are ``drop_flops``', as in ``toplib bench``.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import tempfile
from dataclasses import asdict

import torch

from ..core.config import check
from ..data import real_lengths
from ..export import OrtModel, export_onnx, quantize_int8, require
from ..infer import set_eval_sparsity
from .timing import (
    BenchSettings,
    benchmark_inputs,
    cpu_model,
    machine_load,
    make_batches,
    max_seq_length,
    round_robin,
    timing_row,
)

ORT_VARIANTS = ("ort_dense", "ort_drop")
QUANTIZE = (None, "int8")


def export_pair(top, workdir: str, quantize: str | None = None) -> dict[str, str]:
    """{variant: path} of ``top``'s dense and token-dropping graphs in ``workdir``, optimised."""
    paths = {"ort_dense": export_onnx(top, os.path.join(workdir, "dense.onnx"), dense=True),
             "ort_drop": export_onnx(top, os.path.join(workdir, "drop.onnx"))}
    if quantize == "int8":
        paths = {k: quantize_int8(p, p.replace(".onnx", "-int8.onnx")) for k, p in paths.items()}
    return paths


def time_ort_round_robin(models: dict, feeds: list[dict], runs: int, warmup: int) -> dict:
    """:func:`~toplib.bench.timing.round_robin` of the sessions on ``feeds[r % len(feeds)]``,
    converted beforehand so only the session's work is timed."""
    def calls(r):
        feed = feeds[r % len(feeds)]
        return {name: functools.partial(model.session.run, None, feed[name])
                for name, model in models.items()}

    return round_robin(calls, runs, warmup, progress=False)


def run_ort_benchmark(settings: BenchSettings, top, tokenizer, quantize: str | None = None,
                      workdir: str | None = None) -> dict:
    """Time ``ort_dense`` against ``ort_drop`` at every batch size of ``settings`` (CPU); a
    JSON-ready dict like :func:`~toplib.bench.timing.run_benchmark`'s. ``top``'s gates are set
    to ``settings.sparsity`` if given; ``workdir`` keeps the graphs (default: a temporary
    folder, and ``graphs`` is None)."""
    check("quantize", quantize, quantize in QUANTIZE, "None or 'int8'")
    check("device", settings.device, settings.device == "cpu", "onnxruntime runs on the cpu here")
    ort = require("onnxruntime")
    top.to("cpu")
    encoded = benchmark_inputs(settings, tokenizer, max(settings.batch_sizes) * settings.runs)
    if settings.sparsity is not None:
        set_eval_sparsity(top, real_lengths(encoded), settings.sparsity)
    threads = torch.get_num_threads()
    models, paths = _sessions(top, workdir, quantize, threads)  # after the gates are set
    results = {"settings": asdict(settings), "engine": "onnxruntime",
               "onnxruntime": ort.__version__, "quantize": quantize or "fp32",
               "threads": threads, "spinning": False, "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
               "platform": platform.platform(), "load_before": machine_load(),
               "model": {"model_type": top.config.model_type, "layers": top.dims.num_layers,
                         "hidden": top.dims.hidden,
                         "prune_location": list(top.prune.prune_location)},
               "graphs": paths, "batches": []}
    pad_id = top.config.pad_token_id or 0
    for bs in settings.batch_sizes:
        batches = make_batches(encoded, bs, settings.runs, pad_id, max_seq_length(settings))
        results["batches"].append(_ort_row(top, models, batches, settings))
    results["load_after"] = machine_load()
    return results


def _sessions(top, workdir: str | None, quantize: str | None, threads: int):
    """({variant: OrtModel}, {variant: graph path, or None}): graphs kept in ``workdir``, or in a
    temporary folder removed once the sessions hold them (the graphs are large)."""
    with contextlib.ExitStack() as stack:
        folder = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="toplib-"))
        os.makedirs(folder, exist_ok=True)
        paths = export_pair(top, folder, quantize)
        models = {name: OrtModel(path, threads) for name, path in paths.items()}
    return models, (paths if workdir else None)


def _ort_row(top, models: dict, batches, settings: BenchSettings) -> dict:
    """Latency, throughput, speed-up and its ratio to the FLOPs reduction at one batch size."""
    load = machine_load()["loadavg"][0]
    feeds = [{name: model.feeds(d["input_ids"], d["attention_mask"], d.get("token_type_ids"))
              for name, model in models.items()} for _, d in batches]
    times = time_ort_round_robin(models, feeds, settings.runs, settings.warmup)
    row = timing_row(top, batches, times, load, ORT_VARIANTS)
    row["label_agreement"] = _label_agreement(models, feeds)
    return row


def _label_agreement(models: dict, feeds: list[dict]) -> float:
    """Share of examples whose label ort_drop and ort_dense agree on (int8 moves logits)."""
    same = total = 0
    for feed in feeds:
        dense, drop = (models[k].session.run(["logits"], feed[k])[0].argmax(-1)
                       for k in ORT_VARIANTS)
        same, total = same + int((dense == drop).sum()), total + len(dense)
    return same / total


def format_ort_report(results: dict) -> str:
    """A readable table of one :func:`run_ort_benchmark` result."""
    s, m = results["settings"], results["model"]
    load = results["load_before"]["loadavg"][0], results["load_after"]["loadavg"][0]
    lines = [f"onnxruntime {results['onnxruntime']} {results['quantize']} | {m['model_type']} "
             f"{m['layers']}x{m['hidden']}, prune layers {m['prune_location'][0]}.."
             f"{m['prune_location'][-1]} | {s['task']} | length {s['length'] or 'as is'} | "
             f"{results['cpu_model']} | {results['threads']} threads | median of {s['runs']} "
             f"runs | load avg {load[0]:.1f} before, {load[1]:.1f} after"]
    for row in results["batches"]:
        lat = row["latency_ms"]
        lines += ["", f"batch {row['batch_size']}: sparsity {row['sparsity_real']:.3f} (real "
                      f"length); FLOPs reduction {row['reduction_real']:.2f}x; load avg "
                      f"{row['loadavg_1min'][0]:.1f}",
                  f"  {'variant':<11}{'latency ms':>12}{'ex/s':>10}{'speedup':>10}{'cpu ms':>12}"]
        lines += [f"  {name:<11}{lat[name]:>12.2f}{row['throughput'][name]:>10.1f}"
                  f"{lat['ort_dense'] / lat[name]:>9.2f}x{row['cpu_ms'][name]:>12.2f}"
                  for name in ORT_VARIANTS]
        lines.append(f"  ort_drop: {row['speedup']:.2f}x over ort_dense = {row['ratio_real']:.2f}"
                     f" of the real FLOPs reduction (CPU time: {row['ratio_real_cpu']:.2f}); "
                     f"labels agree with ort_dense on {100 * row['label_agreement']:.1f}%")
    return "\n".join(lines)
