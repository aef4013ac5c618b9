"""The release's semantics as options: its sparsity accounting, training forward, importance
over all query rows, best-checkpoint rule and paper-preset defaults; the ranking loss's
score options. Each checked against an independent computation or hand-worked values."""
from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import RUN, padded_batch, tiny_classifier

from toplib.core.config import PruneConfig
from toplib.core.flops import EncoderDims, expected_sparsity, release_sparsity
from toplib.core.importance import token_importance
from toplib.core.ranking import rank_distillation_loss, student_scores
from toplib.hf.model import ToPModel
from toplib.train import prune
from toplib.train.config import RELEASE_RUN, build_train_config
from toplib.train.evaluate import split_summary
from toplib.train.objectives import PruneStage

DIMS = EncoderDims(num_layers=2, hidden=4, heads=1, intermediate=8)


def hand_macs(tokens):
    """METHOD Sec. 3 written out for H=4, A=1, I=8: layer l's FFN at layer l+1's count."""
    total = 0.0
    for i, t in enumerate(tokens):
        t_ffn = tokens[min(i + 1, len(tokens) - 1)]
        total += 3 * t * 16 + t * t * 4 + t * t + t * t * 4 + t * 16 + 2 * t_ffn * 4 * 8
    return total


# lengths; (z_bins, z_pruner) at layer 1 -> tokens entering layer 1 under uniform bins
CASES = [
    ((9, 17), ([[1.0, 0.0]], [1.0]), lambda n: (n - 1) * 0.5 + 1),
    ((9, 17), ([[1.0, 0.0]], [0.0]), lambda n: n),  # pruner off: nothing pruned
    ((5, 33), ([[1.0, 0.0, 0.0, 0.0]], [1.0]), lambda n: (n - 1) * 0.25 + 1),
]


@pytest.mark.parametrize("lengths, gates, kept", CASES)
def test_release_sparsity_is_the_mean_of_per_example_ratios(lengths, gates, kept):
    z_bins, z_pruner = (torch.tensor(g) for g in gates)
    got = release_sparsity(torch.tensor(lengths), z_bins, z_pruner, (1,), DIMS, padded_length=40)
    ratios = [hand_macs([n, kept(n)]) / hand_macs([n, n]) for n in lengths]
    padded = [hand_macs([n, kept(n)]) / hand_macs([40, 40]) for n in lengths]
    assert got["sparsity_release_real"] == pytest.approx(1 - sum(ratios) / len(ratios))
    assert got["sparsity_release_padded"] == pytest.approx(1 - sum(padded) / len(padded))


@pytest.mark.parametrize("lengths, gates, kept", CASES)
def test_ratio_of_sums_and_mean_of_ratios_each_match_by_hand(lengths, gates, kept):
    z_bins, z_pruner = (torch.tensor(g, dtype=torch.float64) for g in gates)
    args = (torch.tensor(lengths), z_bins, z_pruner, (1,), DIMS)
    pruned = [hand_macs([n, kept(n)]) for n in lengths]
    dense = [hand_macs([n, n]) for n in lengths]
    sums = float(expected_sparsity(*args, binned=False))
    means = float(expected_sparsity(*args, binned=False, mean_of_ratios=True))
    assert sums == pytest.approx(1 - sum(pruned) / sum(dense))
    assert means == pytest.approx(1 - sum(p / d for p, d in zip(pruned, dense)) / len(dense))
    if gates[1] == [1.0]:  # the long example saves more, so it weighs more in the sum
        assert sums > means


def test_importance_over_all_rows_averages_every_query_row():
    probs = torch.softmax(torch.randn(2, 3, 6, 6), -1)
    alive = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    every = token_importance(probs, alive, torch.ones_like(alive))
    assert torch.allclose(every, probs.mean(dim=(1, 2)) * alive)
    alive_rows = token_importance(probs, alive)
    by_hand = probs[0, :, :4].mean(dim=(0, 1)) * alive[0]
    assert torch.allclose(alive_rows[0], by_hand)
    assert not torch.allclose(every[0], alive_rows[0])  # padding rows change the ranking input


def _soft_gates(top, keep: float):
    """Bin gates at ``keep`` everywhere, pruners on: every token kept ``keep`` per layer."""
    p = len(top.prune.prune_location)
    return torch.full((p, top.prune.bin_num), keep), torch.ones(p)


@pytest.mark.parametrize("release, want", [(False, 0.25), (True, 0.5)])
def test_training_forward_scales_by_running_or_current_keep(release, want):
    hf = tiny_classifier()
    top = ToPModel(hf, PruneConfig(bin_num=2, prune_location=(1, 2))).train()
    ids, mask = padded_batch(hf.config)
    top.release_forward = release
    run = top.token_run(mask, gates=_soft_gates(top, 0.5))
    with top.attached(run):
        top.model(input_ids=ids, attention_mask=mask)
    entering_2 = run.alive_per_layer[2][0, 1:]  # real tokens of the full row, [CLS] aside
    # toplib: the running product 0.5 * 0.5; the release: this layer's 0.5 x binary before
    assert torch.allclose(entering_2, torch.full_like(entering_2, want))


@pytest.mark.parametrize("release, attended", [(False, False), (True, True)])
def test_release_training_keeps_pruned_tokens_in_attention(release, attended):
    hf = tiny_classifier()
    top = ToPModel(hf, PruneConfig(bin_num=2, prune_location=(1,))).train()
    ids, mask = padded_batch(hf.config)
    gates = torch.tensor([[1.0, 0.0]]), torch.ones(1)  # the lower half of the ranks pruned
    top.release_forward = release
    run = top.token_run(mask, gates=gates)
    with top.attached(run):
        out = top.model(input_ids=ids, attention_mask=mask, output_attentions=True)
    pruned = (run.alive_per_layer[1][0] == 0).nonzero().flatten()
    assert len(pruned) > 0
    received = out.attentions[1][0][..., pruned]  # attention paid to pruned keys in layer 1
    assert bool((received > 0).any()) is attended
    padding = (mask[2] == 0).nonzero().flatten()
    assert float(out.attentions[1][2][..., padding].detach().max()) == 0.0  # padding never attended


def test_release_evaluation_keeps_pruned_tokens_as_queries():
    hf = tiny_classifier()
    ids, mask = padded_batch(hf.config)
    outs = {}
    for rows in ("alive", "all"):
        top = ToPModel(hf, PruneConfig(bin_num=2, prune_location=(1,), importance_rows=rows))
        with torch.no_grad():
            top.gates.close_lowest_bins_([1])
        top.eval()
        run = top.token_run(mask)
        with top.attached(run), torch.no_grad():
            outs[rows] = top.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        pruned = (run.alive_per_layer[1][0] == 0).nonzero().flatten()
        hidden = outs[rows].hidden_states[1][0, pruned]  # entering layer 1, pruned tokens
        assert bool(hidden.abs().sum() > 0) is (rows == "all")
    # row 0 has no padding, so both rankings agree; pruned tokens are out of attention's
    # keys either way: the same prediction
    assert torch.allclose(outs["alive"].logits[0], outs["all"].logits[0], atol=1e-5)


def test_rank_loss_on_raw_importance_is_flat_and_on_log_importance_is_not():
    torch.manual_seed(0)
    n = 30
    teacher = torch.softmax(torch.randn(4, n), -1)
    real = torch.ones(4, n)
    # the teacher's own scores, and the same values in the reverse order
    bad = teacher.max(-1, keepdim=True).values + teacher.min(-1, keepdim=True).values - teacher

    def gap(score):  # how much of the reversed order's loss the right order saves
        lose = rank_distillation_loss(bad, teacher, real, 20, score)
        return float((lose - rank_distillation_loss(teacher, teacher, real, 20, score)) / lose)
    assert gap("raw") < 0.15  # every pair costs ~ln 2 whatever the order: the loss is flat
    assert gap("log") > 0.5 and gap("scaled") > 0.5


def test_rank_sigma_and_score_options():
    s = torch.tensor([[0.0, 0.5, 0.25, 0.25]])
    real = torch.ones(1, 4)
    assert torch.allclose(student_scores(s, torch.tensor([3]), "scaled"), s * 3)
    assert torch.allclose(student_scores(s, torch.tensor([3]), "log")[0, 1:], s[0, 1:].log())
    teacher = torch.tensor([[0.0, 0.1, 0.2, 0.7]])
    sharp = rank_distillation_loss(s, teacher, real, 3, "log", sigma=4.0)
    soft = rank_distillation_loss(s, teacher, real, 3, "log", sigma=1.0)
    assert float(sharp) != pytest.approx(float(soft))
    with pytest.raises(ValueError, match="rank_score='cube'"):
        student_scores(s, torch.tensor([3]), "cube")


def test_release_lists_pad_short_examples_and_divide_by_topk_squared():
    student = torch.tensor([[0.0, 0.3, 0.2, 0.5, 0.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.5, 0.3, 0.2, 0.0, 0.0]])
    real = torch.tensor([[1, 1, 1, 1, 0, 0]])  # 3 ranked tokens, TOPK 5 -> k = 5
    own = rank_distillation_loss(student, teacher, real, 5)
    padded = rank_distillation_loss(student, teacher, real, 5, pad_lists=True)
    # by hand: relevance 3, 2, 1 on scores 0.3, 0.2, 0.5 (teacher order), then two entries
    # of relevance 0 and score 0
    rel, sc = [3.0, 2.0, 1.0, 0.0, 0.0], [0.3, 0.2, 0.5, 0.0, 0.0]
    def pairs(n):
        return sum((rel[i] - rel[j]) * math.log2(1 + math.exp(-(sc[i] - sc[j])))
                   for i in range(n) for j in range(n) if rel[i] > rel[j])
    assert float(own) == pytest.approx(pairs(3) / 9)
    assert float(padded) == pytest.approx(pairs(5) / 25)


@pytest.mark.parametrize("field, value", [
    ("accounting", "paper"), ("training_forward", "hf"), ("rank_score", "exp"),
    ("select_by", "best"), ("rank_sigma", 0.0), ("weight_decay", -0.1)])
def test_new_knobs_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        build_train_config("rte", None, {field: value})


def test_importance_rows_is_checked():
    with pytest.raises(ValueError, match="importance_rows='some'.*alive, all"):
        PruneConfig(importance_rows="some")


def test_paper_preset_takes_the_release_run_defaults():
    config = build_train_config("sst2", "paper")
    for key, value in RELEASE_RUN.items():
        got = getattr(config.prune if key in ("importance_rows", "bin_rounding") else config, key)
        assert got == value, key
    assert (config.prune.bin_num, config.topk, config.sparsity) == (25, 20, 0.40)  # Table 7
    quick = build_train_config("sst2", "quick")
    assert (quick.accounting, quick.training_forward, quick.prune.importance_rows) == (
        "measured", "toplib", "alive")


@pytest.mark.parametrize("task, select_by, want", [
    ("mnli", "primary", 0.75), ("mnli", "release", 0.8), ("qqp", "primary", 0.6),
    ("qqp", "release", 0.9), ("sst2", "release", 0.6)])
def test_selection_score(task, select_by, want):
    if task == "mnli":
        results = {"validation_matched": {"score": 0.8, "accuracy": 0.8},
                   "validation_mismatched": {"score": 0.7, "accuracy": 0.7}}
    else:
        results = {"validation": {"score": 0.6, "f1": 0.6, "accuracy": 0.9}}
    assert split_summary(results, task, select_by)["score"] == pytest.approx(want)


class _Stage(PruneStage):
    def __init__(self, **knobs):  # only what eligible() reads
        self.config = build_train_config("rte", None, dict(sparsity=0.5, **knobs))


@pytest.mark.parametrize("knobs, summary, started, want", [
    (dict(), dict(sparsity_real=0.495, sparsity_release_real=0.2), False, True),
    (dict(), dict(sparsity_real=0.48, sparsity_release_real=0.9), True, False),
    (dict(accounting="release", sparsity_epsilon=0.0),
     dict(sparsity_real=0.9, sparsity_release_real=0.499), False, False),
    (dict(accounting="release", sparsity_epsilon=0.0),
     dict(sparsity_real=0.1, sparsity_release_real=0.5), False, True),
    (dict(accounting="release", sparsity_epsilon=0.0),  # sticky: once one qualified
     dict(sparsity_real=0.1, sparsity_release_real=0.1), True, True),
])
def test_best_checkpoint_eligibility(knobs, summary, started, want):
    assert _Stage(**knobs).eligible(summary, started) is want


def test_release_mode_run_records_and_holds_the_release_figure(teacher_dir, tmp_path):
    knobs = dict(RUN, sparsity=0.3, accounting="release", training_forward="release",
                 importance_rows="all", pad_to_max_length=True, sparsity_epsilon=0.0,
                 drop_tokens=False, cache_teacher=False)
    config = build_train_config("rotten_tomatoes", None, knobs)
    prune("rotten_tomatoes", teacher_dir, str(tmp_path / "run"), config, progress=False)
    records = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    top = ToPModel.from_pretrained(str(tmp_path / "run" / "last"))
    assert top.prune.importance_rows == "all"
    teacher = ToPModel.from_pretrained(str(tmp_path / "run" / "last"))
    ids, mask = padded_batch(top.config, lengths=(32, 20, 5), seq_len=32)
    batch = dict(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 0]))
    _, record = PruneStage(top, teacher, config, steps_per_epoch=4).loss(batch, step=1)
    held = top.expected_sparsity(mask.sum(-1), binned=False, mean_of_ratios=True)
    assert record["expected_sparsity"] == pytest.approx(float(held.detach()))  # what it holds
    assert record["expected_sparsity"] != pytest.approx(
        float(top.expected_sparsity(mask.sum(-1)).detach()))  # not toplib's binned expectation
    for key in ("release_sparsity", "measured_sparsity", "expected_sparsity"):
        assert all(0.0 <= r[key] <= 1.0 for r in train), key
    for key in ("sparsity_real", "sparsity_padded", "sparsity_release_real",
                "sparsity_release_padded"):
        assert all(key in r for r in evals), key
    # padded to max_seq_length (32): the padded and real dense baselines coincide at 32
    assert all(r["sparsity_padded"] >= r["sparsity_real"] for r in evals)


@pytest.mark.parametrize("m, bin_num", [(25, 25), (10, 25), (20, 5), (40, 20)])
def test_release_bin_rounding_drops_whole_multiples_one_bin_below_32_tokens(m, bin_num):
    from toplib.core.importance import RELEASE_BIN_EPS, rank_bins
    scores = -torch.arange(m + 1, dtype=torch.float32)[None]  # rank r at position r + 1
    alive = torch.ones(1, m + 1)
    exact = rank_bins(scores, alive, bin_num)[0, 1:]
    release = rank_bins(scores, alive, bin_num, RELEASE_BIN_EPS)[0, 1:]
    r = torch.arange(m)
    # the release's float32 arithmetic, written out: floor(r / (m + 1e-6) * B)
    want = torch.floor(r.float() / (torch.tensor(float(m)) + 1e-6) * bin_num).long()
    assert torch.equal(release, want.clamp(max=bin_num - 1))
    if m < 32:  # m + 1e-6 rounds above m in float32: some ranks fall one bin lower
        moved = release != exact
        assert moved.any() and torch.equal(release[moved], exact[moved] - 1)
    else:
        assert torch.equal(release, exact)
    if m == bin_num:  # the release leaves its last bin empty at m = BIN_NUM
        assert int(release.max()) == bin_num - 2


@pytest.mark.parametrize("release", [False, True])
def test_release_training_scores_pruned_tokens_for_the_rank_loss(release):
    hf = tiny_classifier()
    top = ToPModel(hf, PruneConfig(bin_num=2, prune_location=(1, 2), importance_rows="all"))
    top.train().release_forward = release
    ids, mask = padded_batch(hf.config)
    gates = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.ones(2)
    out = top(ids, mask, gates=gates, record_layers=(1,))
    pruned = (out.alive[0, 1] == 0) & (mask[0] > 0)  # real tokens pruned before layer 1
    assert pruned.any()
    scored = out.importance[1][0, pruned]  # what the ranking loss sees of them at layer 1
    assert bool((scored > 0).all()) is release  # the release: their attention; toplib: 0
