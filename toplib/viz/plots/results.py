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
CHANCE_STYLE = dict(color="#c44e52", linestyle=":", linewidth=1.6)
PAPER_STYLE = dict(color="#55a868", linestyle="-.", linewidth=1.4)
TARGET_COLOR = "#8172b3"
CHANCE_LABEL = "chance: label-blind guess (majority class; F1: always positive; corr.: 0)"
NO_PAPER = "no paper result for this task"  # the paper's Table 2 has GLUE tasks only


def plot_sparsity_accuracy(df, metric: str = "accuracy", chance: float | None = None,
                           task: str | None = None):
    """Score against FLOPs reduction of a ``sparsity_sweep`` frame, one panel per convention (real
    length; padded, the paper's; the release's formula, when the frame has it)."""
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
        if chance is not None:
            ax.axhline(chance, label=f"chance (label-blind guess) {chance:.3f}", **CHANCE_STYLE)
        ax.set(xlabel=label)
    name = SCORE_LABELS.get(metric, metric)
    axes[0].set_ylabel(f"{name} (validation)")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{task + ': ' if task else ''}{name} against FLOPs reduction, ToP and "
                 "training-free baselines at matched FLOPs")
    fig.tight_layout()
    return fig


def _pts(value) -> float:
    """A 0-1 score in points (x100, as the paper's table); NaN for None."""
    return float("nan") if value is None else 100.0 * value


def _score_label(row: dict) -> str:
    return f"{SCORE_LABELS.get(row.get('metric'), row.get('metric') or 'score')} (points)"


def _reference_lines(ax, row: dict) -> None:
    """The chance line and the paper's value (another model, named), labelled at the right edge."""
    refs = [(row.get("chance_score"), CHANCE_STYLE, CHANCE_LABEL, "chance {:.1f}")]
    if row.get("paper_score") is not None:
        model = row.get("paper_model") or "the paper's model"
        refs.append((row["paper_score"], PAPER_STYLE,
                     f"paper's result with {model} (another model; its FLOPs: padded)",
                     "paper {:.1f}" + f" at {row.get('paper_reduction') or 0:.2f}x"))
    else:  # say so, rather than leave the reader looking for a line that is not there
        ax.annotate(NO_PAPER, xy=(0.99, 0.02), xycoords="axes fraction", ha="right",
                    va="bottom", fontsize=7, color=PAPER_STYLE["color"])
    for value, style, label, text in refs:
        if value is None:
            continue
        ax.axhline(_pts(value), label=label, zorder=1, **style)
        ax.annotate(text.format(_pts(value)), xy=(0.99, _pts(value)), fontsize=7,
                    xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    color=style["color"])


def _teacher_and_seeds(ax, row: dict, color, at: float | None = None) -> None:
    """The teacher as a star at 0, ToP's seeds as dots and their mean ± sd as a diamond: at
    ``at`` (a category), or at each seed's real-length sparsity and their mean ± sd when None."""
    ax.scatter([0.0], [_pts(row["teacher_score"])], marker="*", s=170, color="black",
               label="teacher (dense)", zorder=4)
    scores = row.get("scores") or [row["score"]]
    xs, x, xerr = ((np.full(len(scores), at), at, None) if at is not None else
                   (row["seed_sparsities"], row["sparsity_real"], row.get("sparsity_real_std") or 0))
    ax.scatter(xs, np.multiply(scores, 100), s=20, color=color, alpha=0.6,
               label="ToP, each seed", zorder=3)
    ax.errorbar(x, _pts(row["score"]), yerr=_pts(row.get("score_std") or 0.0), xerr=xerr,
                fmt="D", color=color, capsize=5, label="ToP, mean ± sd over seeds", zorder=4)


def _figure_legend(fig, axes, **where) -> None:
    """One legend for all panels: every label drawn on any of ``axes``, once."""
    found = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    fig.legend(found.values(), found.keys(), fontsize=8, frameon=False, **where)


def plot_reproduction(rows: list[dict]):
    """Per task, the teacher and ToP's seeds against chance and the paper; below, FLOPs sparsity
    three ways."""
    sns.set_theme(style="whitegrid", context="notebook")
    colors = sns.color_palette("deep", 4)
    fig = plt.figure(figsize=(max(9.0, 2.7 * len(rows) + 1.5), 8.0))
    grid = fig.add_gridspec(2, len(rows), height_ratios=(1.3, 1.0), hspace=0.75, wspace=0.5)
    score_axes = [fig.add_subplot(grid[0, i]) for i in range(len(rows))]
    for ax, r in zip(score_axes, rows):
        _teacher_and_seeds(ax, r, colors[0], at=1)
        _reference_lines(ax, r)
        missed = "\ntarget missed" if r.get("target_missed") or r.get("targets_missed") else ""
        ax.set_xticks([0, 1], ["teacher\n(dense)", f"ToP\n({r.get('n_seeds', 1)} seed"
                               f"{'s' if r.get('n_seeds', 1) > 1 else ''})"])
        ax.set(xlim=(-0.6, 1.6), ylabel=_score_label(r), title=f"{r['task']}{missed}")
        ax.margins(y=0.2)
    _sparsity_panel(fig.add_subplot(grid[1, :]), rows, colors)
    model = rows[0].get("model")
    fig.suptitle("ToP per task: score on the task's metric, and FLOPs sparsity"
                 + (f" ({model})" if model else ""), fontsize=11)
    _figure_legend(fig, score_axes, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=2)
    fig.subplots_adjust(top=0.8)
    return fig


def _sparsity_panel(ax, rows: list[dict], colors) -> None:
    """Grouped bars of FLOPs sparsity per task, three accountings, the paper's as a tick."""
    keys = (("sparsity_real", "measured, real length"), ("sparsity_padded", "measured, padded"),
            ("sparsity_release_padded", "release's formula, padded"))
    x, width = np.arange(len(rows)), 0.76 / len(keys)
    for j, (key, label) in enumerate(keys):
        values = [float("nan") if r.get(key) is None else r[key] for r in rows]
        bars = ax.bar(x + (j - 1) * width, values, width=width, label=label, color=colors[j + 1])
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    paper = [1 - 1 / r["paper_reduction"] if r.get("paper_reduction") else float("nan")
             for r in rows]
    if not all(np.isnan(paper)):
        ax.scatter(x + width, paper, marker="_", s=900, linewidths=2.5, color="black", zorder=3,
                   label="paper (bert-base-uncased), release's formula, padded")
    ax.set_xticks(x, [r["task"] + ("" if r.get("paper_reduction") else f"\n({NO_PAPER})")
                      for r in rows])
    ax.set(ylabel="FLOPs sparsity", ylim=(0, 1.08))
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)


def _curves(ax, row: dict, colors) -> None:
    """The seeds' models with their gates re-derived (mean ± sd), the teacher pruned by its own
    attention without training, and the band within one point of the teacher."""
    curve = row.get("curve")
    if not curve:
        return
    for points, label, color, style in (
            (curve["seeds"], "ToP's models, gates re-derived (mean ± sd)", colors[0], "-"),
            (curve["teacher"], "teacher, attention pruning without training", colors[1], "--")):
        x = [p["sparsity_real"] for p in points]
        y = np.array([_pts(p["score"]) for p in points])
        ax.plot(x, y, linestyle=style, marker=".", color=color, linewidth=1.2, label=label)
        sd = np.array([_pts(p["score_std"] or 0.0) for p in points])
        ax.fill_between(x, y - sd, y + sd, color=color, alpha=0.15, linewidth=0)
    ax.axhspan(_pts(row["teacher_score"]) - 1, _pts(row["teacher_score"]), color="black",
               alpha=0.13, label="within 1 point of the teacher")


def plot_seed_results(rows: list[dict]):
    """Score against real-length FLOPs sparsity per task: seeds, mean ± sd, teacher, target, chance
    and the paper's value (at its own padded FLOPs, not on this axis); with the seeds' curves
    (``row['curve']``), their models re-derived for other sparsities and the untrained teacher."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows) + 0.6, 4.8), squeeze=False)
    colors = sns.color_palette("deep", 4)
    for ax, r in zip(axes[0], rows):
        _teacher_and_seeds(ax, r, colors[0])
        _curves(ax, r, colors)
        ax.axvline(r["target_sparsity"], color=TARGET_COLOR, linestyle="--", linewidth=1,
                   label="target sparsity")
        _reference_lines(ax, r)
        missed = f", {r['targets_missed']} missed the target" if r.get("targets_missed") else ""
        epochs = f", {r['epochs']:g} ToP epochs" if r.get("epochs") else ""
        ax.set_title(f"{r['task']}: {r['n_seeds']} seed(s){epochs}{missed}", fontsize=9)
        ax.set(xlabel="FLOPs sparsity, real length", ylabel=_score_label(r), xlim=(-0.05, 1.0))
        ax.margins(y=0.25)
    fig.suptitle(f"ToP against its teacher, {rows[0].get('model', '')}", fontsize=11)
    fig.tight_layout(rect=(0, 0.22, 1, 1))
    _figure_legend(fig, axes[0], loc="lower center", ncol=2)
    return fig
