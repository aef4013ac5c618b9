"""Precision as an option (bf16 copies, float32 gates and importance) and the host-planned
shapes of the token-dropping pass."""
from __future__ import annotations

import pytest
import torch
from conftest import padded_batch, tiny_classifier

from toplib import PruneConfig, ToPModel
from toplib.core.gates import GATE_CLOSED, GATE_OPEN
from toplib.hf.precision import cast_model, cpu_flags, dtype_name, resolve_dtype
from toplib.infer import plan_counts, predict, prune_forward
from toplib.train.evaluate import EvalMode, evaluate_model

BIN_NUM = 5


def make_top(family: str = "bert", closed: dict[int, int] | None = None) -> ToPModel:
    top = ToPModel(tiny_classifier(family), PruneConfig(bin_num=BIN_NUM)).eval()
    with torch.no_grad():
        top.gates.bin_log_alpha.fill_(GATE_OPEN)
        top.gates.pruner_log_alpha.fill_(GATE_CLOSED)
        for p, c in (closed or {0: 2, 1: 1, 2: 2}).items():
            top.gates.bin_log_alpha[p, BIN_NUM - c:] = GATE_CLOSED
            top.gates.pruner_log_alpha[p] = GATE_OPEN
    return top


@pytest.mark.parametrize("value,match", [("bf16", "one of float32, bfloat16"),
                                         (torch.int8, "one of"),
                                         ("float16", "float16 is for CUDA")])
def test_resolve_dtype_names_the_parameter_and_what_is_allowed(value, match):
    with pytest.raises(ValueError, match=f"dtype=.*{match}"):
        resolve_dtype(value, "cpu")


def test_resolve_dtype_accepts_names_and_dtypes():
    assert resolve_dtype(None) is None and resolve_dtype("float32") is torch.float32
    assert resolve_dtype(torch.bfloat16) is torch.bfloat16 and dtype_name(torch.bfloat16) == "bfloat16"


def test_cast_copy_keeps_float32_gates_and_is_cached_until_weights_change():
    top = make_top()
    cast = cast_model(top, "bfloat16")
    assert cast is not top and cast_model(top, torch.bfloat16) is cast
    assert cast.model.dtype is torch.bfloat16 and top.model.dtype is torch.float32
    assert cast.gates.bin_log_alpha.dtype is torch.float32, "gates are rounded in bf16"
    assert cast_model(top, "float32") is top and cast_model(top, None) is top
    with torch.no_grad():
        top.model.classifier.weight.add_(1.0)  # an in-place update: the copy is stale
    fresh = cast_model(top, "bfloat16")
    assert fresh is not cast
    torch.testing.assert_close(fresh.model.classifier.weight.float(),
                               top.model.classifier.weight, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_bf16_prediction_is_close_to_float32(family):
    top = make_top(family)
    ids, mask = padded_batch(top.config, lengths=(12, 9, 5, 1, 2), seq_len=14)
    examples = [{"input_ids": i[:int(m.sum())].tolist()} for i, m in zip(ids, mask)]
    ref = predict(top, examples, batch_size=2)
    got = predict(top, examples, batch_size=2, dtype="bfloat16")
    assert got.logits.dtype is torch.float32
    torch.testing.assert_close(got.logits, ref.logits, atol=0.05, rtol=0)


def test_masked_evaluation_runs_in_bf16():
    from toplib.data.tasks import TaskSpec
    top = make_top()
    ids, mask = padded_batch(top.config, lengths=(12, 9, 5, 11), seq_len=12)
    loader = [{"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 1])}]
    spec = TaskSpec("tiny", 3, ("accuracy",), 12, ("text",))
    ref = evaluate_model(top, loader, spec, 12, progress=False)
    got = evaluate_model(top, loader, spec, 12, EvalMode(dtype="bfloat16"), progress=False)
    assert got["sparsity_real"] == pytest.approx(ref["sparsity_real"]) and got["sparsity_real"] > 0
    assert got["keep_ratio"] == pytest.approx(ref["keep_ratio"])
    assert top.model.dtype is torch.float32  # a copy was evaluated


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_inference_copy_stacks_qkv_and_predicts_like_the_model(family):
    from toplib.hf.precision import inference_copy
    top = make_top(family)
    copy = inference_copy(top)
    assert copy is not top and inference_copy(top) is copy and copy.model.dtype is torch.float32
    stacked = [m for m in copy.modules() if hasattr(m, "qkv")]
    assert len(stacked) == 4 and not any(hasattr(m, "qkv") for m in top.modules())
    ids, mask = padded_batch(top.config, lengths=(12, 9, 5), seq_len=12)
    want, got = prune_forward(top, ids, mask), prune_forward(copy, ids, mask)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    with torch.no_grad():  # the masked path (training's, in eval mode) uses it too
        torch.testing.assert_close(copy(ids, mask).logits, top(ids, mask).logits, atol=1e-5,
                                   rtol=0)
        stacked[0].qkv.weight.zero_()  # outside eval mode the separate projections run
        copy.train()
        torch.testing.assert_close(copy(ids, mask).logits, top(ids, mask).logits, atol=1e-5,
                                   rtol=0)


@pytest.mark.parametrize("closed", [{0: 2, 1: 1, 2: 2}, {0: BIN_NUM}, {1: 3}, {}])
def test_planned_counts_are_what_the_masked_path_keeps(closed):
    top = make_top("bert", closed)
    ids, mask = padded_batch(top.config, lengths=(12, 9, 5, 1, 2, 12), seq_len=12)
    with torch.no_grad():
        masked = (top(ids, mask).alive > 0).sum(-1)
    assert torch.equal(plan_counts(top, mask.sum(-1)), masked)
    assert torch.equal(prune_forward(top, ids, mask).kept, masked)
    dense = plan_counts(top, mask.sum(-1), pruning=False)
    assert torch.equal(dense, mask.sum(-1, keepdim=True).expand(-1, 4))


@pytest.mark.parametrize("lengths", [(12, 9, 5), (12,), (7, 7)])
def test_planned_layers_read_nothing_back(lengths):
    """On the meta device tensors have shapes and no data: any read-back (``.item()``, a
    shape from a data-dependent count, ``bool(mask.all())``) raises. With the counts
    planned on the host, the dropping layers run there, so on a GPU they never wait."""
    import copy

    from toplib.hf.encoder import TokenRun, encoder_of, run_layers
    from toplib.infer import keep_plan
    top = make_top()
    ids, mask = padded_batch(top.config, lengths=lengths, seq_len=12)
    mask = mask[:, :max(lengths)]
    layers = encoder_of(copy.deepcopy(top).to("meta").model).layer
    counts = plan_counts(top, mask.sum(-1))

    def run(planned):
        hidden = torch.empty(len(lengths), max(lengths), top.config.hidden_size, device="meta")
        state = TokenRun(alive=mask.bool().to("meta"), prune_at=dict(keep_plan(top)),
                         bin_num=BIN_NUM, drop=True, fast_attention=True, counts=planned)
        with torch.inference_mode():
            return run_layers(layers, hidden, state)

    assert run(counts).shape[1] == int(counts[:, -1].max())
    with pytest.raises((NotImplementedError, RuntimeError)):
        run(None)  # unplanned, the pass reads the masks back


def _gathered_counts(top, ids, mask, monkeypatch) -> list:
    """What the dropping pass actually keeps at each prune location (not the plan)."""
    import toplib.hf.encoder as encoder
    seen, original = [], encoder.drop_tokens

    def spy(*args, **kwargs):
        hidden, alive = original(*args, **kwargs)
        seen.append(alive.sum(-1))
        return hidden, alive

    monkeypatch.setattr(encoder, "drop_tokens", spy)
    out = prune_forward(top, ids, mask)
    return out, seen


@pytest.mark.parametrize("dtype,rounding", [(torch.float32, "exact"), (torch.float64, "release"),
                                            (torch.float64, "exact")])
def test_plan_is_what_the_pass_gathers(dtype, rounding, monkeypatch):
    """Bins round differently in float32 and float64 (release rounding, 25 bins, 50
    candidates): the plan must bin in the dtype the pass ranks in."""
    top = ToPModel(tiny_classifier("bert", max_position_embeddings=64),
                   PruneConfig(bin_num=25, bin_rounding=rounding)).eval().to(dtype)
    with torch.no_grad():
        top.gates.bin_log_alpha.fill_(GATE_OPEN)
        top.gates.pruner_log_alpha.fill_(GATE_CLOSED)
        top.gates.bin_log_alpha[0, 12:] = GATE_CLOSED
        top.gates.pruner_log_alpha[0] = GATE_OPEN
    ids, mask = padded_batch(top.config, lengths=(51, 40, 20), seq_len=51)
    out, seen = _gathered_counts(top, ids, mask, monkeypatch)
    with torch.no_grad():
        masked = (top(ids, mask).alive > 0).sum(-1)
    assert torch.equal(out.kept, masked)
    assert torch.equal(seen[0], masked[:, 2])  # location 0 prunes layer 1's output
    alone, _ = _gathered_counts(top, ids[:1], mask[:1], monkeypatch)
    torch.testing.assert_close(alone.logits, out.logits[:1], atol=1e-5, rtol=0)


def test_inference_copies_follow_the_model_and_free_stale_ones():
    from dataclasses import replace

    from toplib.hf.precision import clear_copies, inference_copy
    top = make_top()
    bf16, fp32 = inference_copy(top, "bfloat16"), inference_copy(top)
    assert "_toplib_casts" not in fp32.__dict__, "a copy carries the cache"
    top.prune = replace(top.prune, importance_rows="all")
    fresh = inference_copy(top)
    assert fresh is not fp32 and fresh.prune.importance_rows == "all"
    assert list(top.__dict__["_toplib_casts"]) == [torch.float32], "the stale bf16 copy stayed"
    with torch.no_grad():
        top.gates.bin_log_alpha.fill_(GATE_OPEN)  # gates change: a new copy, new plan
    assert inference_copy(top) is not fresh and bf16 is not inference_copy(top, "bfloat16")
    clear_copies(top)
    assert "_toplib_casts" not in top.__dict__


def test_export_refuses_what_onnx_cannot_run(tmp_path):
    from toplib.export import export_onnx
    from toplib.hf.precision import inference_copy
    with pytest.raises(ValueError, match="top=.*bfloat16.*float32 model on the CPU"):
        export_onnx(inference_copy(make_top(), "bfloat16"), str(tmp_path / "m.onnx"))


def test_cpu_flags_are_booleans():
    flags = cpu_flags()
    assert all(isinstance(v, bool) for v in flags.values())
    assert not flags or "avx512_bf16" in flags


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU checks host synchronisation")
def test_dropping_pass_never_waits_on_the_gpu(monkeypatch):
    import toplib.infer.engine as engine
    top = make_top().cuda()
    ids, mask = (t.cuda() for t in padded_batch(top.config, lengths=(12, 9, 5), seq_len=12))
    want = prune_forward(top, ids, mask)  # also warms the caches (gate tables, kept ranks)
    original, layers_run = engine.run_layers, []

    def strict(layers, hidden, run):  # the layers may not read anything back
        torch.cuda.set_sync_debug_mode("error")
        try:
            layers_run.append(len(layers))
            return original(layers, hidden, run)
        finally:
            torch.cuda.set_sync_debug_mode(0)

    monkeypatch.setattr(engine, "run_layers", strict)
    got = prune_forward(top, ids, mask)
    assert layers_run == [4] and torch.equal(got.kept, want.kept)


@pytest.mark.slow
def test_bf16_labels_agree_with_float32_on_a_real_validation_set():
    """MiniLM-L6 (offline default, seeded untrained head: small margins, a harsh case) at
    sparsity 0.5 on the whole Rotten Tomatoes validation set. Dense, bf16 rounding alone
    moves logits by < 0.2 and flips < 1% of labels; pruned, bf16 also re-ranks tokens at
    bin boundaries, which changes which tokens a layer keeps for some examples (README:
    Speed, precision)."""
    from toplib.bench import build_model
    from toplib.data import encode, get_task, load_task_data, real_lengths
    from toplib.infer import set_eval_sparsity
    spec = get_task("rotten_tomatoes")
    top, tok = build_model(num_labels=spec.num_labels)
    enc = encode(load_task_data("rotten_tomatoes")["validation"], tok, spec.max_seq_length)
    set_eval_sparsity(top, real_lengths(enc), 0.5)
    for pruning, least in ((False, 0.99), (True, 0.95)):
        ref = predict(top, enc, 64, pruning=pruning)
        got = predict(top, enc, 64, dtype="bfloat16", pruning=pruning)
        agree = float((ref.logits.argmax(-1) == got.logits.argmax(-1)).double().mean())
        moved = float((ref.logits - got.logits).abs().max())
        assert agree >= least, f"pruning={pruning}: labels agree on {agree:.4f}"
        assert pruning or moved < 0.2, f"dense logits moved by {moved:.3f}"
