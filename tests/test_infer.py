"""The token-dropping inference path against the masked formulation it must reproduce."""
from __future__ import annotations

import math
import os

import pytest
import torch
from conftest import padded_batch, tiny_classifier

from toplib import PruneConfig, ToPModel
from toplib.core.flops import simulate_kept
from toplib.core.gates import GATE_CLOSED, GATE_OPEN
from toplib.infer import eval_keep_table, predict, prune_forward, set_eval_sparsity

ATOL = 1e-4
BIN_NUM = 5


def make_top(family: str, closed: dict[int, int] | None = None, **config) -> ToPModel:
    """Tiny ToP model (4 layers, prune locations 1..3); ``closed``: {location index: bins}."""
    top = ToPModel(tiny_classifier(family, **config), PruneConfig(bin_num=BIN_NUM)).eval()
    with torch.no_grad():
        top.gates.bin_log_alpha.fill_(GATE_OPEN)
        top.gates.pruner_log_alpha.fill_(GATE_CLOSED)
        for p, c in (closed or {}).items():
            top.gates.bin_log_alpha[p, BIN_NUM - c:] = GATE_CLOSED
            top.gates.pruner_log_alpha[p] = GATE_OPEN
    return top


def masked(top, ids, mask):
    with torch.no_grad():
        out = top(ids, mask)
    return out.logits, (out.alive > 0).sum(-1)


def assert_matches_masked(top, ids, mask, **kwargs):
    ref_logits, ref_kept = masked(top, ids, mask)
    out = prune_forward(top, ids, mask, **kwargs)
    torch.testing.assert_close(out.logits, ref_logits, atol=ATOL, rtol=0)
    assert torch.equal(out.logits.argmax(-1), ref_logits.argmax(-1))
    assert torch.equal(out.kept, ref_kept)
    return out


GATE_CASES = [  # closed bins per prune-location index
    {},
    {0: 2},
    {0: 1, 1: 2, 2: 3},
    {1: 4},
    {0: BIN_NUM},  # every bin closes at the first location: only [CLS] goes on
]


@pytest.mark.parametrize("closed", GATE_CASES)
@pytest.mark.parametrize("fast_attention", [True, False])
def test_matches_masked_path(family, closed, fast_attention):
    top = make_top(family, closed)
    ids, mask = padded_batch(top.config, lengths=(12, 9, 5, 1, 2), seq_len=14)
    out = assert_matches_masked(top, ids, mask, fast_attention=fast_attention)
    assert torch.isfinite(out.logits).all()


def test_attention_in_chunks_of_one_example(family, monkeypatch):
    monkeypatch.setattr("toplib.hf.attention.PROBS_CHUNK_BYTES", 1)  # every example its own chunk
    top = make_top(family, {0: 1, 1: 2, 2: 3})
    ids, mask = padded_batch(top.config, lengths=(12, 9, 5, 1, 2), seq_len=14)
    assert_matches_masked(top, ids, mask)


def test_everything_pruned_keeps_only_cls(family):
    top = make_top(family, {0: BIN_NUM, 1: BIN_NUM, 2: BIN_NUM})
    ids, mask = padded_batch(top.config)
    out = assert_matches_masked(top, ids, mask)
    assert out.kept[:, 0].tolist() == mask.sum(-1).tolist()
    assert (out.kept[:, 1:] == 1).all()


def test_kept_counts_follow_the_bins(family):
    # 11 real tokens: 10 candidates, 5 bins of 2 ranks each. Closing 2 bins at layer 1
    # drops 4 tokens (7 left: [CLS] + 6); closing 1 more bin at layer 2 (6 candidates left,
    # bins floor(r / 6 * 5) = 0,0,1,2,3,4) drops rank 5 only.
    top = make_top(family, {0: 2, 1: 1})
    ids, mask = padded_batch(top.config, lengths=(11,), seq_len=11)
    out = assert_matches_masked(top, ids, mask)
    assert out.kept.tolist() == [[11, 7, 6, 6]]


def test_batch_of_one_has_no_padding_cost(family):
    top = make_top(family, {0: 2, 2: 1})
    ids, mask = padded_batch(top.config, lengths=(7,), seq_len=12)  # 5 columns of padding
    out = assert_matches_masked(top, ids, mask)
    assert out.kept[0, 0] == 7


def test_short_and_long_texts_with_a_real_tokenizer():
    from transformers import AutoTokenizer

    from toplib.hf.model import resolve_model_path
    tok = AutoTokenizer.from_pretrained(resolve_model_path(None))
    top = make_top("bert", {0: 2, 1: 1, 2: 2}, vocab_size=tok.vocab_size)
    texts = ["", "ok", "not bad", "a long review " * 8 + "that never quite ends.", "fine ."]
    enc = tok(texts, padding=True, return_tensors="pt")
    assert_matches_masked(top, enc["input_ids"], enc["attention_mask"])


def test_dense_mode_equals_hugging_face(family):
    top = make_top(family, {0: 3})
    ids, mask = padded_batch(top.config)
    with torch.no_grad():
        hf = top.model(input_ids=ids, attention_mask=mask).logits
    out = prune_forward(top, ids, mask, pruning=False)
    torch.testing.assert_close(out.logits, hf, atol=ATOL, rtol=0)
    assert torch.equal(out.kept, mask.sum(-1, keepdim=True).expand(-1, 4))


def test_predict_restores_input_order(family):
    top = make_top(family, {0: 2, 2: 2})
    ids, mask = padded_batch(top.config, lengths=(3, 12, 7, 9, 1), seq_len=12)
    examples = [{"input_ids": i[:int(m.sum())].tolist(), "label": 0} for i, m in zip(ids, mask)]
    pred = predict(top, examples, batch_size=2)
    ref_logits, ref_kept = masked(top, ids, mask)
    torch.testing.assert_close(pred.logits, ref_logits, atol=ATOL, rtol=0)
    assert torch.equal(pred.kept, ref_kept)
    assert pred.lengths.tolist() == [3, 12, 7, 9, 1]


def test_keep_table_skips_locations_that_keep_everything():
    top = make_top("bert", {1: 2})
    assert list(eval_keep_table(top)) == [2]  # location index 1 is layer 2
    assert eval_keep_table(top, pruning=False) == {}


def test_keep_table_follows_gate_updates():
    top = make_top("bert", {1: 2})
    ids, mask = padded_batch(top.config)
    before = prune_forward(top, ids, mask).kept
    with torch.no_grad():  # an in-place update, as an optimiser step or load_state_dict does
        top.gates.bin_log_alpha[0, BIN_NUM - 3:] = GATE_CLOSED
        top.gates.pruner_log_alpha[0] = GATE_OPEN
    assert sorted(eval_keep_table(top)) == [1, 2]
    after = assert_matches_masked(top, ids, mask)
    assert (after.kept[:, 1] < before[:, 1]).all()


def test_rejects_left_padding_and_training_mode():
    top = make_top("bert", {0: 2})
    ids, mask = padded_batch(top.config)
    with pytest.raises(ValueError, match="right-padded"):
        prune_forward(top, ids, mask.flip(-1))
    top.train()
    with pytest.raises(RuntimeError, match="eval"):
        prune_forward(top, ids, mask)


@pytest.mark.parametrize("target", [0.0, 0.3, 0.6])
def test_set_eval_sparsity_hits_target_and_simulation_is_exact(target):
    from toplib.core.flops import dense_macs, encoder_macs
    top = make_top("bert")
    lengths = (12, 9, 5, 11)
    ids, mask = padded_batch(top.config, lengths=lengths)
    achieved = set_eval_sparsity(top, torch.tensor(lengths), target)
    out = assert_matches_masked(top, ids, mask)
    measured = 1 - encoder_macs(out.kept.double(), top.dims).sum() / \
        dense_macs(torch.tensor(lengths).double(), top.dims).sum()
    assert math.isclose(achieved, float(measured), abs_tol=1e-9)
    assert abs(achieved - target) < 0.1  # tiny inputs: coarse steps
    closed = [int(c) for c in (1 - top.gates(training=False)[0]).sum(-1)]
    expected = simulate_kept(torch.tensor(lengths), closed, list(top.prune.prune_location),
                             top.dims.num_layers, BIN_NUM)
    assert torch.equal(out.kept, expected)


# ---- real data: MiniLM-L6 (offline default), gates at ~0.5 real-length sparsity -------------
def _real_check(task: str, data_dir: str | None, limit: int | None):
    from toplib.bench import build_model
    from toplib.data import encode, get_task, load_task_data, make_loader
    spec = get_task(task)
    top, tok = build_model(num_labels=spec.num_labels)
    enc = encode(load_task_data(task, data_dir=data_dir)["validation"], tok, spec.max_seq_length)
    enc = enc[:limit] if limit else enc
    lengths = torch.tensor([len(e["input_ids"]) for e in enc])
    assert abs(set_eval_sparsity(top, lengths, 0.5) - 0.5) < 0.02
    logits, kept = [], []
    with torch.no_grad():
        for b in make_loader(enc, 64, tok, shuffle=False):
            out = top(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))
            logits.append(out.logits)
            kept.append((out.alive > 0).sum(-1))
    pred = predict(top, enc, batch_size=32)
    torch.testing.assert_close(pred.logits, torch.cat(logits), atol=ATOL, rtol=0)
    assert torch.equal(pred.logits.argmax(-1), torch.cat(logits).argmax(-1))
    assert torch.equal(pred.kept, torch.cat(kept))


GLUE = os.environ.get("TOPLIB_GLUE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "glue"))
REAL_CASES = [("rotten_tomatoes", None), ("cola", GLUE)]


@pytest.mark.parametrize("task,data_dir", REAL_CASES)
def test_real_data_subset(task, data_dir):
    if data_dir and not os.path.isdir(data_dir):
        pytest.skip(f"{data_dir} not present")
    _real_check(task, data_dir, limit=96)


@pytest.mark.slow
@pytest.mark.parametrize("task,data_dir", REAL_CASES)
def test_real_data_whole_validation_set(task, data_dir):
    if data_dir and not os.path.isdir(data_dir):
        pytest.skip(f"{data_dir} not present")
    _real_check(task, data_dir, limit=None)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("open_bins", [[1, 1, 0, 1, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
def test_unpadded_batches_drop_like_the_general_path(batch, open_bins):
    """The mask-free path for batches without padding gives the general path's survivors."""
    from toplib.core.importance import drop_tokens

    torch.manual_seed(0)
    n, h = 13, 4
    hidden, scores = torch.randn(batch, n, h), torch.rand(batch, n)
    scores[:, 3] = scores[:, 5]  # a tie: broken by position in both paths
    open_bins = torch.tensor(open_bins, dtype=torch.bool)
    fast, fast_alive = drop_tokens(hidden, torch.ones(batch, n, dtype=torch.bool), scores,
                                   open_bins, BIN_NUM)
    # The same rows plus one padded row force the general path.
    pad_alive = torch.ones(batch + 1, n, dtype=torch.bool)
    pad_alive[-1, n // 2:] = False
    general, general_alive = drop_tokens(torch.cat([hidden, torch.randn(1, n, h)]), pad_alive,
                                         torch.cat([scores, torch.rand(1, n)]), open_bins, BIN_NUM)
    width = fast.shape[1]
    assert fast_alive.all() and general_alive[:batch, :width].all()
    assert not general_alive[:batch, width:].any()
    torch.testing.assert_close(fast, general[:batch, :width], atol=0, rtol=0)
