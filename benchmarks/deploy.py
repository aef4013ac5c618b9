"""Where users deploy: toplib's token dropping against the dense model, per dtype and engine.

Every path times the dense model and toplib's token-dropping model on the same real inputs
(round-robin, medians) and divides the speed-up by the real-length FLOPs reduction:

* torch float32 and torch bfloat16 (``toplib bench --dtype``; bf16 only where the CPU has
  bf16 instructions), oneDNN linears prepacked in that dtype, dense with padding removed;
* onnxruntime float32 and int8 (``toplib bench --engine onnxruntime [--quantize int8]``):
  the exported token-dropping graph against the same checkpoint exported dense and
  optimised by onnxruntime's transformer optimizer.

Then the fastest toplib path against the fastest dense path, at each batch size.

    python benchmarks/deploy.py bert-base   # bert-base config, 20news at 128 tokens, sparsity 0.6
    python benchmarks/deploy.py trained     # the quickstart checkpoint, its validation texts

Writes benchmarks/results/deploy_<preset>.{json,md,png}; the targets are issue #14's.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# relative to the working directory: the records name no machine's folders
DATA = os.environ.get("TOPLIB_DATA_DIR", os.path.relpath(os.path.join(ROOT, "..", "shared", "data")))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
PRESETS = {
    "bert-base": dict(model=dict(config="bert-base", num_labels=20),
                      settings=dict(task="20news", data_dir=os.path.join(DATA, "20news"),
                                    length=128, sparsity=0.6)),
    "trained": dict(model=dict(checkpoint=os.path.join(ROOT, "runs", "rotten_tomatoes", "top")),
                    settings=dict(task="rotten_tomatoes")),
}
ROUNDS = {1: (20, 3), 32: (3, 1)}  # batch size -> (timed runs, warm-up runs)
PATHS = (("torch", "float32", None), ("torch", "bfloat16", None),
         ("onnxruntime", "float32", None), ("onnxruntime", "float32", "int8"))
TARGETS = {"torch float32": {1: 0.85, 32: 0.95}, "torch bfloat16": {1: 0.8, 32: 0.95},
           "onnxruntime float32": {32: 0.8}, "onnxruntime int8": {32: 0.8}}
"""Least share of the FLOPs reduction the speed-up must reach; onnxruntime at batch 1 must
only beat its dense model."""


def path_name(engine: str, dtype: str, quantize: str | None) -> str:
    return f"{engine} {quantize or dtype}"


def has_bf16() -> bool:
    from toplib.hf.precision import cpu_flags
    flags = cpu_flags()
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def time_path(engine: str, dtype: str, quantize: str | None, bs: int, preset: dict) -> dict:
    """One benchmark (one batch size) of one path, as ``toplib bench`` gives it."""
    from toplib.bench import BenchSettings, build_model, run_benchmark
    top, tok = build_model(**preset["model"])
    runs, warmup = ROUNDS[bs]
    settings = BenchSettings(**preset["settings"], batch_sizes=(bs,), runs=runs, warmup=warmup,
                             dtype=dtype, padded=False, engine=engine, quantize=quantize)
    return run_benchmark(settings, top, tok)


def summary_row(name: str, result: dict) -> dict:
    """Dense and toplib latency, speed-up, FLOPs reduction, ratio and target of one result."""
    from toplib.bench.timing import PAIRS
    row = result["batches"][0]
    dense, drop = (row["latency_ms"][k] for k in PAIRS[result.get("engine", "torch")])
    bs, target = row["batch_size"], TARGETS[name].get(row["batch_size"])
    ratio = dense / drop / row["reduction_real"]
    ok = ratio >= target if target is not None else dense > drop
    return dict(path=name, batch_size=bs, dense_ms=dense, toplib_ms=drop, speedup=dense / drop,
                reduction=row["reduction_real"], ratio=ratio, target=target, met=bool(ok),
                load=row["loadavg_1min"])


def fastest(rows: list[dict]) -> list[dict]:
    """Per batch size: toplib's fastest path against the fastest dense path of all."""
    out = []
    for bs in sorted({r["batch_size"] for r in rows}):
        at = [r for r in rows if r["batch_size"] == bs]
        top, dense = min(at, key=lambda r: r["toplib_ms"]), min(at, key=lambda r: r["dense_ms"])
        out.append(dict(batch_size=bs, toplib=top["path"], toplib_ms=top["toplib_ms"],
                        dense=dense["path"], dense_ms=dense["dense_ms"],
                        speedup=dense["dense_ms"] / top["toplib_ms"],
                        met=top["toplib_ms"] < dense["dense_ms"]))
    return out


def markdown(rows: list[dict], best: list[dict], machine: str, command: str) -> str:
    lines = [f"Command: `{command}`", "", f"Machine: {machine}", "",
             "| path | batch | dense ms | toplib ms | speed-up | FLOPs reduction | ratio | "
             "target | met |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = f">= {r['target']}" if r["target"] is not None else "faster"
        lines.append(f"| {r['path']} | {r['batch_size']} | {r['dense_ms']:.1f} | "
                     f"{r['toplib_ms']:.1f} | {r['speedup']:.2f}x | {r['reduction']:.2f}x | "
                     f"{r['ratio']:.2f} | {target} | {'yes' if r['met'] else 'no'} |")
    lines += ["", "| batch | fastest toplib | ms | fastest dense | ms | speed-up | met |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {b['batch_size']} | {b['toplib']} | {b['toplib_ms']:.1f} | {b['dense']} | "
              f"{b['dense_ms']:.1f} | {b['speedup']:.2f}x | {'yes' if b['met'] else 'no'} |"
              for b in best]
    return "\n".join(lines)


def plot(rows: list[dict], title: str, path: str) -> None:
    """One panel per batch size: dense and toplib latency of every path, ratio annotated."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = sorted({r["batch_size"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 3.6), squeeze=False)
    for ax, bs in zip(axes[0], sizes):
        at = [r for r in rows if r["batch_size"] == bs]
        y = range(len(at))
        ax.barh([i + 0.2 for i in y], [r["dense_ms"] for r in at], 0.4, label="dense",
                color="#9a9a9a")
        ax.barh([i - 0.2 for i in y], [r["toplib_ms"] for r in at], 0.4,
                label="toplib (tokens dropped)", color="#2a7ab9")
        for i, r in zip(y, at):
            ax.text(r["toplib_ms"], i - 0.2, f"  {r['speedup']:.2f}x = {r['ratio']:.2f} of "
                    f"{r['reduction']:.2f}x", va="center", fontsize=8)
        ax.set_yticks(list(y), [r["path"] for r in at])
        ax.invert_yaxis()
        ax.set_xlabel("median latency per batch (ms)")
        ax.set_title(f"batch {bs}")
        ax.set_xlim(0, 1.35 * max(max(r["dense_ms"], r["toplib_ms"]) for r in at))
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default=",".join(path_name(*p) for p in PATHS),
                        help="comma list of the paths to time (default: all)")
    parser.add_argument("--suffix", default="", help="appended to the output names")
    args = parser.parse_args(argv)
    from toplib.bench import cpu_model
    from toplib.hf.precision import cpu_flags
    torch.set_num_threads(args.threads)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    wanted = args.paths.split(",")
    unknown = set(wanted) - {path_name(*p) for p in PATHS}
    if unknown:
        parser.error(f"--paths: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(path_name(*p) for p in PATHS)}")
    paths = [p for p in PATHS if path_name(*p) in wanted and (p[1] != "bfloat16" or has_bf16())]
    results, rows = [], []
    for bs in sizes:
        for engine, dtype, quantize in paths:
            results.append(time_path(engine, dtype, quantize, bs, PRESETS[args.preset]))
            rows.append(summary_row(path_name(engine, dtype, quantize), results[-1]))
            print(json.dumps(rows[-1]), flush=True)
    flags = ", ".join(k for k, v in cpu_flags().items() if v) or "none"
    machine = f"{cpu_model()} ({flags}); {args.threads} threads"
    best = fastest(rows)
    out = os.path.join(RESULTS, f"deploy_{args.preset}{args.suffix}")
    command = shlex.join(["python", "benchmarks/deploy.py", *(argv or sys.argv[1:])])
    with open(out + ".json", "w") as f:
        json.dump({"command": command, "machine": machine,
                   "summary": rows, "fastest": best, "results": results}, f, indent=1)
    text = markdown(rows, best, machine, command)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")
    plot(rows, f"{args.preset}: {machine}", out + ".png")
    print(text)
    return {"summary": rows, "fastest": best}


if __name__ == "__main__":
    main()
