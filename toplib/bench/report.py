"""``toplib bench``: the command line, and the report it prints: the timing rows of either
engine as pandas tables (markdown where ``tabulate`` is installed)."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from importlib.util import find_spec

import pandas as pd
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
from ..export.runtime import check_output_file
from ..hf import check_sequence_length
from .models import build_model, prepare_dense
from .timing import PAIRS, BenchSettings, max_seq_length, run_benchmark

OVERHEAD_SECTIONS = ("embeddings", "gates", "importance", "gather", "head")
FIGURES = ("sparsity_real", "reduction_real", "reduction_padded", "speedup", "ratio_real",
           "ratio_real_cpu", "speedup_vs_padded", "ratio_padded", "label_agreement", "load_before",
           "load_after", "profile.ffn_fit.fixed_ms", "profile.ffn_fit.per_row_ms",
           "profile.ffn_fit.dense_layer_ms")
"""The figures of each batch row the report shows, as :func:`pandas.json_normalize` names them."""
LIST_KNOBS = ("length", "sparsity", "batch_sizes")  # comma lists on the command line
PRUNE_KNOBS = ("bin_num", "prune_location")


def render(frame: pd.DataFrame) -> str:
    """``frame`` as a markdown table if ``tabulate`` is installed, else as pandas' text."""
    if find_spec("tabulate"):  # NaN as None: tabulate shows it as missingval
        return frame.astype(object).where(frame.notna(), None).to_markdown(
            index=False, floatfmt=".5g", missingval="-")
    return frame.to_string(index=False, float_format="{:.5g}".format, na_rep="-")


def format_report(results: dict) -> str:
    """One :func:`run_benchmark` result (either engine) as text: the model, inputs and
    machine, then each of :func:`report_tables` under its title, as :func:`render` prints it."""
    s, m = results["settings"], results["model"]
    engine = (f"onnxruntime {results['onnxruntime']} {results['quantize']}"
              if "onnxruntime" in results else s.get("dtype", "float32"))
    lines = [f"{m['model_type']} {m['layers']}x{m['hidden']}, prune layers "
             f"{m['prune_location'][0]}..{m['prune_location'][-1]} | {s['task']} | length "
             f"{s['length'] or 'as is'}, padded to {results['batches'][0]['max_seq_length']} | "
             f"{results.get('device', 'CPU')} | {results['threads']} threads | {engine}"
             f"{' | oneDNN linears' if s['onednn'] else ''} | median of {s['runs']} runs"]
    if "load_before" in results:  # results written before the machine was recorded lack it
        from ..viz.plots.speed import load_note  # lazy: matplotlib only where a report prints
        lines.append(load_note([results]))
    if results.get("cpu_flags"):  # which low-precision instructions the timings had
        lines.append("CPU: " + ", ".join(f"{k} {'yes' if v else 'no'}"
                                         for k, v in results["cpu_flags"].items()))
    for title, table in report_tables(results).items():
        lines += ["", title, render(table)]
    return "\n".join(lines)


def report_tables(results: dict) -> dict[str, pd.DataFrame]:
    """{title: table} of one :func:`run_benchmark` result: the medians of every (batch size,
    variant), the :data:`FIGURES` by batch size and (torch) where the time goes."""
    dense = PAIRS[results.get("engine", "torch")][0]
    timing = pd.DataFrame([dict(batch=b["batch_size"], variant=name, latency_ms=ms,
                                cpu_ms=b["cpu_ms"][name], ex_per_s=b["throughput"][name],
                                speedup=b["latency_ms"][dense] / ms)
                           for b in results["batches"] for name, ms in b["latency_ms"].items()])
    rows = pd.json_normalize(results["batches"]).set_index("batch_size")
    rows["load_before"], rows["load_after"] = zip(*rows.pop("loadavg_1min"))
    figures = rows[[c for c in FIGURES if c in rows]].T.add_prefix("batch ").rename_axis("figure")
    tables = {f"latency per batch (ms, median); speedup over {dense}:": timing,
              "by batch size: ratio = speedup / FLOPs reduction (_cpu: in CPU time); load: 1-min "
              "average; ffn_fit: FFN ms per layer = fixed_ms + per_row_ms x tokens, fixed_ms "
              "being what pruning tokens cannot remove:": figures.reset_index()}
    if "profile" in results["batches"][0]:
        tables["where the time goes (ms per forward, median; toplib loop, dense = no pruning; "
               f"overhead outside the FLOPs model: {', '.join(OVERHEAD_SECTIONS)}):"] = pd.concat(
            {b["batch_size"]: _profile(b["profile"]) for b in results["batches"]},
            names=["batch", "section"]).reset_index()
    return tables


def _profile(profile: dict) -> pd.DataFrame:
    """Sections by dense time: ms of each path, speed-up, FLOPs reduction; overhead, total."""
    table = pd.DataFrame({"dense_ms": profile["dense"], "drop_ms": profile["drop"]}).fillna(0.0)
    table = table.sort_values("dense_ms", ascending=False)
    table["flops_reduction"] = pd.Series(profile["flops_reduction"])
    table["speedup"] = (table["dense_ms"] / table["drop_ms"]).where(table["flops_reduction"] > 0)
    overhead = table[table.index.isin(OVERHEAD_SECTIONS)].sum()
    table.loc["total"] = table.sum()[["dense_ms", "drop_ms"]]
    table.loc["overhead"] = overhead[["dense_ms", "drop_ms"]]
    return table


def benchmark_points(results: list[dict]) -> list[dict]:
    """One flat row per (benchmark, batch size) of :func:`run_benchmark` results."""
    return [dict(length=b["mean_length"], sparsity=b["sparsity_real"], batch_size=b["batch_size"],
                 speedup_vs_dynamic=b["speedup_vs_dynamic"], speedup_vs_padded=b.get("speedup_vs_padded"),
                 reduction_real=b["reduction_real"], ratio_real=b["ratio_real"],
                 latency_ms=b["latency_ms"], load_1min=b["loadavg_1min"])
            for r in results for b in r["batches"]]


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
    sweep = _sweep(args)  # the device, and the engine's dtype, device and --quantize
    check("plot_dir", args.plot_dir, args.plot_dir is None or args.engine == "torch",
          "latency plots are drawn for --engine torch only")
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
    # one dense copy for the sweep (onnxruntime exports its own)
    dense = prepare_dense(top, args.onednn, args.dtype) if args.engine == "torch" else None
    all_results = []
    for settings in sweep:
        all_results.append(run_benchmark(settings, top, tok, dense))
        print(format_report(all_results[-1]), "\n", flush=True)
    _write_outputs(all_results, args.json, args.plot_dir)
    return all_results


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
        check_output_file(json_path, "json", suffix="")
    if plot_dir:
        existing = plot_dir
        while not os.path.exists(existing):  # the deepest part that exists must be a folder
            existing = os.path.dirname(os.path.abspath(existing))
        check("plot_dir", plot_dir, os.path.isdir(existing) and os.access(existing, os.W_OK),
              f"{existing!r} must be a writable folder")


def _write_outputs(all_results: list[dict], json_path: str | None, plot_dir: str | None) -> None:
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"command": shlex.join(["toplib", *sys.argv[1:]]), "results": all_results},
                      f, indent=1)
    if plot_dir:
        from ..viz.plots import plot_latency_vs_length, plot_latency_vs_sparsity
        os.makedirs(plot_dir, exist_ok=True)
        for fn in (plot_latency_vs_length, plot_latency_vs_sparsity):  # latency_vs_<x>.png
            path = os.path.join(plot_dir, fn.__name__.removeprefix("plot_") + ".png")
            fn(all_results).savefig(path, dpi=120, bbox_inches="tight")
