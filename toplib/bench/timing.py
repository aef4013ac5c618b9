"""Latency benchmark on real sentences, median of ``runs`` interleaved rounds. Engine torch:
``dense_padded`` (the HF model as users run it, padded to max_seq_length), ``dense_dynamic``
(padding removed), ``top_masked`` (``ToPModel.forward``, padded, as the release runs) and
``top_drop`` (``prune_forward``); engine onnxruntime: ``ort_dense`` against ``ort_drop``
(:mod:`toplib.bench.ort`). ``ratio`` = speedup / FLOPs reduction (on the tokens dropped).
"""
from __future__ import annotations

import functools
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from ..core.config import check, check_choice, check_positive_ints, is_finite, is_integer, knob
from ..core.flops import flops_figures
from ..data import encode, get_task, load_task_data, pad_examples, real_lengths, to_device
from ..hf.precision import DTYPES, cpu_flags, resolve_dtype
from ..infer import prune_forward, set_eval_sparsity
from .models import prepare_dense, resolve_onednn, timed_copy
from .profile import PROFILE_REPEATS, profile_sections, synchronizer

logger = logging.getLogger(__name__)

VARIANTS = ("dense_padded", "dense_dynamic", "top_masked", "top_drop")
PAIRS = {"torch": ("dense_dynamic", "top_drop"), "onnxruntime": ("ort_dense", "ort_drop")}
"""Per engine: (dense baseline, toplib variant), the two ``speedup`` compares."""


@dataclass
class BenchSettings:
    """What to time, on which inputs. None: ``length`` as is, ``sparsity`` the model's gates."""

    task: str = knob("rotten_tomatoes", "task whose validation texts are timed")
    data_dir: str | None = knob(None, "data folder of the task (GLUE root, 20news folder)")
    length: int | None = knob(None, "real tokens per input: cut longer, skip shorter; list sweeps")
    batch_sizes: tuple[int, ...] = knob((1, 32), "batch sizes to time (a comma list)")
    runs: int = knob(20, "timed rounds per batch size (the median is reported)")
    warmup: int = knob(3, "untimed rounds before timing")
    max_seq_length: int | None = knob(None, "padded length (default: the task's, at least length)")
    sparsity: float | None = knob(None, "real-length FLOPs sparsity of the gates; a list sweeps")
    onednn: bool | None = knob(None, "every Linear on prepacked oneDNN weights (default: if built)")
    seed: int = knob(0, "seed of the random weights of --config models")
    device: str = knob("cpu", "where to time: cpu or a CUDA device (timings synchronise it)")
    dtype: str = knob("float32", "dtype of every variant: float32, bfloat16 (float16: CUDA)")
    padded: bool = knob(True, "also time the padded variants (dense_padded, top_masked)")
    engine: str = knob("torch", "torch (the PyTorch variants) or onnxruntime (the exported "
                       "token-dropping graph against onnxruntime's optimised dense BERT)")
    quantize: str | None = knob(None, "onnxruntime only: int8 (dynamic) quantizes both graphs")

    def __post_init__(self):
        sizes = tuple(self.batch_sizes) if isinstance(self.batch_sizes, (list, tuple, range)) else ()
        check("batch_sizes", self.batch_sizes,
              bool(sizes) and all(is_integer(b) and b >= 1 for b in sizes),
              "give one or more integer batch sizes >= 1")
        self.batch_sizes = tuple(int(b) for b in sizes)
        check_positive_ints(self, ("runs",), optional=False)
        check("warmup", self.warmup, is_integer(self.warmup) and self.warmup >= 0,
              "must be an integer >= 0")
        for name in ("length", "max_seq_length"):
            value = getattr(self, name)
            check(name, value, value is None or (is_integer(value) and value >= 2),
                  "must be an integer >= 2 ([CLS] and [SEP] at least), or None")
        check("sparsity", self.sparsity, self.sparsity is None or (
            is_finite(self.sparsity) and 0 <= self.sparsity < 1), "must lie in [0, 1) or be None")
        check("onednn", self.onednn, self.onednn is None or isinstance(self.onednn, bool),
              "True, False or None")
        check("dtype", self.dtype, self.dtype in DTYPES, f"one of {', '.join(DTYPES)}")
        resolve_dtype(self.dtype, self.device)
        check_choice(self, "engine", tuple(PAIRS))
        ort = self.engine == "onnxruntime"  # float32 graphs on the CPU, int8 by --quantize
        check("dtype", self.dtype, not ort or self.dtype == "float32",
              "float32 with --engine onnxruntime (use --quantize int8 for int8)")
        check("device", self.device, not ort or self.device == "cpu", "cpu with --engine onnxruntime")
        check("quantize", self.quantize, self.quantize in ((None, "int8") if ort else (None,)),
              "None, or 'int8' with --engine onnxruntime")


def max_seq_length(settings: BenchSettings) -> int:
    """Padded length of the padded variants: the task's, raised to ``length``."""
    padded = settings.max_seq_length or get_task(settings.task).max_seq_length
    return max(padded, settings.length or 0)


def benchmark_inputs(settings: BenchSettings, tokenizer, count: int) -> list[dict]:
    """Up to ``count`` encoded validation examples (exactly ``settings.length`` tokens if set)."""
    spec = get_task(settings.task)
    data = load_task_data(spec.name, data_dir=settings.data_dir)[spec.validation_splits[0]]
    encoded = encode(data, tokenizer, settings.length or max_seq_length(settings))
    if settings.length:
        encoded = [e for e in encoded if len(e["input_ids"]) == settings.length]
    if not encoded:
        raise ValueError(f"length={settings.length}: no {spec.name} validation text is that long")
    if len(encoded) < count:
        logger.info("only %d inputs of this length (wanted %d): batches repeat",
                    len(encoded), count)
    return encoded[:count]


def make_batches(encoded: list[dict], batch_size: int, rounds: int, pad_id: int, pad_to: int,
                 device: str = "cpu"):
    """Distinct batches (at most ``rounds``), each as (padded to ``pad_to``, dynamic) pair."""
    chunks = [[encoded[(i * batch_size + j) % len(encoded)] for j in range(batch_size)]
              for i in range(max(1, min(rounds, len(encoded) // batch_size)))]
    return [(to_device(pad_examples(c, pad_id, pad_to), device),
             to_device(pad_examples(c, pad_id), device)) for c in chunks]


def round_robin(calls, runs: int, warmup: int, sync=lambda: None, progress: bool = True) -> dict:
    """{"wall": {name: [seconds]}, "cpu": {...}}: round r runs each callable of ``calls(r)``
    once, in turn, so drift hits all alike. Process CPU time leaves out time descheduled
    (with more than one thread it counts spinning too)."""
    times = {"wall": {}, "cpu": {}}
    for r in tqdm(range(warmup + runs), desc="rounds", leave=False, disable=not progress):
        for name, fn in calls(r).items():
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            if r >= warmup:
                times["wall"].setdefault(name, []).append(time.perf_counter() - wall)
                times["cpu"].setdefault(name, []).append(time.process_time() - cpu)
    return times


@torch.inference_mode()
def time_round_robin(batches, top, dense, runs: int, warmup: int,
                     names: tuple[str, ...] = VARIANTS) -> dict[str, dict]:
    """:func:`round_robin` of the variants ``names``; round r uses batch r mod len(batches)."""
    def calls(r):
        padded, dynamic = batches[r % len(batches)]
        args = (padded["input_ids"], padded["attention_mask"], padded.get("token_type_ids"))
        fns = {"dense_padded": lambda: dense(**padded), "dense_dynamic": lambda: dense(**dynamic),
               "top_masked": lambda: top(*args), "top_drop": lambda: prune_forward(top, *args)}
        return {name: fns[name] for name in names}

    return round_robin(calls, runs, warmup, synchronizer(next(top.parameters()).device))


@torch.inference_mode()
def drop_flops(top, batches) -> dict:
    """``flops_figures`` of what top_drop computed, against dense at real and padded length."""
    kept = torch.cat([prune_forward(top, p["input_ids"], p["attention_mask"],
                                    p.get("token_type_ids")).kept.cpu() for p, _ in batches])
    lengths = torch.cat([p["attention_mask"].sum(-1).cpu() for p, _ in batches])
    pad_to = batches[0][0]["input_ids"].shape[1]
    figures = flops_figures(kept, lengths, top.dims, pad_to)
    return {k: figures[k] for k in ("sparsity_real", "reduction_real", "reduction_padded",
                                    "mean_length")} | {
        "max_seq_length": int(pad_to), "kept_per_layer": kept.double().mean(0).tolist()}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else the platform's: timings compare on one CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.lower().startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def machine_load() -> dict:
    """The 1, 5 and 15 min load averages and ``cpu_count``: latencies move with them."""
    return {"loadavg": list(os.getloadavg()), "cpu_count": os.cpu_count()}


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({os.cpu_count()} cores)"


def run_benchmark(settings: BenchSettings, top, tokenizer, dense=None,
                  workdir: str | None = None) -> dict:
    """Time the variants of ``settings.engine`` at every batch size; a JSON-ready dict, the
    machine and its load before and after beside the timings. ``dense``: a torch baseline to
    reuse (default: ``prepare_dense``); ``workdir``: onnxruntime keeps its graphs there
    (default: a temporary folder, and ``graphs`` is None). Only ``top``'s gates change
    (``settings.sparsity``)."""
    pad_to = max_seq_length(settings)
    pad_id = top.config.pad_token_id or 0
    top.to(settings.device)
    encoded = benchmark_inputs(settings, tokenizer, max(settings.batch_sizes) * settings.runs)
    if settings.sparsity is not None:
        set_eval_sparsity(top, real_lengths(encoded), settings.sparsity)
    # after set_eval_sparsity: the copies and graphs have its gates
    if settings.engine == "onnxruntime":
        from .ort import ort_engine  # lazy: onnxruntime is optional
        info, time_batches = ort_engine(top, settings, workdir)
    else:
        dense = dense if dense is not None else prepare_dense(top, settings.onednn, settings.dtype)
        timed = timed_copy(top, settings.onednn, settings.dtype)
        info, time_batches = {}, functools.partial(_batch_row, top, timed, dense, settings)
    onednn = settings.engine == "torch" and resolve_onednn(settings.onednn, settings.device,
                                                           settings.dtype)
    results = {"settings": dict(asdict(settings), onednn=onednn), "engine": settings.engine,
               "threads": torch.get_num_threads(), "device": _device_name(settings.device),
               "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
               "platform": platform.platform(), "load_before": machine_load(),
               "model": _model_summary(top), **info, "batches": []}
    for bs in settings.batch_sizes:
        batches = make_batches(encoded, bs, settings.runs, pad_id, pad_to, settings.device)
        results["batches"].append(time_batches(batches))
    results["load_after"] = machine_load()
    return results


def _model_summary(top) -> dict:
    d = top.dims
    return {"model_type": top.config.model_type, "layers": d.num_layers, "hidden": d.hidden,
            "heads": d.heads, "intermediate": d.intermediate,
            "prune_location": list(top.prune.prune_location), "bin_num": top.prune.bin_num}


def timing_row(top, batches, time_fn, engine: str) -> dict:
    """A benchmark row at one batch size from ``time_fn()``'s round-robin times: medians (ms),
    throughput, :func:`drop_flops`, the 1-min load before and after, and ``speedup`` and
    ``ratio_real`` (also in CPU time) of the ``engine``'s :data:`PAIRS`."""
    load = machine_load()["loadavg"][0]  # other processes distort timings: keep the load
    times = time_fn()
    bs = batches[0][0]["input_ids"].shape[0]
    row = {"batch_size": bs, "num_batches": len(batches), **drop_flops(top, batches),
           "loadavg_1min": [load, machine_load()["loadavg"][0]]}
    lat = row["latency_ms"] = {k: 1e3 * statistics.median(v) for k, v in times["wall"].items()}
    cpu = row["cpu_ms"] = {k: 1e3 * statistics.median(v) for k, v in times["cpu"].items()}
    row["throughput"] = {k: bs * 1e3 / v for k, v in lat.items()}
    dense, drop = PAIRS[engine]
    row["speedup"] = lat[dense] / lat[drop]
    row["ratio_real"] = row["speedup"] / row["reduction_real"]
    row["ratio_real_cpu"] = cpu[dense] / cpu[drop] / row["reduction_real"]
    return row


def _batch_row(top, timed, dense, settings: BenchSettings, batches) -> dict:
    """Latency, throughput, speed-ups and their ratio to the FLOPs reduction at one batch size."""
    names = VARIANTS if settings.padded else PAIRS["torch"]
    row = timing_row(top, batches, lambda: time_round_robin(
        batches, timed, dense, settings.runs, settings.warmup, names), "torch")
    lat = row["latency_ms"]
    row["speedup_vs_dynamic"] = row["speedup"]
    if "dense_padded" in lat:
        row["speedup_vs_padded"] = lat["dense_padded"] / lat["top_drop"]
        row["ratio_padded"] = row["speedup_vs_padded"] / row["reduction_padded"]
    row["profile"] = profile_sections(timed, batches[0][1], min(PROFILE_REPEATS, settings.runs))
    logger.info("batch %d: %s", row["batch_size"], {k: round(v, 2) for k, v in lat.items()})
    return row
