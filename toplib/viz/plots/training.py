"""Training curves of a run, drawn from its history records, and their live version."""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
import seaborn as sns


def _series(records: list[dict], kind: str, key: str, keep=lambda value: value is not None):
    """Steps and values of ``key`` in the ``kind`` records where ``keep(value)``; list values
    with ``keep=bool`` give a (steps, width) matrix (e.g. keep ratios)."""
    pts = [(r["step"], r[key]) for r in records if r.get("kind") == kind and keep(r.get(key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training_curves(history: list[dict], prune_location=None):
    """Curves of a training run from its history records (``history.jsonl`` or a callback).

    Pruning runs get eight panels: fit loss (distillation or task), Lagrangian term,
    ranking-distillation loss, expected vs target (warmed-up) vs measured sparsity, the
    multipliers lambda_1 and lambda_2, expected keep ratio per prune location, evaluation
    score and measured keep ratio per layer. Fine-tuning runs get loss and score.
    ``history``: records with ``kind`` "train" / "eval" and ``step``; ``prune_location``: layers
    of the keep-ratio curves (labels only).
    """
    sns.set_theme(style="whitegrid", context="notebook")
    pruning = any("expected_sparsity" in r for r in history if r.get("kind") == "train")
    panels = ["fit", "lagrangian", "rank", "sparsity", "lambda", "keep", "score", "measured_keep"] \
        if pruning else ["fit", "score"]
    nrows, ncols = (2, 4) if pruning else (1, 2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    ax = dict(zip(panels, axes.flat))
    colors = sns.color_palette("deep", 10)
    fit_key = "distill_loss" if any("distill_loss" in r for r in history) else "task_loss"
    ax["fit"].plot(*_series(history, "train", fit_key), color=colors[0])
    ax["fit"].set(title="distillation loss" if fit_key == "distill_loss" else "task loss",
                  ylabel="loss")
    ax["score"].plot(*_series(history, "eval", "score"), marker="o", color=colors[3])
    ax["score"].set(title="evaluation score", ylabel="score")
    if pruning:
        _pruning_panels(ax, history, colors, prune_location)
    for a in axes.flat:
        a.set_xlabel("training step")
    fig.tight_layout()
    return fig


def _pruning_panels(ax: dict, history: list[dict], colors, prune_location) -> None:
    """The six panels only a pruning run has: the constraint, ranking and keep ratios."""
    ax["lagrangian"].plot(*_series(history, "train", "lagrangian_loss"), color=colors[1])
    ax["lagrangian"].set(title="Lagrangian term", ylabel="value")
    ax["rank"].plot(*_series(history, "train", "rank_loss"), color=colors[2])
    ax["rank"].set(title="ranking-distillation loss", ylabel="ARP-2 loss")
    s = ax["sparsity"]
    s.plot(*_series(history, "train", "expected_sparsity"), label="expected", color=colors[0])
    if any("measured_sparsity" in r for r in history):
        s.plot(*_series(history, "train", "measured_sparsity"), label="evaluation gates (batch)",
               color=colors[2], alpha=0.6, linewidth=1)
    if any("release_sparsity" in r for r in history):
        s.plot(*_series(history, "train", "release_sparsity"),
               label="release formula, evaluation gates (batch)", color=colors[4], alpha=0.6,
               linewidth=1)
    s.plot(*_series(history, "train", "target_sparsity"), "--", label="target (warm-up)",
           color="black")
    s.plot(*_series(history, "eval", "sparsity_real"), "o", label="measured (eval)",
           color=colors[3])
    if any("sparsity_release_real" in r for r in history):
        s.plot(*_series(history, "eval", "sparsity_release_real"), "x",
               label="release formula (eval)", color=colors[4])
    s.set(title="FLOPs sparsity (real length)", ylabel="sparsity")
    s.legend(fontsize=8)
    for name, color in (("lambda_1", colors[4]), ("lambda_2", colors[5])):
        ax["lambda"].plot(*_series(history, "train", name), label=rf"$\{name}$", color=color)
    ax["lambda"].set(title="Lagrange multipliers", ylabel="value")
    ax["lambda"].legend(fontsize=8)
    _keep_lines(ax["keep"], *_series(history, "train", "expected_keep_ratio", bool),
                prune_location, "expected keep ratio per prune layer")
    measured = _series(history, "eval", "keep_ratio", bool)
    all_layers = range(len(measured[1][0])) if measured[1] else None
    _keep_lines(ax["measured_keep"], *measured, all_layers,
                "measured keep ratio per layer (eval)", marker="o")


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
    """A ``callback`` for ``toplib.train.prune``/``finetune`` that redraws the curves in place
    (an IPython display handle) at every evaluation when ``live`` is True; records are
    collected in any case (``.records``)."""

    def __init__(self, live: bool = True, prune_location=None):
        self.live, self.prune_location = live, prune_location
        self.records: list[dict] = []
        self._handle = None

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        if self.live and record.get("kind") == "eval":
            self.redraw()

    def redraw(self) -> None:
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
