"""What a model does with tokens: kept-token heatmaps, ranking agreement, prune rates."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch


def plot_kept_tokens(kept: list, titles: list[str] | None = None, max_tokens: int = 48):
    """Kept (green) and pruned (grey) tokens x layers, one heatmap per KeptTokens."""
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


def plot_ranking_agreement(df, k: int = 10, task: str | None = None):
    """Kendall tau and NDCG@k per layer against the teacher's final layer, mean ± sd over seeds
    (``seed_agreement``'s frame), layers whose ranking prunes shaded."""
    from ..agreement import agreement_spread
    sns.set_theme(style="whitegrid", context="notebook")
    stats = agreement_spread(df)
    n_seeds = int(stats["n"].max())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    deciding = sorted(set(df.loc[df["decides_pruning"].astype(bool), "layer"]))
    models = list(dict.fromkeys(df["model"]))
    palette = sns.color_palette("deep", len(models))
    for ax, column, label in ((axes[0], "kendall_tau", "Kendall tau-b"),
                              (axes[1], "ndcg", f"NDCG@{k}")):
        for layer in deciding:
            ax.axvspan(layer - 0.4, layer + 0.4, color="#f0e6c8", zorder=0)
        for i, (color, model) in enumerate(zip(palette, models)):
            _agreement_lines(ax, stats[stats["model"] == model], df[df["model"] == model],
                             column, color, (i - (len(models) - 1) / 2) * 0.08)
        ax.set(xlabel="layer", ylabel=f"{label} (mean ± sd)",
               title=f"{label} vs. the teacher's final-layer ranking")
        ax.set_xticks(sorted(df["layer"].unique()))
    axes[1].set_ylim(top=1.02)
    axes[0].legend(fontsize=8, title="shaded: layers whose ranking prunes", title_fontsize=8,
                   loc="best")
    where = f"{task} · " if task else ""
    fig.suptitle(f"{where}ranking agreement with the teacher: mean ± sd over {n_seeds} "
                 f"seed{'s' if n_seeds != 1 else ''} (dots: single seeds)", fontsize=12)
    fig.tight_layout()
    return fig


def _agreement_lines(ax, stats, raw, column: str, color, offset: float) -> None:
    """One model: the per-layer mean (line), ±1 sd (band and error bars), seeds (dots)."""
    x = stats["layer"] + offset
    mean, sd = stats[f"{column}_mean"], stats[f"{column}_sd"].fillna(0.0)
    n = int(stats["n"].max())
    label = f"{stats['model'].iloc[0]} ({f'{n} seeds' if n > 1 else 'one model'})"
    ax.errorbar(x, mean, yerr=sd if n > 1 else None, marker="o", color=color, capsize=3,
                label=label)
    if n > 1:
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.15, linewidth=0)
        ax.scatter(raw["layer"] + offset, raw[column], s=10, color=color, alpha=0.6, zorder=3)


KIND_COLORS = {"content word": 0, "stop word": 1, "punctuation": 2, "word piece": 3,
               "special": 4}  # palette index of each toplib.viz.analysis.token_kind


def plot_prune_rates(df, top_n: int = 20, task: str | None = None, least_n: int = 0):
    """The most-pruned token types and, below a line, the ``least_n`` least pruned: share pruned
    by kind, beside the mean layers entered. ``df``: one row per type, most pruned first, with
    token, count, prune_rate, mean_layers and kind (``toplib.viz.analysis.token_kind``)."""
    sns.set_theme(style="whitegrid", context="notebook")
    least = df.iloc[max(top_n, len(df) - least_n):] if least_n else df.iloc[:0]
    part = pd.concat([df.head(top_n), least])
    labels = [f"{t}  (n={c})" for t, c in zip(part["token"], part["count"])]
    y = list(range(len(part)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.3 * len(part) + 2.2), sharey=True)
    palette = sns.color_palette("deep", len(KIND_COLORS) + 1)
    kinds = list(part["kind"]) if "kind" in part else [None] * len(part)
    axes[0].barh(y, part["prune_rate"],
                 color=[palette[KIND_COLORS.get(k, len(KIND_COLORS))] for k in kinds])
    overall = (df["prune_rate"] * df["count"]).sum() / df["count"].sum()
    axes[0].axvline(overall, color="black", linestyle="--", linewidth=1,
                    label=f"all frequent types: {overall:.0%}")
    axes[0].set(xlim=(0, 1.02), xlabel="share pruned before the last layer")
    axes[1].barh(y, part["mean_layers"], color="#8c8c8c")
    axes[1].set(xlabel="mean layers entered (lower: pruned earlier)")
    axes[0].set_yticks(y, labels, fontsize=9)
    axes[0].invert_yaxis()  # the most pruned on top
    if len(least):
        for ax in axes:
            ax.axhline(len(part) - len(least) - 0.5, color="black", linewidth=1.5)
    shown = [k for k in KIND_COLORS if k in set(kinds)]
    fig.legend(handles=axes[0].get_legend_handles_labels()[0]
               + [Patch(color=palette[KIND_COLORS[k]], label=k) for k in shown],
               fontsize=8, loc="lower center", ncol=3, frameon=False)
    where = f"{task} · " if task else ""
    below = f", below the line the {len(least)} least pruned" if len(least) else ""
    fig.suptitle(f"{where}most-pruned token types (top {top_n} among frequent ones{below})",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
