"""Analyses (kept tokens, ranking agreement, prune rates, baselines at matched FLOPs), the
explorer's rendering, the notebook helpers and the figures, on tiny models built in code."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import tiny_classifier
from scipy.stats import kendalltau
from sklearn.metrics import ndcg_score

from toplib.core.config import PruneConfig, parse_list
from toplib.core.ranking import graded_relevance, kendall_tau, ndcg_at_k
from toplib.data import TextData, encode, get_task, make_loader
from toplib.hf.model import ToPModel, resolve_model_path
from toplib.infer import set_eval_sparsity
from toplib.train.evaluate import EvalMode
from toplib.viz import analysis, explorer, plots
from toplib.viz.notebook import per_task_values, read_metrics, record_metrics
from toplib.viz.sweep import evaluate_with_gates

WORDS = ("the film is a quiet , witty and gorgeous study of grief that never quite lands "
         "its final act but the cast is superb").split()
LAYERS = 4


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(resolve_model_path(None))


@pytest.fixture(scope="module")
def top(tokenizer):
    """A random 4-layer BERT over the MiniLM vocabulary, gates at FLOPs sparsity ~0.5."""
    hf = tiny_classifier(vocab_size=tokenizer.vocab_size, num_labels=2, max_position_embeddings=128)
    model = ToPModel(hf, PruneConfig(bin_num=20)).eval()
    set_eval_sparsity(model, torch.tensor([20, 30]), 0.5)
    return model


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(8, 40))) for _ in range(n)]


# ---- ranking metrics against scipy / scikit-learn ---------------------------------------------
RANKING_CASES = [  # x, y (ties in both), mask
    ([3.0, 1.0, 2.0, 5.0, 4.0], [2.0, 1.0, 3.0, 5.0, 4.0], [1, 1, 1, 1, 1]),
    ([1.0, 1.0, 2.0, 3.0, 0.5, 9.0], [0.1, 0.3, 0.3, 0.9, 0.0, -5.0], [1, 1, 1, 1, 1, 0]),
    ([0.2, 0.4, 0.1, 0.9, 0.3, 0.8], [0.9, 0.1, 0.5, 0.2, 0.2, 0.7], [0, 1, 1, 1, 1, 1]),
]


@pytest.mark.parametrize("x, y, mask", RANKING_CASES)
def test_kendall_tau_matches_scipy_tau_b(x, y, mask):
    m = np.array(mask, dtype=bool)
    expected = kendalltau(np.array(x)[m], np.array(y)[m]).statistic  # tau-b
    got = kendall_tau(torch.tensor([x]), torch.tensor([y]), torch.tensor([mask]))
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_kendall_tau_batches_rows_and_flags_degenerate_ones():
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    y = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    tau = kendall_tau(x, y, torch.ones(3, 3, dtype=torch.bool))
    assert tau[:2].tolist() == [1.0, -1.0] and tau[2].isnan()  # all tied: undefined


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ndcg_matches_sklearn(k):
    scores = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2]  # distinct: no tie handling involved
    relevance = [3.0, 0.0, 2.0, 1.0, 0.0, 4.0]
    mask = [1, 1, 1, 1, 1, 0]
    m = np.array(mask, dtype=bool)
    expected = ndcg_score([np.array(relevance)[m]], [np.array(scores)[m]], k=k)
    got = ndcg_at_k(torch.tensor([scores]), torch.tensor([relevance]), torch.tensor([mask]), k)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_graded_relevance_grades_the_teachers_top_k():
    teacher = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3]])
    mask = torch.tensor([[False, True, True, True, True]])  # position 0 ([CLS]) excluded
    assert graded_relevance(teacher, mask, 3).tolist() == [[0.0, 0.0, 2.0, 3.0, 1.0]]
    short = torch.tensor([[False, True, True, False, False]])  # fewer entries than k
    assert graded_relevance(teacher, short, 3).tolist() == [[0.0, 1.0, 2.0, 0.0, 0.0]]


def test_a_ranking_agrees_perfectly_with_itself():
    s = torch.rand(4, 12)
    mask = torch.rand(4, 12) > 0.3
    mask[:, :3] = True
    assert torch.allclose(kendall_tau(s, s, mask), torch.ones(4, dtype=torch.float64))
    ndcg = ndcg_at_k(s, graded_relevance(s, mask, 5), mask, 5)
    assert torch.allclose(ndcg, torch.ones(4, dtype=torch.float64))


# ---- kept tokens and agreement ---------------------------------------------------------------
def test_kept_token_matrices(top, tokenizer):
    texts = sentences(5)
    kept = analysis.kept_tokens(top, tokenizer, texts, batch_size=4)
    texts.append(("a premise sentence", "and its hypothesis"))
    kept += analysis.kept_tokens(top, tokenizer, texts[-1:])
    assert len(kept) == len(texts)
    for item, text in zip(kept, texts):
        n = len(tokenizer(*([text] if isinstance(text, str) else text))["input_ids"])
        assert item.kept.shape == (LAYERS, n) and len(item.tokens) == n
        assert item.tokens[0] == "[CLS]" and item.kept[:, 0].all()  # [CLS] always kept
        assert item.kept[0].all()  # nothing is pruned before the first prune location
        assert (item.kept[1:] <= item.kept[:-1]).all()  # a pruned token never comes back
        assert sum(item.probabilities) == pytest.approx(1.0)
    assert any(not k.kept[-1].all() for k in kept)  # the gates prune something
    dense = analysis.kept_tokens(top, tokenizer, texts[:2], pruning=False)
    assert all(k.kept.all() for k in dense)


def test_ranking_agreement_of_the_teacher_with_itself(top, tokenizer):
    df = analysis.ranking_agreement(top, top, tokenizer, sentences(6), k=5, pruning=False)
    assert list(df["layer"]) == list(range(LAYERS))
    last = df.iloc[-1]
    assert last["kendall_tau"] == pytest.approx(1.0) and last["ndcg"] == pytest.approx(1.0)
    assert not df["decides_pruning"].any()  # a dense pass prunes nowhere
    pruned = analysis.ranking_agreement(top, top, tokenizer, sentences(6), k=5)
    locations = top.prune.prune_location
    assert list(pruned["decides_pruning"]) == [i + 1 in locations for i in range(LAYERS)]
    assert (pruned["tokens"].diff().dropna() <= 0).all()
    assert pruned["ndcg"].dropna().between(0, 1).all()


# ---- baselines at matched FLOPs --------------------------------------------------------------
@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_baselines_land_on_the_requested_flops(top, tokenizer, target):
    texts = sentences(48, seed=1)
    encoded = encode(TextData([(t,) for t in texts], [i % 2 for i in range(len(texts))]),
                     tokenizer, 64)
    loaders = {"validation": make_loader(encoded, 16, tokenizer, shuffle=False)}
    lengths = torch.tensor([len(e["input_ids"]) for e in encoded])
    baseline = ToPModel(tiny_classifier(vocab_size=tokenizer.vocab_size, num_labels=2,
                                        max_position_embeddings=128), PruneConfig(bin_num=20))
    achieved = set_eval_sparsity(baseline, lengths, target)
    gates = baseline.gates(training=False)
    spec = get_task("rotten_tomatoes")
    results = {method: evaluate_with_gates(baseline, loaders, spec, 64, EvalMode(
                   gates=gates, random_ranking=method == "random"))
               for method in ("attention", "random")}
    for m in results.values():
        assert m["sparsity_real"] == pytest.approx(achieved, abs=1e-9)  # the schedule's FLOPs
        assert abs(m["sparsity_real"] - target) < 0.03  # within a few % of the request
        assert 0.0 <= m["score"] <= 1.0 and m["sparsity_padded"] >= m["sparsity_real"]
    assert results["attention"]["keep_ratio"] == results["random"]["keep_ratio"]


# ---- explorer --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(top, tokenizer, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("explorer") / "top" / "best")
    top.save_pretrained(path, tokenizer, {"stage": "prune", "task": "rotten_tomatoes",
                                          "max_seq_length": 64})
    return path


def test_render_html_shows_every_layer(checkpoint):
    sentence = "A witty and gorgeous film, though its final act drags."
    page = explorer.render_html(sentence, checkpoint, 0.5)
    shown = explorer.html_summary(page)
    assert len(shown["top"]) == len(shown["baseline"]) == LAYERS
    assert shown["top"][0] == shown["baseline"][0] == shown["tokens"] > 5
    for kept in (shown["top"], shown["baseline"]):
        assert all(a >= b >= 1 for a, b in zip(kept, kept[1:]))
    assert shown["baseline"][-1] < shown["tokens"]  # the baseline prunes at sparsity 0.5
    rows = page.split('<tr class="toplib-layer"')[1:]
    assert all('toplib-token-kept" style="background:#cfe8cf;border-radius:3px;padding:0 3px;'
               'margin:1px;display:inline-block">[CLS]' in r for r in rows)  # [CLS] in every row
    assert "rotten" in page or "fresh" in page  # the task's label names
    assert page == explorer.render_html(sentence, checkpoint, 0.5)  # a pure function


def test_render_html_sparsity_escaping_and_errors(checkpoint):
    low = explorer.html_summary(explorer.render_html("a long and winding sentence about a film",
                                                     checkpoint, 0.1))
    high = explorer.html_summary(explorer.render_html("a long and winding sentence about a film",
                                                      checkpoint, 0.8))
    assert sum(high["baseline"]) < sum(low["baseline"])
    page = explorer.render_html("<script>alert(1)</script>", checkpoint, 0.5)
    assert "<script>" not in page and "&lt;" in page
    assert "Type a sentence" in explorer.render_html("   ", checkpoint, 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        explorer.render_html("a film", checkpoint, 1.0)


def test_explorer_app_updates_on_every_change(checkpoint):
    app = explorer.explorer_app([checkpoint], "a quiet film", 0.5)
    text, choice, slider, precision, output = app.children
    descriptions = (text.description, choice.description, slider.description)
    assert descriptions == ("Sentence", "Checkpoint", "Sparsity")
    assert "toplib-kept" in output._dom_classes
    assert "toplib-sentence" in text._dom_classes
    before = output.value
    assert "quiet" in before
    text.value = "a loud and funny comedy"
    assert "funny" in output.value and "quiet" not in output.value
    after_text = output.value
    slider.value = 0.8
    assert output.value != after_text
    assert precision.description == "Precision" and precision.value == "float32"
    precision.value = "bfloat16"  # the same sentence, rendered by the bf16 copies
    assert "funny" in output.value and "toplib-error" not in output.value
    assert explorer.find_checkpoints(os.path.dirname(os.path.dirname(checkpoint))) == [checkpoint]


# ---- notebook helpers and figures ------------------------------------------------------------
def test_record_and_read_metrics(tmp_path):
    path = record_metrics({"score": np.float32(0.5), "gap": float("nan"), "v": np.arange(2)},
                          str(tmp_path), "nb")
    assert json.load(open(path)) == {"score": 0.5, "gap": None, "v": [0, 1], "notebook": "nb"}
    assert read_metrics(str(tmp_path))["score"] == 0.5


def test_parameter_parsing():
    assert parse_list("0.3, 0.5,0.7") == [0.3, 0.5, 0.7] and parse_list(None) == []
    assert parse_list("sst2,rte", str) == ["sst2", "rte"] and parse_list(0.5) == [0.5]
    assert per_task_values(None, ["a"]) == {"a": None}
    assert per_task_values(0.4, ["a", "b"]) == {"a": 0.4, "b": 0.4}
    assert per_task_values("b:0.6", ["a", "b"]) == {"a": None, "b": 0.6}
    with pytest.raises(ValueError, match="not among"):
        per_task_values("c:0.6", ["a", "b"])


def test_plot_functions_return_figures_and_save_both_formats(top, tokenizer, tmp_path):
    import pandas as pd
    from matplotlib.figure import Figure
    kept = analysis.kept_tokens(top, tokenizer, sentences(2))
    agreement = analysis.ranking_agreement(top, top, tokenizer, sentences(4), k=5)
    agreement["model"] = "ToP"
    sweep = pd.DataFrame([
        dict(method="teacher", score=0.8, reduction_real=1.0, reduction_padded=2.0),
        dict(method="ToP", score=0.78, reduction_real=2.0, reduction_padded=4.0),
        dict(method="attention", score=0.7, reduction_real=2.0, reduction_padded=4.0),
        dict(method="random", score=0.6, reduction_real=2.0, reduction_padded=4.0)])
    history = [dict(kind="train", step=s, distill_loss=1.0 / s, lagrangian_loss=0.1, rank_loss=2.0,
                    expected_sparsity=0.1 * s, target_sparsity=0.5, lambda_1=-s, lambda_2=s,
                    expected_keep_ratio=[1 - 0.1 * s] * 3) for s in range(1, 5)]
    history.append(dict(kind="eval", step=4, score=0.7, sparsity_real=0.4,
                        keep_ratio=[1, 0.8, 0.6, 0.5]))
    row = dict(task="sst2", score=0.9, teacher_score=0.92, reduction_real=1.8,
               reduction_padded=3.5)
    figures = {
        "kept": plots.plot_kept_tokens(kept, titles=["a", "b"]),
        "agreement": plots.plot_ranking_agreement(agreement, 5),
        "rates": plots.plot_prune_rates(pd.DataFrame({
            "token": ["the", "film"], "count": [3, 2], "prune_rate": [2 / 3, 0.5],
            "mean_layers": [2.0, 2.5], "kind": ["stop word", "content word"]}), 5),
        "sweep": plots.plot_sparsity_accuracy(sweep),
        "curves": plots.plot_training_curves(history, (1, 2, 3)),
        "teacher_curves": plots.plot_training_curves([dict(kind="train", step=1, task_loss=0.6),
                                                      dict(kind="eval", step=1, score=0.7)]),
        "table": plots.plot_reproduction([row]),
    }
    assert len(figures["curves"].axes) == 9 and len(figures["teacher_curves"].axes) == 2
    assert all(isinstance(fig, Figure) for fig in figures.values())
    paths = plots.save_figure(figures["sweep"], "sweep", str(tmp_path))  # rendering is slow: one
    assert [os.path.splitext(p)[1] for p in paths] == [".png", ".svg"]
    assert all(os.path.getsize(p) > 1000 for p in paths)
    import matplotlib.pyplot as plt
    for fig in figures.values():
        plt.close(fig)


def test_bin_occupancy_leaves_the_last_bin_empty_below_bin_num_tokens():
    import torch

    from toplib.viz.analysis import bin_occupancy_at
    # tokens entering layers 0..2 for three examples; prune layers 1 and 2
    kept = torch.tensor([[11, 6, 6], [30, 16, 16], [26, 26, 26]])
    occupancy = bin_occupancy_at(kept, (1, 2), bin_num=25)
    assert torch.allclose(occupancy.sum(-1), torch.ones(2))
    # layer 1 ranks 10, 29 and 25 tokens: bin 24 holds 1 of 29 and 1 of 25, none of 10
    assert float(occupancy[0, 24]) == pytest.approx((0 + 1 / 29 + 1 / 25) / 3)
    # layer 2 ranks 5, 15 and 25: only the 25-token example reaches bin 24
    assert float(occupancy[1, 24]) == pytest.approx(1 / 25 / 3)
    assert float(occupancy[1, 0]) > 1 / 25  # few tokens: bin 0 always holds one


def _study_row(arm, seed, score, **extra):
    return dict(task="mrpc", arm=arm, seed=seed, score=score, teacher_score=0.875,
                overrides=dict(budget=3), evaluation=dict(sparsity_real=0.7),
                history=[dict(target_sparsity=0.35), dict(target_sparsity=0.67)], **extra)


def test_study_frames_read_drops_in_points_and_each_baseline_and_retarget_point(tmp_path):
    from toplib.viz.study import baseline_frame, budget_frame, load_study, retarget_frame
    free = [dict(method="teacher", score=0.875, sparsity_real=0.0),
            dict(method="random", score=0.625, sparsity_real=0.69)]
    again = [dict(method="attention", requested=0.3, score=0.85, sparsity_real=0.31)]
    rows = [_study_row("std_x3", 0, 0.825, training_free=free, retargeted=again),
            _study_row("topk_x3", 0, 0.8), _study_row("quick", 0, 0.5),
            dict(_study_row("std_x1", 0, 0.8), overrides=dict(budget=1)),
            dict(_study_row("std_x3", 0, 0.9), task="sst2")]  # sst2: one budget only
    for i, row in enumerate(rows):
        (tmp_path / f"{i}.json").write_text(json.dumps(row))
    rows = load_study(str(tmp_path))
    assert budget_frame(rows).sort_values("budget").to_dict("records") == [
        dict(task="mrpc", budget=1, seed=0, drop=pytest.approx(-7.5), sparsity_real=0.7),
        dict(task="mrpc", budget=3, seed=0, drop=pytest.approx(-5.0), sparsity_real=0.7)]
    methods = baseline_frame(rows, ["mrpc"]).set_index("method")["drop"].to_dict()
    assert methods == pytest.approx({"ToP": -5.0, "random, no training": -25.0,
                                     "top-k by attention, trained": -7.5})
    assert baseline_frame(rows, ["rte"]).empty
    points = retarget_frame(rows, "mrpc")
    assert points["source"].tolist() == ["trained", 0.67]
    assert points["score"].tolist() == pytest.approx([82.5, 85.0])
    assert points["requested"].tolist() == [0.67, 0.3]


def test_prune_layer_frame_names_each_run_by_its_first_pruned_layer():
    from toplib.viz.study import prune_layer_frame
    runs = [("std_x3", 0, 0.825, [1, 2, 3, 4, 5]), ("std_x3_from2", 0, 0.85, [2, 3, 4, 5]),
            ("std_x3_from2", 1, 0.86, [2, 3, 4, 5]), ("std_x1", 0, 0.5, [1, 2, 3, 4, 5])]
    rows = [_study_row(arm, seed, score, gates=dict(prune_location=layers))
            for arm, seed, score, layers in runs]
    rows.append(dict(rows[0], task="sst2"))  # one layout only: left out
    layers = prune_layer_frame(rows)
    assert set(layers["task"]) == {"mrpc"}
    assert layers.groupby("method")["drop"].mean().to_dict() == pytest.approx(
        {"from layer 1": -5.0, "from layer 2": -2.0})
