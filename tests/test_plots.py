"""Plot helpers."""


def test_log_axis_labels_are_plain_numbers_and_sparse():
    from toplib.viz.plots.speed import _sparse_log_label
    labels = [_sparse_log_label(v) for v in (20, 30, 50, 70, 0.2, 4000)]
    assert labels == ["20", "30", "50", "", "0.2", ""]


def test_gates_vs_rank_draws_one_panel_per_prune_layer_with_the_data():
    import numpy as np

    from toplib.viz.plots import plot_gates_vs_rank
    p_open = np.random.default_rng(0).uniform(size=(3, 2, 5))
    occupancy = np.full((2, 5), 0.2)
    fig = plot_gates_vs_rank(p_open, occupancy, (2, 3), "t")
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == ["prune layer 2", "prune layer 3"]
    line = axes[1].get_lines()[0]
    assert np.allclose(line.get_ydata(), p_open[:, 1].mean(0))
    assert np.allclose([b.get_height() for b in axes[0].patches], occupancy[0] * 5)


def test_ablation_bars_are_the_means_with_sd_error_bars():
    from toplib.viz.plots import plot_ablation
    table = [{"task": "a", "arm": "x", "seeds": 3, "drop": (-1.0, 0.5)},
             {"task": "a", "arm": "y", "seeds": 3, "drop": (-2.0, 0.25)}]
    ax = plot_ablation(table, ("drop",)).get_axes()[0]
    assert sorted(b.get_height() for b in ax.patches) == [-2.0, -1.0]


def test_constraint_tracking_plots_every_seed_and_the_target():
    from toplib.viz.plots import plot_constraint_tracking
    history = [{"step": s, "measured_sparsity": 0.1 * s, "target_sparsity": 0.05 * s,
                "lambda_1": -s} for s in range(4)]
    s_ax, l_ax = plot_constraint_tracking([history, history], "t").get_axes()
    assert len(s_ax.get_lines()) == 3 and len(l_ax.get_lines()) == 2
    assert list(s_ax.get_lines()[-1].get_ydata()) == [0.0, 0.05, 0.1, 0.15000000000000002]
