"""Scores against FLOPs: the sparsity sweep and the per-task reproduction."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

SCORE_LABELS = {"accuracy": "accuracy", "f1": "F1", "matthews": "Matthews corr.",
                "pearson": "Pearson corr.", "spearman": "Spearman corr."}
METHOD_STYLES = {  # label, colour index, marker, line style
    "ToP": ("ToP", 0, "o", "-"),
    "attention": ("attention baseline (top tokens by teacher attention)", 1, "s", "--"),
    "random": ("random pruning", 2, "^", ":"),
}


def plot_sparsity_accuracy(df, metric: str = "accuracy"):
    """Score against FLOPs reduction, ToP vs. baselines vs. teacher, of a
    ``toplib.viz.sweep.sparsity_sweep`` frame (method, score, reduction_real, reduction_padded,
    sparsity_release_padded); ``metric`` (the task's primary one) labels the y axis. A panel
    per figure: reduction at real length, measured against padded inputs (the paper's
    convention), and by the release's formula (padded) when the frame has it."""
    sns.set_theme(style="whitegrid", context="notebook")
    panels = [("reduction_real", "FLOPs reduction (x), real length"),
              ("reduction_padded", "FLOPs reduction (x), measured against\ninputs padded to "
               "max_seq_length (the paper's convention)")]
    if "sparsity_release_padded" in df and df["sparsity_release_padded"].notna().any():
        df = df.assign(reduction_release_padded=1.0 / (1.0 - df["sparsity_release_padded"]))
        panels.append(("reduction_release_padded", "FLOPs reduction (x), padded, by the\n"
                       "release's formula (what its table reports)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.75 * len(panels), 4.2), sharey=True)
    colors = sns.color_palette("deep", 10)
    teacher = df.loc[df["method"] == "teacher", "score"]
    for ax, (column, label) in zip(axes, panels):
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


def plot_reproduction(rows: list[dict]):
    """Per task (``rows``: ``toplib.train.pipeline.table_row`` dicts), two grouped bar panels:
    ToP's score vs. the teacher's, and FLOPs sparsity three ways: measured at real length,
    measured against padded inputs (the paper's convention), and the release's formula
    (padded), the figure the paper's table reports."""
    sns.set_theme(style="whitegrid", context="notebook")
    tasks = [r["task"] for r in rows]
    x = np.arange(len(tasks))
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.6 * len(tasks) + 4), 3.8))
    colors = sns.color_palette("deep", 4)
    pairs = ((axes[0], ("teacher_score", "score"), ("teacher (dense)", "ToP"), "score"),
             (axes[1], ("sparsity_real", "sparsity_padded", "sparsity_release_padded"),
              ("measured, real length", "measured, padded",
               "release's formula, padded"), "FLOPs sparsity"))
    for ax, keys, labels, ylabel in pairs:
        width = 0.76 / len(keys)
        for j, (key, label) in enumerate(zip(keys, labels)):
            values = [float("nan") if r.get(key) is None else r[key] for r in rows]
            bars = ax.bar(x + (j - (len(keys) - 1) / 2) * width, values, width=width,
                          label=label, color=colors[j])
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_xticks(x, tasks if ax is axes[1] else
                      [r["task"] + (f"\n({r['metric']})" if r.get("metric") else "")
                       + ("\ntarget missed" if r.get("target_missed") else "") for r in rows])
        ax.set(ylabel=ylabel)
        ax.margins(y=0.12)
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(keys),
                  frameon=False)
    fig.tight_layout()
    return fig


def plot_seed_results(rows: list[dict]):
    """Score against measured real-length FLOPs sparsity, one panel (and axis) per task, of
    ``toplib.train.reproduce.seed_row`` rows: each seed a dot, their mean ± sd as error bars,
    the dense teacher at sparsity 0, the target as a dotted line, and the paper's bert-base
    result in the title (another model: not on the axis)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(rows), figsize=(3.3 * len(rows) + 0.6, 3.9), squeeze=False)
    colors = sns.color_palette("deep", 4)
    for ax, r in zip(axes[0], rows):
        ax.scatter(r["seed_sparsities"], np.multiply(r["scores"], 100), s=18, color=colors[0], alpha=0.6,
                   label="ToP, each seed", zorder=3)
        ax.errorbar(r["sparsity_real"], r["score"] * 100, yerr=(r["score_std"] or 0) * 100,
                    xerr=r.get("sparsity_real_std") or 0, fmt="D", color=colors[0], capsize=4,
                    label="ToP mean ± sd", zorder=4)
        ax.scatter([0.0], [r["teacher_score"] * 100], marker="*", s=140, color="black",
                   label="teacher (dense)", zorder=4)
        ax.axvline(r["target_sparsity"], color=colors[3], linestyle=":", label="target")
        paper = (f"\npaper ({r['paper_score'] * 100:.1f} at {r['paper_reduction']:.2f}x, "
                 "bert-base)" if r.get("paper_score") is not None else "")
        missed = (f", {r['targets_missed']} missed the target" if r.get("targets_missed")
                  else "")
        ax.set_title(f"{r['task']}: {SCORE_LABELS.get(r['metric'], r['metric'])}, "
                     f"{r['n_seeds']} seed(s){missed}{paper}", fontsize=9)
        ax.set(xlabel="FLOPs sparsity, real length", xlim=(-0.05, 1.0))
        ax.margins(y=0.25)
    axes[0][0].set_ylabel("score (points)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(f"ToP against its teacher, {rows[0].get('model', '')}", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    return fig
