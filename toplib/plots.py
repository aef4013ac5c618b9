"""Figures. Every ``plot_*`` function returns a matplotlib Figure (seaborn style).

The speed plots read the dicts :func:`toplib.bench.run_benchmark` returns (or the
``results`` list of a ``toplib bench --json`` file).
"""
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
    rows = []
    for res in results:
        for batch in res["batches"]:
            for variant, latency in batch["latency_ms"].items():
                rows.append({"length": batch["mean_length"], "batch_size": batch["batch_size"],
                             "sparsity": batch["sparsity_real"], "variant": variant,
                             "latency_ms": latency})
    return rows


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
            ax.set_xticks(sorted({p for p in (r[x] for r in rows if r["batch_size"] == bs)}))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_latency_vs_length(results: list[dict]):
    """Latency of the four variants against the inputs' real length, one panel per batch size.

    Args:
        results: ``run_benchmark`` dicts at several ``--length`` values.
    Returns:
        matplotlib Figure.
    """
    return _plot_latency(results, "length", "real tokens per input", log_x=True)


def plot_latency_vs_sparsity(results: list[dict]):
    """Latency against the measured real-length FLOPs sparsity, one panel per batch size.

    Args:
        results: ``run_benchmark`` dicts at several ``--sparsity`` values.
    Returns:
        matplotlib Figure.
    """
    return _plot_latency(results, "sparsity", "FLOPs sparsity (real length)", log_x=False)


# ---- training curves, kept tokens, ranking, sparsity sweep, reproduction ------------------
FIGURE_FORMATS = ("png", "svg")
SCORE_LABELS = {"accuracy": "accuracy", "f1": "F1", "matthews": "Matthews corr.",
                "pearson": "Pearson corr.", "spearman": "Spearman corr."}
METHOD_STYLES = {  # label, colour index, marker, line style
    "ToP": ("ToP", 0, "o", "-"),
    "attention": ("attention baseline (top tokens by teacher attention)", 1, "s", "--"),
    "random": ("random pruning", 2, "^", ":"),
}


def save_figure(fig, name: str, directory: str = "figures", formats=FIGURE_FORMATS,
                dpi: int = 150) -> list[str]:
    """Write ``fig`` as ``<directory>/<name>.png`` and ``.svg`` (vector); returns the paths.

    The SVG carries no date and a fixed id salt, so re-running with fixed seeds rewrites
    identical files.

    Example:
        >>> save_figure(plot_prune_rates(df), "03_prune_rates")  # doctest: +SKIP
        ['figures/03_prune_rates.png', 'figures/03_prune_rates.svg']
    """
    import os
    os.makedirs(directory, exist_ok=True)
    paths = []
    for fmt in formats:
        path = os.path.join(directory, f"{name}.{fmt}")
        metadata = {"Date": None} if fmt in ("svg", "pdf") else {}
        with plt.rc_context({"svg.hashsalt": "toplib"}):
            fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths


def _series(records: list[dict], kind: str, key: str):
    pts = [(r["step"], r[key]) for r in records if r.get("kind") == kind and r.get(key) is not None]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])


def _matrix_series(records: list[dict], kind: str, key: str):
    """Steps and a (steps, width) list of list-valued records (e.g. keep ratios)."""
    pts = [(r["step"], r[key]) for r in records if r.get("kind") == kind and r.get(key)]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training_curves(history: list[dict], prune_location=None):
    """Curves of a training run from its history records (``history.jsonl`` or a callback).

    Pruning runs get eight panels: fit loss (distillation or task), Lagrangian term,
    ranking-distillation loss, expected vs target (warmed-up) vs measured sparsity, the
    multipliers lambda_1 and lambda_2, expected keep ratio per prune location, evaluation
    score and measured keep ratio per layer. Fine-tuning runs get loss and score.

    Args:
        history: records with ``kind`` "train" / "eval" and ``step``.
        prune_location: layers of the keep-ratio curves (labels only).
    Returns:
        matplotlib Figure.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    pruning = any("expected_sparsity" in r for r in history if r.get("kind") == "train")
    panels = ["fit", "lagrangian", "rank", "sparsity", "lambda", "keep", "score", "measured_keep"] \
        if pruning else ["fit", "score"]
    ncols = 4 if pruning else 2
    nrows = len(panels) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    ax = dict(zip(panels, axes.flat))
    colors = sns.color_palette("deep", 10)
    fit_key = "distill_loss" if any("distill_loss" in r for r in history) else "task_loss"
    ax["fit"].plot(*_series(history, "train", fit_key), color=colors[0])
    ax["fit"].set(title="distillation loss" if fit_key == "distill_loss" else "task loss",
                  ylabel="loss")
    steps, scores = _series(history, "eval", "score")
    ax["score"].plot(steps, scores, marker="o", color=colors[3])
    ax["score"].set(title="evaluation score", ylabel="score")
    if pruning:
        ax["lagrangian"].plot(*_series(history, "train", "lagrangian_loss"), color=colors[1])
        ax["lagrangian"].set(title="Lagrangian term", ylabel="value")
        ax["rank"].plot(*_series(history, "train", "rank_loss"), color=colors[2])
        ax["rank"].set(title="ranking-distillation loss", ylabel="ARP-2 loss")
        s = ax["sparsity"]
        s.plot(*_series(history, "train", "expected_sparsity"), label="expected", color=colors[0])
        if any("measured_sparsity" in r for r in history):
            s.plot(*_series(history, "train", "measured_sparsity"), label="evaluation gates (batch)",
                   color=colors[2], alpha=0.6, linewidth=1)
        s.plot(*_series(history, "train", "target_sparsity"), "--", label="target (warm-up)",
               color="black")
        s.plot(*_series(history, "eval", "sparsity_real"), "o", label="measured (eval)",
               color=colors[3])
        s.set(title="FLOPs sparsity (real length)", ylabel="sparsity")
        s.legend(fontsize=8)
        for name, color in (("lambda_1", colors[4]), ("lambda_2", colors[5])):
            ax["lambda"].plot(*_series(history, "train", name), label=rf"$\{name}$", color=color)
        ax["lambda"].set(title="Lagrange multipliers", ylabel="value")
        ax["lambda"].legend(fontsize=8)
        _keep_lines(ax["keep"], *_matrix_series(history, "train", "expected_keep_ratio"),
                    prune_location, "expected keep ratio per prune layer")
        measured = _matrix_series(history, "eval", "keep_ratio")
        all_layers = range(len(measured[1][0])) if measured[1] else None
        _keep_lines(ax["measured_keep"], *measured, all_layers,
                    "measured keep ratio per layer (eval)", marker="o")
    for a in axes.flat:
        a.set_xlabel("training step")
    fig.tight_layout()
    return fig


def _keep_lines(ax, steps, matrix, layers, title, marker=None):
    if matrix:
        width = len(matrix[0])
        known = layers is not None and len(layers) == width
        labels = ([f"layer {x}" for x in layers] if known
                  else [f"prune location {j + 1}" for j in range(width)])
        palette = sns.color_palette("viridis", width)
        for j in range(width):
            ax.plot(steps, [row[j] for row in matrix], marker=marker, markersize=3,
                    color=palette[j], label=labels[j])
        ax.legend(fontsize=7, ncol=2)
    ax.set(title=title, ylabel="kept / real tokens", ylim=(-0.02, 1.05))


class LiveTrainingPlot:
    """A ``callback`` for ``toplib.train.prune``/``finetune`` that redraws the curves.

    The figure is redrawn in place (an IPython display handle) at every evaluation when
    ``live`` is True; records are collected in any case (``.records``).

    Example:
        >>> live = LiveTrainingPlot()                        # doctest: +SKIP
        >>> prune(task, teacher, out, config=c, callback=live)  # doctest: +SKIP
    """

    def __init__(self, live: bool = True, prune_location=None):
        self.live, self.prune_location = live, prune_location
        self.records: list[dict] = []
        self._handle = None

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        if self.live and record.get("kind") == "eval":
            self.redraw()

    def redraw(self) -> None:
        import io

        from IPython.display import Image, display
        fig = plot_training_curves(self.records, self.prune_location)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        image = Image(buffer.getvalue())
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)


def plot_kept_tokens(kept: list, titles: list[str] | None = None, max_tokens: int = 48):
    """Heatmaps of kept (green) and pruned (grey) tokens, tokens x layers, one per input.

    Args:
        kept: ``toplib.analysis.KeptTokens`` items; titles: one per item (optional).
        max_tokens: longer inputs are cut for readability.
    Returns:
        matplotlib Figure.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    sns.set_theme(style="white", context="notebook")
    n = min(max(len(k.tokens) for k in kept), max_tokens)
    fig, axes = plt.subplots(1, len(kept), figsize=(2.9 * len(kept) + 0.6, 0.22 * n + 1.6),
                             squeeze=False)
    cmap = ListedColormap(["#e3e3e3", "#4c9a5b"])
    for i, (ax, item) in enumerate(zip(axes[0], kept)):
        tokens = item.tokens[:max_tokens]
        matrix = item.kept[:, :len(tokens)].T.astype(float)  # (tokens, layers)
        ax.imshow(matrix, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_ylim(n - 0.5, -0.5)  # equal row heights across panels; short inputs end early
        ax.spines[:].set_visible(False)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
        ax.set_xticks(range(matrix.shape[1]), range(matrix.shape[1]), fontsize=8)
        ax.set_xticks([x - 0.5 for x in range(1, matrix.shape[1])], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(tokens))], minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("layer")
        if titles:
            ax.set_title(titles[i], fontsize=9)
    legend = [Patch(color="#4c9a5b", label="kept"), Patch(color="#e3e3e3", label="pruned")]
    fig.legend(handles=legend, loc="upper center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def plot_ranking_agreement(df, k: int = 10):
    """Kendall tau and NDCG@k of each layer's ranking against the teacher's final layer.

    Args:
        df: ``toplib.analysis.ranking_agreement`` frames concatenated with a ``model``
            column (e.g. "ToP", "ToP without rank distillation", "teacher").
    Returns:
        matplotlib Figure; layers whose ranking decides pruning are shaded.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    deciding = sorted(set(df.loc[df["decides_pruning"].astype(bool), "layer"]))
    palette = sns.color_palette("deep", df["model"].nunique())
    for ax, column, label in ((axes[0], "kendall_tau", "Kendall tau-b"),
                              (axes[1], "ndcg", f"NDCG@{k}")):
        for layer in deciding:
            ax.axvspan(layer - 0.4, layer + 0.4, color="#f0e6c8", zorder=0)
        for color, (model, part) in zip(palette, df.groupby("model", sort=False)):
            ax.plot(part["layer"], part[column], marker="o", label=model, color=color)
        ax.set(xlabel="layer", ylabel=label, title=f"{label} vs. teacher's final-layer ranking")
        ax.set_xticks(sorted(df["layer"].unique()))
    axes[1].set_ylim(top=1.02)
    axes[0].legend(fontsize=8, title="shaded: layers whose ranking prunes", title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_prune_rates(df, top_n: int = 20):
    """The most-pruned token types (``toplib.analysis.prune_rates``), two panels sharing rows.

    Left: share of occurrences pruned before the last layer; right: mean number of layers
    an occurrence enters (lower = pruned earlier). Row labels give each type's count.

    Returns:
        matplotlib Figure.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    part = df.head(top_n)
    labels = [f"{t}  (n={c})" for t, c in zip(part["token"], part["count"])]
    y = list(range(len(part)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.3 * len(part) + 1.5), sharey=True)
    colors = sns.color_palette("deep", 2)
    axes[0].barh(y, part["prune_rate"], color=colors[0])
    axes[0].set(xlim=(0, 1.02), xlabel="share pruned before the last layer")
    axes[1].barh(y, part["mean_layers"], color=colors[1])
    axes[1].set(xlabel="mean layers entered (lower: pruned earlier)")
    axes[0].set_yticks(y, labels, fontsize=9)
    axes[0].invert_yaxis()  # the most pruned on top
    fig.suptitle(f"Most-pruned token types (top {len(part)} among frequent ones)")
    fig.tight_layout()
    return fig


def plot_sparsity_accuracy(df, metric: str = "accuracy"):
    """Score against FLOPs reduction, both conventions, ToP vs. baselines vs. teacher.

    Args:
        df: ``toplib.sweep.sparsity_sweep`` frame (method, score, reduction_real,
            reduction_padded).
        metric: the task's primary metric (y label).
    Returns:
        matplotlib Figure with two panels: reduction at real length, and padded to
        max_seq_length (the paper's convention).
    """
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), sharey=True)
    colors = sns.color_palette("deep", 10)
    teacher = df.loc[df["method"] == "teacher", "score"]
    padded = "FLOPs reduction (x), padded to max_seq_length\n(the paper's convention)"
    for ax, column, label in ((axes[0], "reduction_real", "FLOPs reduction (x), real length"),
                              (axes[1], "reduction_padded", padded)):
        for method, (name, c, marker, ls) in METHOD_STYLES.items():
            part = df[df["method"] == method].sort_values(column)
            if len(part):
                ax.plot(part[column], part["score"], marker=marker, linestyle=ls, color=colors[c],
                        label=name)
        if len(teacher):
            ax.axhline(float(teacher.iloc[0]), color="black", linestyle="--", linewidth=1,
                       label=f"teacher (dense) {float(teacher.iloc[0]):.3f}")
        ax.set(xlabel=label)
    axes[0].set_ylabel(SCORE_LABELS.get(metric, metric))
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Score against FLOPs reduction")
    fig.tight_layout()
    return fig


def plot_flops_vs_latency(results: list[dict], variants=("top_drop", "top_masked")):
    """Measured latency against FLOPs, both relative to the dense model at real length.

    Args:
        results: ``toplib.bench.run_benchmark`` dicts (several lengths or sparsities).
    Returns:
        matplotlib Figure: x = ToP FLOPs / dense FLOPs, y = ToP latency / dense latency
        (padding removed); the diagonal is a speed-up exactly proportional to FLOPs.
    """
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
           title="FLOPs against measured latency")
    fig.tight_layout()
    return fig


def plot_reproduction(rows: list[dict]):
    """Per task: ToP's score vs. the teacher's, and FLOPs reduction in both conventions.

    Args:
        rows: ``toplib.pipeline.table_row`` dicts.
    Returns:
        matplotlib Figure with two grouped bar panels.
    """
    import numpy as np
    sns.set_theme(style="whitegrid", context="notebook")
    tasks = [r["task"] for r in rows]
    x = np.arange(len(tasks))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(tasks) + 4), 3.8))
    colors = sns.color_palette("deep", 4)
    pairs = ((axes[0], ("teacher_score", "score"), ("teacher (dense)", "ToP"), "score"),
             (axes[1], ("reduction_real", "reduction_padded"),
              ("real length", "padded (paper's convention)"), "FLOPs reduction (x)"))
    for ax, keys, labels, ylabel in pairs:
        for j, (key, label) in enumerate(zip(keys, labels)):
            values = [float("nan") if r.get(key) is None else r[key] for r in rows]
            bars = ax.bar(x + (j - 0.5) * 0.38, values, width=0.38, label=label, color=colors[j])
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_xticks(x, tasks if ax is axes[1] else
                      [r["task"] + (f"\n({r['metric']})" if r.get("metric") else "")
                       + ("\ntarget missed" if r.get("target_missed") else "") for r in rows])
        ax.set(ylabel=ylabel)
        ax.margins(y=0.12)
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig
