"""``toplib bench``: the command line, and the tables it prints."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys

import torch

from ..core.config import (
    PruneConfig,
    add_knob_arguments,
    check,
    check_device,
    parse_layers,
    parse_list,
)
from ..data import get_task
from ..hf import check_sequence_length
from .models import build_model, prepare_dense
from .timing import VARIANTS, BenchSettings, max_seq_length, run_benchmark

OVERHEAD_SECTIONS = ("embeddings", "gates", "importance", "gather", "head")
ENGINES = ("torch", "onnxruntime")
LIST_KNOBS = ("length", "sparsity", "batch_sizes")  # comma lists on the command line
PRUNE_KNOBS = ("bin_num", "prune_location")


def format_report(results: dict) -> str:
    """A readable table of one :func:`run_benchmark` result, with where the time goes."""
    s, m = results["settings"], results["model"]
    lines = [f"{m['model_type']} {m['layers']}x{m['hidden']}, prune layers "
             f"{m['prune_location'][0]}..{m['prune_location'][-1]} | {s['task']} | length "
             f"{s['length'] or 'as is'} | {results.get('device', 'CPU')} | {results['threads']} "
             f"threads | {s.get('dtype', 'float32')}{' | oneDNN linears' if s['onednn'] else ''}"
             f" | median of {s['runs']} runs"]
    if "load_before" in results:  # results written before the machine was recorded lack it
        from ..viz.plots.speed import load_note  # lazy: matplotlib only where a report prints
        lines.append(load_note([results]))
    if results.get("cpu_flags"):  # which low-precision instructions the timings had
        lines.append("CPU: " + ", ".join(f"{k} {'yes' if v else 'no'}"
                                         for k, v in results["cpu_flags"].items()))
    for row in results["batches"]:
        lat = row["latency_ms"]
        lines += ["", f"batch {row['batch_size']}: sparsity {row['sparsity_real']:.3f} (real "
                      f"length); FLOPs reduction {row['reduction_real']:.2f}x real, "
                      f"{row['reduction_padded']:.2f}x vs {row['max_seq_length']} padded; "
                      f"load avg {row['loadavg_1min'][0]:.1f}",
                  f"  {'variant':<14}{'latency ms':>12}{'ex/s':>10}{'speedup':>10}{'cpu ms':>12}"]
        lines += [f"  {name:<14}{lat[name]:>12.2f}{row['throughput'][name]:>10.1f}"
                  f"{lat['dense_dynamic'] / lat[name]:>9.2f}x{row['cpu_ms'][name]:>12.2f}"
                  for name in VARIANTS if name in lat]
        padded = (f"; {row['speedup_vs_padded']:.2f}x over dense_padded = "
                  f"{row['ratio_padded']:.2f} of the padded one" if "ratio_padded" in row else "")
        lines.append(f"  top_drop: {row['speedup_vs_dynamic']:.2f}x over dense_dynamic = "
                     f"{row['ratio_real']:.2f} of the real FLOPs reduction (CPU time: "
                     f"{row['ratio_real_cpu']:.2f}){padded}")
        lines += _profile_lines(row["profile"])
    return "\n".join(lines)


def benchmark_points(results: list[dict]) -> list[dict]:
    """One flat row per (benchmark, batch size) of :func:`run_benchmark` results."""
    return [dict(length=b["mean_length"], sparsity=b["sparsity_real"], batch_size=b["batch_size"],
                 speedup_vs_dynamic=b["speedup_vs_dynamic"], speedup_vs_padded=b.get("speedup_vs_padded"),
                 reduction_real=b["reduction_real"], ratio_real=b["ratio_real"],
                 latency_ms=b["latency_ms"], load_1min=b["loadavg_1min"])
            for r in results for b in r["batches"]]


def _profile_lines(profile: dict) -> list[str]:
    dense, drop, flops = profile["dense"], profile["drop"], profile["flops_reduction"]
    lines = ["  where the time goes (ms per forward, median; toplib loop, dense = no pruning):",
             f"    {'section':<12}{'dense':>9}{'drop':>9}{'speedup':>9}{'FLOPs':>8}"]
    for name in sorted(set(dense) | set(drop), key=lambda k: -dense.get(k, 0.0)):
        d, p = dense.get(name, 0.0), drop.get(name, 0.0)
        ratio = f"{d / p:.2f}x" if name in flops and p > 0 else "-"
        lines.append(f"    {name:<12}{d:>9.2f}{p:>9.2f}{ratio:>9}"
                     f"{(f'{flops[name]:.2f}x' if name in flops else '-'):>8}")
    overhead, total = sum(drop.get(k, 0.0) for k in OVERHEAD_SECTIONS), sum(drop.values())
    fit = profile["ffn_fit"]
    lines += [f"    {'total':<12}{sum(dense.values()):>9.2f}{total:>9.2f}",
              f"    overhead outside the FLOPs model: {overhead:.2f} ms "
              f"({100 * overhead / total:.0f}% of drop); FFN time per layer = "
              f"{max(fit['fixed_ms'], 0):.2f} ms fixed + {1e3 * fit['per_row_ms']:.1f} us/token "
              f"(fixed: {max(100 * fit['fixed_ms'] / fit['dense_layer_ms'], 0):.0f}% of a dense "
              f"layer's FFN, a cost that pruning tokens cannot remove)"]
    return lines


def register_cli(subparsers) -> None:
    """Add the ``bench`` subcommand (``func=main``) to an argparse subparsers object."""
    p = subparsers.add_parser("bench", help="time dense vs. masked vs. token-dropping ToP")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint",
                     help="toplib or Hugging Face checkpoint (default: offline MiniLM)")
    src.add_argument("--config",
                     help="random weights: bert-base, or a Hugging Face config path/name")
    p.add_argument("--tokenizer", help="tokenizer of --config models (default: offline MiniLM)")
    add_knob_arguments(p, dataclasses.fields(BenchSettings), keep_defaults=True, as_text=LIST_KNOBS)
    structure = [f for f in dataclasses.fields(PruneConfig) if f.name in PRUNE_KNOBS]
    add_knob_arguments(p, structure, as_text=("prune_location",))  # default: the checkpoint's
    p.add_argument("--engine", choices=ENGINES, default="torch",
                   help="torch: the four PyTorch variants; onnxruntime: the exported "
                        "token-dropping graph against onnxruntime's optimised dense BERT")
    p.add_argument("--quantize", choices=["int8"],
                   help="onnxruntime only: dynamic int8 quantization of both graphs")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    p.add_argument("--json", help="write all results to this JSON file")
    p.add_argument("--plot-dir", help="write latency plots here")
    p.set_defaults(func=main)


def main(args) -> list[dict]:
    """The ``bench`` subcommand, one table per (length, sparsity); every flag and output path
    is checked before a model loads."""
    check("threads", args.threads, args.threads is None or args.threads >= 1,
          "must be an integer >= 1 (default: torch's, all cores)")
    if args.config and not args.sparsity:
        raise ValueError("--config builds random weights: give --sparsity")
    sweep = _sweep(args)  # the device too
    _check_engine(args)
    _check_outputs(args.json, args.plot_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    given = {k: v for k, v in (("bin_num", args.bin_num),
                               ("prune_location", parse_layers(args.prune_location)))
             if v is not None}
    prune = PruneConfig(**given) if given else None
    top, tok = build_model(args.checkpoint, args.config, args.tokenizer, prune,
                           num_labels=max(2, get_task(args.task).num_labels), seed=args.seed)
    for settings in sweep:  # the inputs must fit the model's position embeddings
        if settings.length:
            check_sequence_length(settings.length, top.config, "length")
        check_sequence_length(max_seq_length(settings), top.config, "max_seq_length")
    torch.manual_seed(args.seed)
    top.to(sweep[0].device)
    if args.engine == "onnxruntime":
        from .ort import format_ort_report, run_ort_benchmark
        run = lambda settings: run_ort_benchmark(settings, top, tok, args.quantize)  # noqa: E731
        show = format_ort_report
    else:
        dense = prepare_dense(top, args.onednn, args.dtype)  # one dense copy for the sweep
        run, show = (lambda settings: run_benchmark(settings, top, tok, dense)), format_report
    all_results = []
    for settings in sweep:
        all_results.append(run(settings))
        print(show(all_results[-1]), "\n", flush=True)
    _write_outputs(all_results, args.json, args.plot_dir if args.engine == "torch" else None)
    return all_results


def _check_engine(args) -> None:
    """--quantize is onnxruntime's, which runs float32 graphs on the CPU."""
    if args.engine == "onnxruntime":
        check("dtype", args.dtype, args.dtype == "float32",
              "float32 with --engine onnxruntime (use --quantize int8 for int8)")
        check("device", args.device, args.device == "cpu", "cpu with --engine onnxruntime")
        check("plot_dir", args.plot_dir, args.plot_dir is None,
              "latency plots are drawn for --engine torch only")
    else:
        check("quantize", args.quantize, args.quantize is None,
              "None with --engine torch (int8 is --engine onnxruntime --quantize int8)")


def _sweep(args) -> list[BenchSettings]:
    """One checked BenchSettings per (length, sparsity) pair of the comma lists."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchSettings)}
    given["batch_sizes"] = tuple(parse_list(args.batch_sizes, int, "batch_sizes"))
    given["device"] = check_device(args.device)
    get_task(args.task)  # an unknown task is named before anything loads
    return [BenchSettings(**dict(given, length=length, sparsity=sparsity))
            for length in parse_list(args.length, int, "length") or [None]
            for sparsity in parse_list(args.sparsity, float, "sparsity") or [None]]


def _check_outputs(json_path: str | None, plot_dir: str | None) -> None:
    """--json's folder must exist and take files; --plot-dir must be (or become) a folder."""
    if json_path:
        folder = os.path.dirname(os.path.abspath(json_path))
        check("json", json_path, not os.path.isdir(json_path), "give a file name, not a folder")
        check("json", json_path, os.path.isdir(folder) and os.access(folder, os.W_OK),
              f"its folder {folder!r} must exist and be writable")
    if plot_dir:
        existing = plot_dir
        while not os.path.exists(existing):  # the deepest part that exists must be a folder
            existing = os.path.dirname(os.path.abspath(existing))
        check("plot_dir", plot_dir, os.path.isdir(existing) and os.access(existing, os.W_OK),
              f"{existing!r} must be a writable folder")


def _write_outputs(all_results: list[dict], json_path: str | None, plot_dir: str | None) -> None:
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"command": shlex.join(sys.argv), "results": all_results}, f, indent=1)
    if plot_dir:
        from ..viz.plots import plot_latency_vs_length, plot_latency_vs_sparsity
        os.makedirs(plot_dir, exist_ok=True)
        for fn in (plot_latency_vs_length, plot_latency_vs_sparsity):  # latency_vs_<x>.png
            path = os.path.join(plot_dir, fn.__name__.removeprefix("plot_") + ".png")
            fn(all_results).savefig(path, dpi=120, bbox_inches="tight")
