"""Training curves of a run, drawn from its history records, and their live version."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..history import fit_key

PRUNE_PANELS = ("fit", "lagrangian", "rank", "terms", "sparsity", "lambda", "keep",
                "measured_keep", "score")
CONDITIONAL = "kept / tokens entering the layer"
CUMULATIVE = "tokens entering / real tokens"
SMOOTHING = 5  # logged training records per point of the smoothed loss curve
MERGE_LABELS = 0.04  # keep-ratio curves ending closer than this share one end label


def _series(records: list[dict], kind: str, key: str, keep=lambda value: value is not None):
    """Steps and values of ``key`` in ``kind`` records where ``keep(value)`` (lists: a matrix)."""
    pts = [(r["step"], r[key]) for r in records if r.get("kind") == kind and keep(r.get(key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def run_title(task: str | None, pruning: bool) -> tuple[str, str]:
    """(suptitle, metric): the stage, the task and its primary metric (what evaluations report)."""
    stage = "ToP pruning" if pruning else "teacher fine-tuning"
    if task is None:
        return stage, "score"
    from ...data import get_task  # lazy: toplib.data pulls in the datasets library
    metric = get_task(task).metrics[0]
    return f"{stage} · {task} · {metric}", metric


def plot_training_curves(history: list[dict], prune_location=None, task: str | None = None,
                         best_step: int | None = None):
    """Curves of a run from its history: loss and score, and for a pruning run also the Lagrangian,
    rank loss and weight, loss terms, sparsity, multipliers and keep ratios (expected per ranked
    token, measured per real token)."""
    sns.set_theme(style="whitegrid", context="notebook")
    pruning = any("expected_sparsity" in r for r in history if r.get("kind") == "train")
    title, metric = run_title(task, pruning)
    panels = PRUNE_PANELS if pruning else ("fit", "score")
    nrows, ncols = (3, 3) if pruning else (1, 2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    ax = dict(zip(panels, axes.flat))
    colors = sns.color_palette("deep", 10)
    key = fit_key(history)
    steps, fit = _series(history, "train", key)
    ax["fit"].plot(steps, fit, color=colors[0], alpha=0.35, linewidth=1, label="logged batch")
    smoothed = pd.Series(fit, dtype=float).rolling(SMOOTHING, min_periods=1).mean()  # trailing
    ax["fit"].plot(steps, smoothed, color=colors[0], linewidth=2,
                   label=f"mean of {SMOOTHING} logged batches")
    ax["fit"].legend(fontsize=8)
    ax["fit"].set(title="logit-distillation loss (KL, training)" if key == "distill_loss"
                  else "task loss (cross-entropy, training)", ylabel="loss")
    _score_panel(ax["score"], history, metric, best_step, colors[3])
    if pruning:
        _pruning_panels(ax, history, colors, prune_location)
    for a in axes.flat:
        a.set_xlabel("training step")
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


def _score_panel(ax, history: list[dict], metric: str, best_step, color) -> None:
    steps, scores = _series(history, "eval", "score")
    ax.plot(steps, scores, marker="o", color=color, label=f"validation {metric}")
    if best_step is not None and best_step in steps:
        best = scores[steps.index(best_step)]
        ax.plot([best_step], [best], "*", markersize=16, color="black",
                label=f"best checkpoint: {best:.3f} @ step {best_step}")
    ax.legend(fontsize=8, loc="best")
    ax.set(title=f"validation {metric} (every evaluation)", ylabel=metric)


def _pruning_panels(ax: dict, history: list[dict], colors, prune_location) -> None:
    """The panels only a pruning run has: the constraint, ranking and keep ratios."""
    ax["lagrangian"].plot(*_series(history, "train", "lagrangian_loss"), color=colors[1])
    ax["lagrangian"].axhline(0, color="grey", linewidth=0.8)
    ax["lagrangian"].set(title=r"Lagrangian $\lambda_1(s-t)+\lambda_2(s-t)^2$", ylabel="value")
    _rank_panel(ax["rank"], history, colors)
    _terms_panel(ax["terms"], history, colors)
    _sparsity_panel(ax["sparsity"], history, colors)
    for name, color in (("lambda_1", colors[4]), ("lambda_2", colors[5])):
        ax["lambda"].plot(*_series(history, "train", name), label=rf"$\{name}$", color=color)
    ax["lambda"].set(title="Lagrange multipliers (AdamW ascent)", ylabel="value")
    ax["lambda"].legend(fontsize=8)
    _keep_lines(ax["keep"], *_series(history, "train", "expected_keep_ratio", bool),
                prune_location, "expected keep ratio at each prune layer\n(gates; conditional)",
                CONDITIONAL)
    measured = _series(history, "eval", "keep_ratio", bool)
    all_layers = range(len(measured[1][0])) if measured[1] else None
    _keep_lines(ax["measured_keep"], *measured, all_layers,
                "measured tokens entering each layer\n(evaluation; cumulative)", CUMULATIVE,
                marker="o")


def _rank_panel(ax, history: list[dict], colors) -> None:
    """The ranking loss and, on a log-scaled right axis, the weight it is multiplied by."""
    ax.plot(*_series(history, "train", "rank_loss"), color=colors[2], label="rank loss")
    ax.set(title="ranking-distillation loss and its weight", ylabel="LambdaLoss (ARP-2)",
           ylim=(0, None))
    steps, weights = _series(history, "train", "rank_weight")
    if any(w > 0 for w in weights):
        right = ax.twinx()
        right.plot(steps, weights, "--", color="black", label="weight (right, log)")
        right.set_yscale("log")
        right.set_ylabel("weight")
        right.grid(False)
        lines = ax.get_lines() + right.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="lower left")


def _terms_panel(ax, history: list[dict], colors) -> None:
    """The three terms of the total loss on one log scale: which one drives training."""
    ax.plot(*_series(history, "train", fit_key(history)), color=colors[0], label="fit (distillation)")
    steps, lag = _series(history, "train", "lagrangian_loss")
    ax.plot(steps, [abs(v) for v in lag], color=colors[1], label="|Lagrangian|")
    # what ranking distillation adds to the loss, where both factors were logged
    weighted = [(r["step"], r["rank_weight"] * r["rank_loss"]) for r in history
                if r.get("kind") == "train" and r.get("rank_weight") is not None
                and r.get("rank_loss") is not None]
    if any(v > 0 for _, v in weighted):
        ax.plot(*zip(*weighted), color=colors[2], label="weight x rank loss")
    ax.set_yscale("log")
    ax.set(title="terms of the total loss (log scale)", ylabel="contribution")
    ax.legend(fontsize=8)


def _sparsity_panel(s, history: list[dict], colors) -> None:
    faint = dict(alpha=0.6, linewidth=1)
    lines = (  # kind, key, format, label, colour, style; keys the run never logged are skipped
        ("train", "expected_sparsity", "-", "expected (gates)", colors[0], {}),
        ("train", "measured_sparsity", "-", "evaluation gates (batch)", colors[2], faint),
        ("train", "release_sparsity", "-", "release formula, evaluation gates (batch)",
         colors[4], faint),
        ("train", "target_sparsity", "--", "target t (warm-up)", "black", {}),
        ("eval", "sparsity_real", "o", "measured (eval)", colors[3], {}),
        ("eval", "sparsity_release_real", "x", "release formula (eval)", colors[4], {}))
    for kind, key, fmt, label, color, style in lines:
        if any(key in r for r in history):
            s.plot(*_series(history, kind, key), fmt, label=label, color=color, **style)
    s.set(title="FLOPs sparsity s (real length)", ylabel="sparsity")
    s.legend(fontsize=7, loc="lower right")


def _keep_lines(ax, steps, matrix, layers, title, ylabel, marker=None):
    """One curve per layer, labelled at its right end (curves ending together share a label)."""
    if matrix:
        width = len(matrix[0])
        known = layers is not None and len(layers) == width
        names = [str(x) for x in layers] if known else [f"P{j + 1}" for j in range(width)]
        palette = sns.color_palette("viridis", width)
        for j in range(width):
            ax.plot(steps, [row[j] for row in matrix], marker=marker, markersize=3,
                    color=palette[j])
        groups: list[list[int]] = []
        for j in sorted(range(width), key=lambda j: matrix[-1][j]):
            if groups and matrix[-1][j] - matrix[-1][groups[-1][0]] < MERGE_LABELS:
                groups[-1].append(j)
            else:
                groups.append([j])
        for group in groups:
            label = ("layer " if len(group) == 1 else "layers ") + ", ".join(
                names[j] for j in sorted(group))
            ax.annotate(label, (steps[-1], matrix[-1][group[0]]), xytext=(5, 0),
                        textcoords="offset points", va="center", fontsize=7,
                        color=palette[group[-1]])
        ax.set_xlim(right=steps[-1] + 0.3 * (steps[-1] - steps[0]))
    ax.set(title=title, ylabel=ylabel, ylim=(-0.02, 1.05))


class LiveTrainingPlot:
    """A training callback collecting ``records``; when ``live``, redraws at each evaluation."""

    def __init__(self, live: bool = True, prune_location=None, task: str | None = None):
        self.live, self.prune_location, self.task = live, prune_location, task
        self.records: list[dict] = []
        self._handle = None

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        if self.live and record.get("kind") == "eval":
            self.redraw()

    def redraw(self) -> None:
        """Draw the curves so far in the notebook (with alt text), in place after the first."""
        from .output import show_figure
        fig = plot_training_curves(self.records, self.prune_location, self.task)
        self._handle = show_figure(fig, handle=self._handle)
        plt.close(fig)  # outside a notebook nothing is shown
