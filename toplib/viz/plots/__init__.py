"""Figures: every ``plot_*`` returns a matplotlib Figure; :func:`save_figure` writes PNG + SVG."""
from __future__ import annotations

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
from .output import FIGURE_FORMATS, figure_alt_text, save_figure, show_figure
from .results import plot_reproduction, plot_seed_results, plot_sparsity_accuracy
from .speed import plot_flops_vs_latency, plot_latency_vs_length, plot_latency_vs_sparsity
from .study import plot_baselines, plot_budget, plot_retargeted
from .tokens import plot_kept_tokens, plot_prune_rates, plot_ranking_agreement
from .training import LiveTrainingPlot, plot_training_curves
