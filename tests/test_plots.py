"""Plot helpers."""
import pytest


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
    assert axes[0].get_legend() is None and fig.legends  # the legend covers no panel's data
    assert axes[1].texts[0].get_text() == (f"bin 4: P(open) {p_open[:, 1, -1].mean():.2f}\n"
                                           "20.0% of the tokens")



@pytest.mark.parametrize("m, bin_num", [(32, 25), (10, 4), (6, 25)])
def test_rank_bins_label_and_bound_each_bin_over_its_own_bars(m, bin_num):
    """The failure this guards: lines at b m / BIN_NUM - 0.5 and labels between them cut
    through bars, so a token coloured bin 0 sat under the number 1 (m = 32, 25 bins)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from toplib.viz.method import importance_table
    from toplib.viz.plots import plot_rank_bins
    importance = torch.linspace(1.0, 0.1, m + 1)  # [CLS] first, then ranks 0..m-1 in order
    table = importance_table(["[CLS]"] + [f"t{i}" for i in range(m)], importance, bin_num)
    fig = plot_rank_bins(table, bin_num, "t")
    ax = fig.get_axes()[0]
    expected = {r: r * bin_num // m for r in range(m)}  # floor(r / m * BIN_NUM), by hand
    labels = {int(t.get_text()): t.get_position()[0] for t in ax.texts}
    assert set(labels) == set(expected.values())  # one number per occupied bin, no empty one
    for b, x in labels.items():  # each number over the middle of its own bars
        assert x == pytest.approx(np.mean([r for r, e in expected.items() if e == b]))
    lines = sorted(line.get_xdata()[0] for line in ax.get_lines())
    changes = [r - 0.5 for r in range(1, m) if expected[r] != expected[r - 1]]
    assert lines == pytest.approx([-0.5, *changes, m - 0.5])  # between bars, where bins change
    colours = {}
    for r, bar in enumerate(ax.patches):  # a bar's colour is its bin's, alternating by bin
        colours.setdefault(expected[r] % 2, bar.get_facecolor())
        assert bar.get_facecolor() == colours[expected[r] % 2]
    plt.close(fig)


def test_ablation_bars_are_the_means_with_sd_error_bars():
    from toplib.viz.plots import plot_ablation
    table = [{"task": "a", "arm": "x", "seeds": 3, "drop": (-1.0, 0.5)},
             {"task": "a", "arm": "y", "seeds": 3, "drop": (-2.0, 0.25)}]
    ax = plot_ablation(table, ("drop",)).get_axes()[0]
    assert sorted(b.get_height() for b in ax.patches) == [-2.0, -1.0]


def test_study_figures_draw_the_means_over_seeds_and_every_seed():
    import pandas as pd

    from toplib.viz.plots import plot_baselines, plot_budget, plot_retargeted
    budget = pd.DataFrame([dict(task=t, budget=b, seed=s, drop=-b * s - 1, sparsity_real=0.7)
                           for t in ("a", "b") for b in (1, 3) for s in (0, 1, 2)])
    ax = plot_budget(budget).get_axes()[0]
    means = [list(c.lines[0].get_ydata()) for c in ax.containers]
    assert means == [[-2.0, -4.0], [-2.0, -4.0]]  # seeds 0, 1, 2: mean of -1, -2, -3 at 1x
    from matplotlib.collections import PathCollection
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in dots) == 12  # every seed a dot
    methods = pd.DataFrame([dict(task="a", method=m, seed=s, drop=d + s, sparsity_real=x)
                            for m, d, x in (("ToP", -1.0, 0.52), ("random", -9.0, 0.5))
                            for s in (0, 2)])
    ax = plot_baselines(methods, ["random", "ToP"]).get_axes()[0]
    assert [b.get_height() for b in ax.patches] == [-8.0, 0.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["random (0.50)", "ToP (0.52)"]
    points = pd.DataFrame([dict(source=0.7, target=0.7, requested=r, seed=s,
                                sparsity_real=r, score=80 - 10 * r + s) for r in (0.3, 0.6)
                           for s in (0, 1)] + [dict(source="trained", target=0.7,
                                                    requested=0.7, seed=0, sparsity_real=0.71,
                                                    score=70.0)])
    ax = plot_retargeted(points, "a", teacher=80.0).get_axes()[0]
    curve, trained = ax.containers
    assert list(curve.lines[0].get_ydata()) == [77.5, 74.5]
    assert list(trained.lines[0].get_xdata()) == [0.71]


def test_constraint_tracking_plots_every_seed_and_the_target():
    from toplib.viz.plots import plot_constraint_tracking
    history = [{"step": s, "measured_sparsity": 0.1 * s, "target_sparsity": 0.05 * s,
                "lambda_1": -s} for s in range(4)]
    s_ax, l_ax = plot_constraint_tracking([history, history], "t").get_axes()
    assert len(s_ax.get_lines()) == 3 and len(l_ax.get_lines()) == 2
    assert list(s_ax.get_lines()[-1].get_ydata()) == [0.0, 0.05, 0.1, 0.15000000000000002]


# ---- training curves, ranking agreement, prune rates: what the labels and titles promise -----
def _pruning_history(alpha=1e-3, warmup=4):
    history = [dict(kind="train", step=s, distill_loss=0.1 * s, lagrangian_loss=0.05 - 0.02 * s,
                    rank_loss=3.3, rank_weight=alpha * max(0.01, 1 - s / warmup), loss=1.0,
                    expected_sparsity=0.1 * s, target_sparsity=0.1 * min(s, warmup),
                    lambda_1=-s, lambda_2=s, expected_keep_ratio=[1 - 0.1 * s, 1 - 0.05 * s])
               for s in range(1, 7)]
    history.append(dict(kind="eval", step=6, score=0.7, sparsity_real=0.4,
                        keep_ratio=[1.0, 1.0, 0.8, 0.5]))
    return history


def _axis(fig, title_part):
    return next(a for a in fig.get_axes() if title_part in a.get_title())


def test_training_curves_name_task_and_metric_and_label_both_keep_ratios_honestly():
    import matplotlib.pyplot as plt
    import numpy as np

    from toplib.viz.plots import plot_training_curves
    history = _pruning_history()
    fig = plot_training_curves(history, (2, 3), task="rotten_tomatoes", best_step=6)
    assert fig._suptitle.get_text() == "ToP pruning · rotten_tomatoes · accuracy"
    score = _axis(fig, "validation accuracy")
    assert score.get_ylabel() == "accuracy"
    assert any("best checkpoint: 0.700 @ step 6" in t.get_text() for t in score.get_legend().texts)
    conditional = _axis(fig, "expected keep ratio at each prune layer")
    cumulative = _axis(fig, "measured tokens entering each layer")
    assert "conditional" in conditional.get_title() and "cumulative" in cumulative.get_title()
    assert conditional.get_ylabel() == "kept / tokens entering the layer"
    assert cumulative.get_ylabel() == "tokens entering / real tokens"
    # the rank panel carries the weight on a log-scaled twin axis, as recorded
    weight_ax = next(a for a in fig.get_axes() if a.get_ylabel() == "weight")
    assert weight_ax.get_yscale() == "log"
    assert np.allclose(weight_ax.get_lines()[0].get_ydata(), [r["rank_weight"] for r in history[:-1]])
    terms = _axis(fig, "terms of the total loss")
    weighted = next(line for line in terms.get_lines() if line.get_label() == "weight x rank loss")
    assert np.allclose(weighted.get_ydata(), [r["rank_weight"] * 3.3 for r in history[:-1]])
    plt.close(fig)


def test_fine_tuning_curves_name_the_stage_task_and_metric():
    import matplotlib.pyplot as plt

    from toplib.viz.plots import plot_training_curves
    history = [dict(kind="train", step=s, task_loss=0.7 - 0.1 * s) for s in range(1, 4)]
    history += [dict(kind="eval", step=s, score=0.6 + 0.01 * s) for s in (1, 3)]
    fig = plot_training_curves(history, task="rotten_tomatoes", best_step=3)
    assert fig._suptitle.get_text() == "teacher fine-tuning · rotten_tomatoes · accuracy"
    assert len(fig.get_axes()) == 2 and _axis(fig, "validation accuracy").get_ylabel() == "accuracy"
    plt.close(fig)


def test_ranking_agreement_plots_the_mean_over_seeds_with_sd_and_counts_them():
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from toplib.viz.plots import plot_ranking_agreement
    rows = [dict(model=m, seed=s, layer=layer, kendall_tau=0.1 * layer + 0.01 * (s or 0) + d,
                 ndcg=0.5, decides_pruning=layer == 1 and m != "teacher")
            for m, seeds, d in (("teacher", [None], 0.0), ("ToP", [0, 1, 2], 0.05),
                                ("no rank", [0, 1, 2], 0.0))
            for s in seeds for layer in range(3)]
    fig = plot_ranking_agreement(pd.DataFrame(rows), k=5, task="rte")
    assert fig._suptitle.get_text().startswith("rte · ") and "over 3 seeds" in fig._suptitle.get_text()
    tau = fig.get_axes()[0]
    labels = [t.get_text() for t in tau.get_legend().texts]
    assert labels == ["teacher (one model)", "ToP (3 seeds)", "no rank (3 seeds)"]
    top_mean = tau.get_lines()[1].get_ydata()  # line 0: the teacher's
    assert np.allclose(top_mean, [0.1 * layer + 0.01 + 0.05 for layer in range(3)])
    band = tau.collections  # one band per seeded model: mean +- sd (sd of 0, 0.01, 0.02 = 0.01)
    assert any(np.isclose(np.ptp(c.get_paths()[0].vertices[:, 1]), 0.2 + 0.02) for c in band)
    plt.close(fig)


def test_prune_rates_mark_the_overall_rate_and_colour_kinds():
    import matplotlib.pyplot as plt
    import pandas as pd

    from toplib.viz.plots import plot_prune_rates
    df = pd.DataFrame({"token": ["the", ",", "film"], "count": [10, 10, 20],
                       "prune_rate": [0.9, 0.8, 0.1], "mean_layers": [2.0, 3.0, 5.5],
                       "kind": ["stop word", "punctuation", "content word"]})
    fig = plot_prune_rates(df, top_n=2, task="rte")
    left = fig.get_axes()[0]
    assert fig._suptitle.get_text() == "rte · most-pruned token types (top 2 among frequent ones)"
    labels = [t.get_text() for t in fig.legends[0].texts]
    assert labels == ["all frequent types: 48%", "stop word", "punctuation"]  # (9 + 8 + 2) / 40
    assert [b.get_width() for b in left.patches] == [0.9, 0.8]
    plt.close(fig)
    fig = plot_prune_rates(df, top_n=1, least_n=1)  # the ends: most and least pruned
    assert [t.get_text() for t in fig.get_axes()[0].get_yticklabels()] == ["the  (n=10)", "film  (n=20)"]
    assert "below the line the 1 least pruned" in fig._suptitle.get_text()
    plt.close(fig)


def _seed_rows():
    """Two seed_row-like rows on different metrics: CoLA (paper value) and an offline task."""
    common = dict(n_seeds=2, targets_missed=0, target_sparsity=0.5, sparsity_real=0.5,
                  sparsity_real_std=0.01, seed_sparsities=[0.49, 0.51], sparsity_padded=0.8,
                  sparsity_release_padded=0.79, model="m")
    return [dict(common, task="cola", metric="matthews", scores=[0.25, 0.27], score=0.26,
                 score_std=0.014, teacher_score=0.3, chance_score=0.0, paper_score=0.603,
                 paper_reduction=10.39, paper_model="bert-base-uncased"),
            dict(common, task="rotten_tomatoes", metric="accuracy", scores=[0.78, 0.8], score=0.79,
                 score_std=0.014, teacher_score=0.8, chance_score=0.548, paper_score=None,
                 paper_reduction=None)]


def _hlines(ax) -> dict:
    """{label: y} of the horizontal reference lines of an axis."""
    return {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()
            if len(set(line.get_ydata())) == 1 and not line.get_label().startswith("_")}


def test_reproduction_has_a_panel_per_task_with_its_metric_chance_and_paper():
    import pytest

    from toplib.viz.plots import plot_reproduction, plot_seed_results
    from toplib.viz.plots.results import CHANCE_LABEL, NO_PAPER
    rows = _seed_rows()
    for fig in (plot_reproduction(rows), plot_seed_results(rows)):
        cola, rt = fig.get_axes()[:2]
        assert "Matthews" in cola.get_ylabel() and "accuracy" in rt.get_ylabel()
        lines = _hlines(cola)
        assert lines[CHANCE_LABEL] == 0.0
        paper = next(k for k in lines if "paper" in k)
        assert "bert-base-uncased" in paper and lines[paper] == pytest.approx(60.3)
        assert _hlines(rt)[CHANCE_LABEL] == pytest.approx(54.8)
        assert not any("paper" in k for k in _hlines(rt))  # no paper value for this task
        assert [t.get_text() for t in rt.texts if "paper" in t.get_text()] == [NO_PAPER]
        assert not any(NO_PAPER in t.get_text() for t in cola.texts)  # cola has one
        # each seed a dot, the mean ± sd as an error bar
        dots = [c for c in cola.collections if c.get_label() == "ToP, each seed"]
        assert sorted(dots[0].get_offsets()[:, 1]) == pytest.approx([25.0, 27.0])
        assert any("mean ± sd" in t.get_text() for t in fig.legends[0].get_texts())


def test_sweep_figure_names_the_metric_and_draws_chance_and_teacher():
    import pandas as pd

    from toplib.viz.plots import plot_sparsity_accuracy
    df = pd.DataFrame([dict(method=m, score=s, reduction_real=r, reduction_padded=2 * r)
                       for m, s, r in (("teacher", 0.8, 1.0), ("ToP", 0.78, 2.0),
                                       ("attention", 0.7, 2.0), ("random", 0.6, 2.0))])
    fig = plot_sparsity_accuracy(df, "accuracy", chance=0.55, task="rotten_tomatoes")
    assert fig._suptitle.get_text().startswith("rotten_tomatoes: accuracy")
    for ax in fig.get_axes():
        ys = {k.split(" ")[0]: v for k, v in _hlines(ax).items()}
        assert ys["chance"] == 0.55 and ys["teacher"] == 0.8


# ---- alt text: in the files, in a notebook's outputs, through nbconvert -----------------------
def _two_panel_figure():
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([0, 1], [1, 0])
    a.set(title="loss", xlabel="step", ylabel="nats")
    b.set(title="sparsity", xlabel="step")
    fig.suptitle("ToP pruning · rotten_tomatoes")
    return fig


def test_alt_text_says_what_the_figure_draws():
    import matplotlib.pyplot as plt

    from toplib.viz.plots import figure_alt_text
    fig = _two_panel_figure()
    assert figure_alt_text(fig, "curves") == (
        "Figure curves. ToP pruning · rotten_tomatoes. 2 panels: loss (x: step; y: nats); "
        "sparsity (x: step).")
    plt.close(fig)


def test_saved_figures_carry_their_alt_text(tmp_path):
    from PIL import Image

    from toplib.viz.plots import figure_alt_text, save_figure
    fig = _two_panel_figure()
    alt = figure_alt_text(fig, "curves")
    png, svg = save_figure(fig, "curves", str(tmp_path))  # outside a kernel: files only
    assert Image.open(png).text["Description"] == alt
    assert f"<dc:description>{alt}</dc:description>" in open(svg, encoding="utf-8").read()
    assert save_figure(fig, "again", str(tmp_path), alt="mine")  # an explicit alt wins
    assert Image.open(tmp_path / "again.png").text["Description"] == "mine"


def test_the_notebook_bundle_exports_with_alt_text_and_no_nbconvert_warning(caplog):
    import base64
    import logging

    import matplotlib.pyplot as plt
    import nbformat
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    from toplib.viz.plots.output import figure_bundle
    fig = _two_panel_figure()
    bundle = figure_bundle(fig, 'panels "a" & <b>')
    plt.close(fig)
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["image/png"] in bundle["text/html"] and bundle["text/plain"] == 'panels "a" & <b>'
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "fig", outputs=[nbformat.v4.new_output("display_data", data=bundle)])])
    with caplog.at_level(logging.WARNING):
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    (img,) = BeautifulSoup(body, "html.parser").select(".jp-OutputArea-output img")
    assert img["alt"] == 'panels "a" & <b>' and img["src"].endswith(bundle["image/png"])
    assert not [r for r in caplog.records if "Alternative text" in r.getMessage()]
    # the control: a bare image/png, as the inline backend shows a figure, does warn
    nb.cells[0].outputs[0].data = {"image/png": bundle["image/png"]}
    with caplog.at_level(logging.WARNING):
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    assert "No description has been provided" in body
    assert [r for r in caplog.records if "Alternative text is missing" in r.getMessage()]
