"""Figures. Every ``plot_*`` function returns a matplotlib Figure (seaborn style), so
notebooks, scripts and tests draw the same thing; :func:`save_figure` writes PNG + SVG."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt

from .ablation import plot_ablation, plot_constraint_tracking, plot_gates_vs_rank
from .method import (
    plot_attention_importance,
    plot_gate_heatmap,
    plot_hard_concrete,
    plot_lambda_loss,
    plot_mac_terms,
    plot_masked_vs_dropped,
    plot_rank_bins,
    plot_toy_lagrangian,
)
from .results import plot_reproduction, plot_seed_results, plot_sparsity_accuracy
from .speed import plot_flops_vs_latency, plot_latency_vs_length, plot_latency_vs_sparsity
from .tokens import plot_kept_tokens, plot_prune_rates, plot_ranking_agreement
from .training import LiveTrainingPlot, plot_training_curves

FIGURE_FORMATS = ("png", "svg")
def save_figure(fig, name: str, directory: str = "figures", formats=FIGURE_FORMATS,
                dpi: int = 150) -> list[str]:
    """Write ``fig`` as ``<directory>/<name>.png`` and ``.svg`` (vector); returns the paths.
    The SVG carries no date and a fixed id salt, so re-running with fixed seeds rewrites
    identical files."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for fmt in formats:
        path = os.path.join(directory, f"{name}.{fmt}")
        metadata = {"Date": None} if fmt in ("svg", "pdf") else {}
        with plt.rc_context({"svg.hashsalt": "toplib"}):
            fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths
