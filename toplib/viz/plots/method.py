"""The method notebook's figures (``01_how_top_works``)."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from ...core.flops import MAC_TERMS
from ...core.gates import (
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    hard_concrete_cdf,
    hard_concrete_density,
    prob_nonzero,
    sample_hard_concrete,
)

DENSITY_GRID = 400  # points of a density curve on (0, 1)
TIMING_TITLE_WIDTH = 55  # characters a line of the timing panel's title (machine and load)
TERM_COLORS = dict(zip(MAC_TERMS, sns.color_palette("deep", len(MAC_TERMS))))


def plot_attention_importance(tokens: list[str], attention: np.ndarray, importance: np.ndarray,
                              title: str):
    """The (n, n) head-averaged attention map above each token's importance, its column mean."""
    sns.set_theme(style="white", context="notebook")
    n = len(tokens)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(0.28 * n + 2.5, 0.28 * n + 3.6),
                                      sharex=True, gridspec_kw={"height_ratios": [4, 1.3]})
    image = top.imshow(attention, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=[top, bottom], fraction=0.03, pad=0.01, label="attention P[i, j]")
    top.set_yticks(range(n), tokens, fontsize=7)
    top.set(ylabel="query i (row)", title=title)
    bottom.bar(range(n), importance, color=sns.color_palette("deep")[0])
    bottom.set_xticks(range(n), tokens, rotation=90, fontsize=7)
    bottom.set(xlim=(-0.5, n - 0.5), ylabel="importance $s_j$", xlabel="key token j (column)")
    return fig


def plot_rank_bins(table, bin_num: int, title: str):
    """Ranked tokens as bars coloured by rank bin, bins labelled from the table's ``bin`` column."""
    sns.set_theme(style="whitegrid", context="notebook")
    ranked = table[table["rank"] >= 0].sort_values("rank")
    m, ranks, bins = len(ranked), ranked["rank"].to_numpy(), ranked["bin"].to_numpy()
    fig, ax = plt.subplots(figsize=(0.32 * m + 2.5, 4.2))
    colors = sns.color_palette("deep", 2)
    ax.bar(ranks, ranked["importance"], color=[colors[b % 2] for b in bins])
    edges = np.flatnonzero(np.diff(bins) != 0) + 1  # first rank of each bin but the first
    for x in [-0.5, *(ranks[edges] - 0.5), m - 0.5]:
        ax.axvline(x, color="grey", linestyle="--", linewidth=0.6)
    top = ranked["importance"].max()
    for b in np.unique(bins):
        ax.text(ranks[bins == b].mean(), top * 1.04, str(b), ha="center", fontsize=7)
    ax.set_xticks(ranks, ranked["token"], rotation=90, fontsize=8)
    ax.set(xlim=(-0.6, m - 0.4), ylim=(0, top * 1.12), ylabel="importance $s_j$",
           xlabel=f"tokens by rank r (m = {m}); numbers on top: bin b = floor(r / m * {bin_num})",
           title=title)
    ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig


def plot_hard_concrete(log_alphas, samples: int = 20000, seed: int = 0):
    """Hard-concrete gates for a few log-alphas: density, point masses and P(z > 0) by log-alpha."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4),
                                              gridspec_kw={"width_ratios": [1.2, 0.9, 1]})
    z = torch.linspace(0.0025, 0.9975, DENSITY_GRID)
    colors = sns.color_palette("deep", len(log_alphas))
    width = 0.8 / len(log_alphas)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for i, (color, a) in enumerate(zip(colors, log_alphas)):
            a = torch.tensor(float(a))
            draws = sample_hard_concrete(a.expand(samples)).numpy()
            inner = draws[(draws > 0) & (draws < 1)]
            left.hist(inner, bins=40, range=(0, 1), weights=np.full(len(inner), 40 / samples),
                      color=color, histtype="step", linewidth=0.8)
            left.plot(z, hard_concrete_density(z, a), color=color, linewidth=2,
                      label=f"a = {float(a):g}")
            masses = [float(hard_concrete_cdf(0.0, a)), float(1 - hard_concrete_cdf(1.0, a))]
            x = np.arange(2) + (i - (len(log_alphas) - 1) / 2) * width
            middle.bar(x, masses, width, color=color)
            middle.scatter(x, [(draws == 0).mean(), (draws == 1).mean()], color="black", s=8,
                           zorder=3)
    left.set(xlabel="gate value z", ylabel="density on 0 < z < 1",
             title="density (curves) and samples (steps)", xlim=(0, 1))
    left.legend(fontsize=8, title="log-alpha", title_fontsize=8)
    middle.set_xticks([0, 1], ["P(z = 0) = Q(0)", "P(z = 1) = 1 - Q(1)"])
    middle.set(ylabel="probability", title="point masses (dots: sampled)", ylim=(0, 1))
    a = torch.linspace(-8, 8, 200)
    right.axvspan(LOG_ALPHA_MIN, LOG_ALPHA_MAX, color="#f0e6c8", label="release clamp")
    right.plot(a, prob_nonzero(a), label="P(z > 0) = 1 - Q(0)")
    right.plot(a, 1 - hard_concrete_cdf(1.0, a), label="P(z = 1) = 1 - Q(1)")
    right.set(xlabel="log-alpha a", ylabel="probability", title="what the gate does, by log-alpha")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gate_heatmap(gates, closed: np.ndarray, occupancy: np.ndarray, title: str):
    """P(z > 0) of every bin gate, crossed where evaluation closes it (even with P > 0.5), beside
    each bin's relative share of tokens (0: the gate gets no gradient)."""
    sns.set_theme(style="white", context="notebook")
    bins = [c for c in gates.columns if isinstance(c, (int, np.integer))]
    p_open = gates[bins].to_numpy(dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.55 * len(gates) + 2.2))
    panels = ((axes[0], p_open, "P(gate open) = P(z > 0)", "RdYlGn", (0, 1)),
              (axes[1], np.asarray(occupancy) * len(bins), "tokens in bin / uniform share",
               "Blues", (0, 2)))
    for ax, data, label, cmap, (lo, hi) in panels:
        image = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label=label)
        ax.set_yticks(range(len(gates)), [f"layer {loc}" for loc in gates.index])
        ax.set_xticks(range(len(bins)), bins, fontsize=7)
        ax.set_xlabel("rank bin (0 = most attended)")
    shut = np.argwhere(np.asarray(closed, dtype=bool))
    axes[0].scatter(shut[:, 1], shut[:, 0], marker="x", color="black", s=18,
                    label="closed at evaluation")
    axes[0].set_xlabel("rank bin (0 = most attended); x: gate closed at evaluation")
    axes[0].set_title("learned bin gates (pruner gates: "
                      + ", ".join(f"{p:.2f}" for p in gates["pruner"]) + ")", fontsize=10)
    axes[1].set_title("where the tokens are (validation set)", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_mac_terms(dense, pruned, title: str):
    """MACs per layer stacked by term, dense and pruned bars, tokens on top."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = np.arange(len(dense))
    for offset, frame, hatch in ((-0.2, dense, ""), (0.2, pruned, "//")):
        bottom = np.zeros(len(frame))
        for term, color in TERM_COLORS.items():
            values = frame[term].to_numpy() / 1e6
            ax.bar(x + offset, values, 0.38, bottom=bottom, color=color, hatch=hatch,
                   edgecolor="white", label=term if offset < 0 else None)
            bottom += values
        for xi, total, t in zip(x, bottom, frame["tokens"]):
            ax.text(xi + offset, total, f"{t}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"layer {i}\ndense | pruned" for i in x], fontsize=8)
    ax.set(ylabel="million MACs", title=title)
    ax.legend(fontsize=8, title="term\n(number on bar:\ntokens)", title_fontsize=8,
              loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def plot_toy_lagrangian(run, title: str):
    """The toy constraint run: sparsity vs target, the multipliers, and the gates' P(z > 0)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 3.8))
    axes[0].plot(run["step"], run["expected_sparsity"], label="expected sparsity s")
    axes[0].plot(run["step"], run["target"], "--", color="black", label="target t(step)")
    axes[0].fill_between(run["step"], run["expected_sparsity"], run["target"],
                         where=run["expected_sparsity"] < run["target"], color="#f4c7c3",
                         label="s < t: multipliers push")
    axes[0].set(xlabel="step", ylabel="FLOPs sparsity", title="constraint")
    axes[1].plot(run["step"], run["lambda_1"], label=r"$\lambda_1$")
    axes[1].plot(run["step"], run["lambda_2"], label=r"$\lambda_2$")
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[1].set(xlabel="step", title="multipliers (AdamW ascent)")
    layers = [c.split("_")[1] for c in run.columns if c.startswith("pruner_")]
    colors = sns.color_palette("deep", len(layers))
    for color, loc in zip(colors, layers):
        axes[2].plot(run["step"], run[f"pruner_{loc}"], color=color, label=f"pruner, layer {loc}")
        axes[2].plot(run["step"], run[f"bins_{loc}"], "--", color=color, label=f"bins (mean), {loc}")
    axes[2].set(xlabel="step", ylabel="P(z > 0)", title="gates (gradient descent)", ylim=(0, 1.02))
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_lambda_loss(losses, schedule, title: str, logged=None):
    """LambdaLoss of student rankings per score, beside the rank-loss weight over a run."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    columns = [c for c in losses.columns if c.startswith("loss")]
    losses.set_index("student ranking")[columns].T.plot.bar(
        ax=left, rot=0, width=0.8, color=sns.color_palette("deep", len(losses)))
    left.set(ylabel="LambdaLoss (ARP-2) / k^2", title="student order vs teacher's top-k")
    left.legend(fontsize=8)
    right.plot(schedule["step"], schedule["weight"], label="rank_loss_weight(step)")
    if logged is not None:
        right.scatter(logged["step"], logged["rank_weight"], s=12, color="black",
                      label="logged by the run", zorder=3)
    right.set(xlabel="training step", ylabel="weight of the rank loss",
              title="alpha * max(0.01, 1 - warm-up progress)")
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_masked_vs_dropped(dense, pruned, title: str, timings=None,
                           timing_title: str = "measured on this machine"):
    """MACs per layer with pruned tokens masked (= dense) vs dropped; optional ``timings`` (ms)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 2 if timings else 1, figsize=(11 if timings else 6, 3.8),
                             squeeze=False)
    ax = axes[0][0]
    ax.plot(dense.index, dense["total"] / 1e6, "o-", label="masked (= dense): all n tokens")
    ax.plot(pruned.index, pruned["total"] / 1e6, "o-", label="dropped: surviving tokens")
    ax.set(xlabel="layer", ylabel="million MACs", title="MACs per layer", ylim=(0, None))
    ax.legend(fontsize=8)
    if timings:
        names = list(timings)
        axes[0][1].barh(names, [timings[k] for k in names], color=sns.color_palette("deep", 4))
        axes[0][1].set_xlabel("median ms per forward pass")
        axes[0][1].set_title(textwrap.fill(timing_title, TIMING_TITLE_WIDTH), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
