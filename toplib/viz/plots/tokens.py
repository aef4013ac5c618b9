"""What a model does with tokens: kept-token heatmaps, ranking agreement, prune rates."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch


def plot_kept_tokens(kept: list, titles: list[str] | None = None, max_tokens: int = 48):
    """Heatmaps of kept (green) and pruned (grey) tokens, tokens x layers, one per input
    (``kept``: ``toplib.viz.analysis.KeptTokens`` items, ``titles`` one per item); inputs
    longer than ``max_tokens`` are cut for readability."""
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
    """Kendall tau and NDCG@k of each layer's ranking against the teacher's final layer, of
    ``toplib.viz.analysis.ranking_agreement`` frames concatenated with a ``model`` column
    (e.g. "ToP", "ToP without rank distillation", "teacher"). Layers whose ranking decides
    pruning are shaded."""
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
    """The most-pruned token types (``toplib.viz.analysis.prune_rates``), two panels sharing
    rows. Left: share of occurrences pruned before the last layer; right: mean number of
    layers an occurrence enters (lower = pruned earlier). Row labels give each type's count.
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
