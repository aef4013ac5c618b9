"""The reproduction study's figures (``benchmarks/ablations.py``): how much training ToP
needs, what its gates and ranking loss add over baselines on the same budget, and one
trained model's score at other sparsities. Each takes a tidy DataFrame, one row per run
(or per run and point), and draws every seed beside the mean and standard deviation."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def _mean_sd(ax, values, color, label=None, offset=0.0):
    """Mean ± sd at each x of ``values`` (a Series indexed by x, one entry per seed), the
    seeds as dots."""
    stats = values.groupby(level=0).agg(["mean", "std", "count"])
    xs = np.asarray(stats.index, dtype=float) * (1 + offset)
    ax.errorbar(xs, stats["mean"], yerr=stats["std"].fillna(0), color=color, capsize=3,
                marker="o", label=label)
    ax.scatter(np.asarray(values.index, dtype=float) * (1 + offset), values, color=color,
               s=10, alpha=0.45, zorder=3)
    return stats


def plot_budget(df):
    """Drop against the teacher (points) against the training budget (multiples of the
    standard preset's schedule), one line per task; the label at each point is the mean
    measured real-length FLOPs sparsity. ``df``: task, budget, seed, drop, sparsity_real."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    colors = sns.color_palette("deep", df["task"].nunique())
    for (task, part), color in zip(df.groupby("task", sort=True), colors):
        offset = 0.03 * (sorted(df["task"].unique()).index(task) - 1)
        stats = _mean_sd(ax, part.set_index("budget")["drop"], color, task, offset)
        sparsity = part.groupby("budget")["sparsity_real"].mean()
        for b, mean in stats["mean"].items():
            ax.annotate(f"{sparsity[b]:.2f}", (b * (1 + offset), mean), xytext=(6, 4),
                        textcoords="offset points", fontsize=7, color=color, zorder=4,
                        bbox=dict(fc="white", ec="none", alpha=0.85, pad=0.6))
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(-1, color="grey", lw=0.8, ls=":", label="1 point under the teacher")
    ax.set_xscale("log")
    budgets = sorted(df["budget"].unique())
    ax.set_xticks(budgets, [f"{b:g}x" for b in budgets])
    ax.minorticks_off()
    ax.set(xlabel="ToP schedule (epochs and warm-up), multiple of the standard preset",
           ylabel="score - teacher (points)",
           title="ToP at the paper's target: drop against training budget\n"
                 "(mean ± sd over seeds, dots: seeds; labels: measured sparsity)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_baselines(df, order=None,
                   title="Same teacher, budget and FLOPs: mean ± sd over seeds (dots: seeds)"):
    """Drop against the teacher per method, one panel per task: mean ± sd bars, the seeds, and
    each method's mean measured sparsity in brackets after its name. ``df``: task, method, seed, drop,
    sparsity_real."""
    sns.set_theme(style="whitegrid", context="notebook")
    tasks = sorted(df["task"].unique())
    order = order or list(dict.fromkeys(df["method"]))
    colors = dict(zip(order, sns.color_palette("deep", len(order))))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = df[df["task"] == task]
        methods = [m for m in order if m in set(part["method"])]
        for i, method in enumerate(methods):
            runs = part[part["method"] == method]
            ax.bar(i, runs["drop"].mean(), yerr=runs["drop"].std() if len(runs) > 1 else 0,
                   color=colors[method], capsize=3)
            ax.scatter([i] * len(runs), runs["drop"], color="black", s=8, zorder=3)
        sparsity = part.groupby("method")["sparsity_real"].mean()
        ax.set_xticks(range(len(methods)), [f"{m} ({sparsity[m]:.2f})" for m in methods],
                      rotation=35, ha="right", fontsize=8)
        ax.axhline(0, color="black", lw=0.8)
        ax.set(title=task, ylabel="score - teacher (points)" if ax is axes[0][0] else None)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_retargeted(df, task: str, teacher: float):
    """One trained ToP model's score when its gates are re-derived for other sparsities
    (a line per trained target), against ToP trained at each sparsity (points). ``df``:
    source (the trained target, or "trained"), seed, sparsity_real, score (points)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sources = sorted(s for s in df["source"].unique() if s != "trained")
    colors = sns.color_palette("crest", len(sources))
    for source, color in zip(sources, colors):
        part = df[df["source"] == source]
        curve = part.groupby("requested").agg(x=("sparsity_real", "mean"),
                                              y=("score", "mean"), sd=("score", "std"))
        ax.errorbar(curve["x"], curve["y"], yerr=curve["sd"].fillna(0), color=color,
                    capsize=2, marker=".", label=f"trained at {source:.2f}, gates re-derived")
    trained = df[df["source"] == "trained"]
    if len(trained):
        stats = trained.groupby("target").agg(x=("sparsity_real", "mean"), y=("score", "mean"),
                                              sd=("score", "std"), xsd=("sparsity_real", "std"))
        ax.errorbar(stats["x"], stats["y"], yerr=stats["sd"].fillna(0),
                    xerr=stats["xsd"].fillna(0), color="C3", fmt="D", capsize=3,
                    label="ToP trained at that target")
    ax.axhline(teacher, color="black", lw=0.8, label="teacher")
    ax.axhline(teacher - 1, color="grey", lw=0.8, ls=":", label="1 point under the teacher")
    ax.set(xlabel="FLOPs sparsity, measured at real length", ylabel="score (points)",
           title=f"{task}: any budget from one training (mean ± sd over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
