"""Speed figures from :func:`toplib.bench.run_benchmark` dicts."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import FuncFormatter, NullFormatter

VARIANT_LABELS = {
    "dense_padded": "dense, padded to max length",
    "dense_dynamic": "dense, padding removed",
    "top_masked": "ToP, masked (release)",
    "top_drop": "ToP, tokens dropped (toplib)",
}


def _rows(results: list[dict]) -> list[dict]:
    """Flatten benchmark results to one row per (result, batch size, variant)."""
    return [{"length": b["mean_length"], "batch_size": b["batch_size"],
             "sparsity": b["sparsity_real"], "variant": variant, "latency_ms": ms}
            for res in results for b in res["batches"] for variant, ms in b["latency_ms"].items()]


def load_note(results: list[dict]) -> str:
    """The CPU, threads, cores and 1-min load average before and after ``results`` were timed.

    Example:
        >>> r = {"cpu_model": "AMD EPYC", "threads": 1, "cpu_count": 2,
        ...      "load_before": {"loadavg": [2.5, 2, 1]}, "load_after": {"loadavg": [3.0, 2, 1]}}
        >>> load_note([r])
        'AMD EPYC, 1 torch thread(s) of 2 cores; 1-min load average 2.5 before, 3.0 after'
    """
    first, last = results[0], results[-1]
    if "load_before" not in first:
        return f"{first.get('device', 'CPU')}, {first.get('threads')} torch thread(s); load not recorded"
    loads = [r[k]["loadavg"][0] for r in results for k in ("load_before", "load_after") if k in r]
    span = (f" (range {min(loads):.1f}-{max(loads):.1f} over {len(results)} benchmarks)"
            if len(results) > 1 else "")
    return (f"{first.get('cpu_model', 'CPU')}, {first['threads']} torch thread(s) of "
            f"{first.get('cpu_count')} cores; 1-min load average "
            f"{first['load_before']['loadavg'][0]:.1f} before, "
            f"{last['load_after']['loadavg'][0]:.1f} after{span}")


def _footer(fig, results: list[dict]) -> None:
    """The machine and its load under the figure: the latencies above depend on both."""
    fig.text(0.5, -0.01, "Timed on " + load_note(results), ha="center", va="top", fontsize=8,
             color="dimgray")


def _sparse_log_label(value: float, _pos=None) -> str:
    """Label minor log ticks 2, 3 and 5 (x 10^k) only, so labels do not crowd."""
    lead = f"{value:.0e}"[0]
    return f"{value:g}" if lead in "235" else ""


def _plot_latency(results: list[dict], x: str, xlabel: str, log_x: bool):
    sns.set_theme(style="whitegrid")
    rows = _rows(results)
    sizes = sorted({r["batch_size"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4), squeeze=False)
    palette = dict(zip(VARIANT_LABELS, sns.color_palette("deep", len(VARIANT_LABELS))))
    for ax, bs in zip(axes[0], sizes):
        for variant, label in VARIANT_LABELS.items():
            pts = sorted((r[x], r["latency_ms"]) for r in rows
                         if r["batch_size"] == bs and r["variant"] == variant)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label, color=palette[variant])
        ax.set(xlabel=xlabel, ylabel="latency (ms, median)", title=f"batch size {bs}", yscale="log")
        # Plain numbers on log axes ("60", not "6x10^1"); minor labels only where they help.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(_sparse_log_label))
        if log_x:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r[x] for r in rows if r["batch_size"] == bs}))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{results[0]['settings']['task']}: median latency of one forward pass, "
                 f"dense vs. ToP ({results[0]['settings']['runs']} timed rounds a point)")
    fig.tight_layout()
    _footer(fig, results)
    return fig


def plot_latency_vs_length(results: list[dict]):
    """Latency of the four variants against real input length, one panel per batch size."""
    return _plot_latency(results, "length", "real tokens per input", log_x=True)


def plot_latency_vs_sparsity(results: list[dict]):
    """As :func:`plot_latency_vs_length`, against the measured real-length FLOPs sparsity."""
    return _plot_latency(results, "sparsity", "FLOPs sparsity (real length)", log_x=False)


def plot_flops_vs_latency(results: list[dict], variants=("top_drop", "top_masked")):
    """ToP / dense latency against ToP / dense FLOPs; on the diagonal latency follows FLOPs."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(8.2, 4.4))
    sizes = sorted({b["batch_size"] for r in results for b in r["batches"]})
    colors = dict(zip(sizes, sns.color_palette("deep", len(sizes))))
    markers = dict(zip(variants, "os^D"))
    for res in results:
        for b in res["batches"]:
            for v in variants:
                ax.scatter(1 / b["reduction_real"],
                           b["latency_ms"][v] / b["latency_ms"]["dense_dynamic"],
                           color=colors[b["batch_size"]], marker=markers[v], s=40, alpha=0.85)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=f"batch size {bs}")
               for bs, c in colors.items()]
    handles += [plt.Line2D([], [], color="grey", marker=markers[v], linestyle="",
                           label=VARIANT_LABELS.get(v, v)) for v in variants]
    handles.append(plt.Line2D([], [], color="black", linestyle="--",
                              label="latency proportional to FLOPs"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set(xlabel="ToP FLOPs / dense FLOPs (real length)",
           ylabel="ToP latency / dense latency\n(padding removed)", xlim=(0, 1.05), ylim=(0, None),
           title=f"{results[0]['settings']['task']}: FLOPs against measured latency")
    fig.tight_layout()
    _footer(fig, results)
    return fig
