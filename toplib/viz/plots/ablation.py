"""Seeded comparisons (``benchmarks/ablations.py``), learned gates and constraint tracking."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def plot_ablation(table: list[dict], metrics=("drop", "kendall_tau", "ndcg10")):
    """Mean ± sd over seeds per metric, task and arm (``summarize`` rows of ``ablations.py``)."""
    sns.set_theme(style="whitegrid", context="notebook")
    labels = {"drop": "score - teacher (points)", "kendall_tau": "Kendall tau vs teacher",
              "ndcg10": "NDCG@10 vs teacher", "sparsity_real": "sparsity, measured real"}
    tasks = sorted({r["task"] for r in table})
    arms = list(dict.fromkeys(r["arm"] for r in table))
    colors = sns.color_palette("deep", len(arms))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.9), squeeze=False)
    width = 0.8 / len(arms)
    for ax, metric in zip(axes[0], metrics):
        for j, arm in enumerate(arms):
            rows = {r["task"]: r for r in table if r["arm"] == arm}
            means = [rows[t][metric][0] if t in rows else np.nan for t in tasks]
            sds = [rows[t][metric][1] if t in rows else np.nan for t in tasks]
            ax.bar(np.arange(len(tasks)) + (j - (len(arms) - 1) / 2) * width, means, width,
                   yerr=sds, capsize=3, label=arm, color=colors[j])
        ax.set_xticks(np.arange(len(tasks)), tasks)
        ax.set(ylabel=labels.get(metric, metric), title=labels.get(metric, metric))
    seeds = sorted({r["seeds"] for r in table})
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Ablations: mean and standard deviation over {'/'.join(map(str, seeds))} seeds")
    fig.tight_layout()
    return fig


def plot_gates_vs_rank(p_open: np.ndarray, occupancy: np.ndarray, prune_location, title: str):
    """Per prune layer, P(gate open) per rank bin (over seeds) beside the bin's relative share of
    tokens; ``p_open``: (S, P, bin_num), ``occupancy``: (P, bin_num)."""
    sns.set_theme(style="whitegrid", context="notebook")
    p_open, occupancy = np.asarray(p_open), np.asarray(occupancy)
    n_layers, bin_num = occupancy.shape
    fig, axes = plt.subplots(1, n_layers, figsize=(3.6 * n_layers, 3.4), sharey=True,
                             squeeze=False)
    bins = np.arange(bin_num)
    colors = sns.color_palette("deep", 3)
    for p, ax in enumerate(axes[0]):
        ax.bar(bins, occupancy[p] * bin_num, color=colors[1], alpha=0.45,
               label="tokens in bin / uniform share")
        mean, sd = p_open[:, p].mean(0), p_open[:, p].std(0)
        ax.errorbar(bins, mean, yerr=sd, fmt="o-", markersize=3, color=colors[0], capsize=2,
                    label=f"P(gate open), {len(p_open)} seeds")
        share = 100 * occupancy[p, -1]
        ax.annotate(f"bin {bin_num - 1}: P(open) {mean[-1]:.2f}\n"
                    f"{f'{share:.1f}%' if share >= 0.05 else 'under 0.05%'} of the tokens",
                    (0.97, 0.95), xycoords="axes fraction", ha="right", va="top", fontsize=8)
        ax.set(title=f"prune layer {prune_location[p]}", xlabel="rank bin (0 = most attended)")
    axes[0][0].set_ylabel("P(open) / relative occupancy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.9))  # room for the legend under the title
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.93), ncol=2,
               fontsize=8, frameon=False)
    return fig


def plot_constraint_tracking(histories: list[list[dict]], title: str):
    """Evaluation-gate sparsity against the warmed-up target, and lambda_1, over seeds."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (s_ax, l_ax) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    colors = sns.color_palette("deep", len(histories) + 1)
    for i, history in enumerate(histories):
        steps = [h["step"] for h in history]
        s_ax.plot(steps, [h["measured_sparsity"] for h in history], color=colors[i],
                  linewidth=1, label=f"seed {i}: evaluation gates (batch)")
        l_ax.plot(steps, [h["lambda_1"] for h in history], color=colors[i], label=f"seed {i}")
    first = histories[0]
    s_ax.plot([h["step"] for h in first], [h["target_sparsity"] for h in first], "--",
              color="black", label="target (warm-up)")
    s_ax.set(xlabel="training step", ylabel="FLOPs sparsity (real length)", title="sparsity")
    l_ax.set(xlabel="training step", ylabel=r"$\lambda_1$", title="Lagrange multiplier")
    s_ax.legend(fontsize=7)
    l_ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
