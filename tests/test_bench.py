"""The benchmark runs end to end on a tiny model (no timing assertions: see benchmarks/)."""
from __future__ import annotations

import argparse
import json

import matplotlib.figure
import pytest
import torch
from conftest import tiny_classifier

from toplib import PruneConfig, ToPModel
from toplib.bench import (
    VARIANTS,
    BenchSettings,
    benchmark_inputs,
    dense_copy,
    format_report,
    register_cli,
    run_benchmark,
)
from toplib.viz.plots import plot_latency_vs_length, plot_latency_vs_sparsity

LENGTH = 16


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from toplib.hf.model import resolve_model_path
    return AutoTokenizer.from_pretrained(resolve_model_path(None))


def tiny_top(family: str, tokenizer) -> ToPModel:
    hf = tiny_classifier(family, vocab_size=tokenizer.vocab_size, num_labels=2)
    return ToPModel(hf, PruneConfig(bin_num=10)).eval()


@pytest.fixture(scope="module")
def results(tokenizer):
    settings = BenchSettings(task="rotten_tomatoes", length=LENGTH, batch_sizes=(1, 4), runs=3,
                             warmup=1, sparsity=0.5)
    return run_benchmark(settings, tiny_top("bert", tokenizer), tokenizer)


def test_all_variants_have_positive_latencies(results):
    assert [row["batch_size"] for row in results["batches"]] == [1, 4]
    for row in results["batches"]:
        assert set(row["latency_ms"]) == set(VARIANTS)
        assert all(v > 0 for v in row["latency_ms"].values())
        assert all(v > 0 for v in row["throughput"].values())
        assert row["profile"]["drop"]["ffn"] > 0


def test_flops_figures_are_consistent(results):
    for row in results["batches"]:
        assert row["mean_length"] == LENGTH
        assert row["reduction_real"] == pytest.approx(1 / (1 - row["sparsity_real"]))
        assert abs(row["sparsity_real"] - 0.5) < 0.1  # 16 tokens: coarse bin steps
        # padded to the task's 64 tokens: the padded reduction is larger than the real one
        assert row["max_seq_length"] == 64
        assert row["reduction_padded"] > row["reduction_real"]
        assert row["ratio_real"] == pytest.approx(row["speedup_vs_dynamic"] / row["reduction_real"])


@pytest.mark.parametrize("markdown", [True, False], ids=["tabulate", "to_string"])
def test_results_serialise_and_print(results, markdown, monkeypatch):
    import toplib.bench.report as report
    if not markdown:
        monkeypatch.setattr(report, "find_spec", lambda name: None)
    elif report.find_spec("tabulate") is None:
        pytest.skip("tabulate is not installed")
    json.dumps(results)
    text = format_report(results)
    assert ("|:--" in text) == markdown
    row, fmt = results["batches"][-1], "{:.5g}".format  # the numbers a reader looks up
    numbers = [fmt(row["latency_ms"]["top_drop"]), fmt(row["ratio_real"]),
               fmt(row["reduction_padded"]), fmt(row["profile"]["ffn_fit"]["fixed_ms"]),
               fmt(row["profile"]["drop"]["ffn"])]
    for needle in (*VARIANTS, "where the time goes", "overhead", "fixed_ms", "ratio_real_cpu",
                   "speedup_vs_padded", "padded to 64", "load_before", *numbers):
        assert needle in text, needle


def test_plots_return_figures(results):
    for fn in (plot_latency_vs_length, plot_latency_vs_sparsity):
        assert isinstance(fn([results, results]), matplotlib.figure.Figure)


def test_inputs_have_exactly_the_requested_length(tokenizer):
    enc = benchmark_inputs(BenchSettings(length=LENGTH), tokenizer, count=10)
    assert len(enc) == 10 and {len(e["input_ids"]) for e in enc} == {LENGTH}


def test_dense_copy_matches_the_patched_model(family, tokenizer):
    top = tiny_top(family, tokenizer)
    dense = dense_copy(top)
    assert dense.config._attn_implementation == "sdpa"
    assert top.config._attn_implementation == "eager"
    enc = tokenizer(["a short one", "and a somewhat longer sentence here"], padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        ref = top(enc["input_ids"], enc["attention_mask"], pruning=False).logits
        got = dense(**enc).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_cli_registers_bench_subcommand():
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--config", "bert-base", "--sparsity", "0.6",
                              "--length", "32,128", "--batch-sizes", "1,32", "--runs", "20"])
    assert callable(args.func)
    got = (args.config, args.sparsity, args.length, args.runs)
    assert got == ("bert-base", "0.6", "32,128", 20)


@pytest.mark.parametrize("field,value", [("runs", 0), ("batch_sizes", (0,)), ("sparsity", 1.0),
                                         ("length", 1), ("dtype", "int8"),
                                         ("dtype", "float16"), ("engine", "tensorrt"),
                                         ("quantize", "int8")])  # int8: onnxruntime only
def test_settings_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BenchSettings(**{field: value})


@pytest.mark.skipif(not __import__("toplib.bench.models").bench.models.onednn_available(),
                    reason="this PyTorch build has no oneDNN linears")
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_onednn_copy_predicts_like_the_model_and_leaves_it_alone(family, tokenizer):
    from toplib.bench import prepare_dense, timed_copy
    from toplib.infer import prune_forward

    top = tiny_top(family, tokenizer)
    with torch.no_grad():
        top.gates.bin_log_alpha[:, 6:] = -10.0  # close the 4 lowest bins everywhere
        top.gates.pruner_log_alpha.fill_(10.0)
    keys = set(top.state_dict())
    timed, dense = timed_copy(top, True), prepare_dense(top, True)
    assert timed is not top and set(top.state_dict()) == keys, "the caller's model was changed"
    assert any(type(m).__name__ == "OneDNNLinear" for m in timed.modules())
    ids = torch.randint(1000, 5000, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    want = prune_forward(top, ids, mask)
    got = prune_forward(timed, ids, mask)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-4, rtol=0)
    assert torch.equal(got.kept, want.kept) and want.kept[:, -1].lt(mask.sum(-1)).all()
    with torch.no_grad():
        ref = dense_copy(top)(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(dense(input_ids=ids, attention_mask=mask).logits, ref,
                                   atol=1e-4, rtol=0)


def test_results_carry_the_machine_and_its_load(results):
    from toplib.bench import benchmark_points, cpu_model
    from toplib.viz.plots.speed import load_note
    assert results["cpu_model"] == cpu_model() and results["cpu_model"]
    assert results["platform"] and results["threads"] == torch.get_num_threads()
    for key in ("load_before", "load_after"):
        assert len(results[key]["loadavg"]) == 3 and min(results[key]["loadavg"]) >= 0
    points = benchmark_points([results])
    assert [p["batch_size"] for p in points] == [1, 4]
    assert all(len(p["load_1min"]) == 2 and p["ratio_real"] > 0 for p in points)
    note = load_note([results, results])
    assert results["cpu_model"] in note and f"{results['threads']} torch thread" in note
    assert f"{results['load_before']['loadavg'][0]:.1f} before" in note and "2 benchmarks" in note
    assert load_note([results]) in format_report(results)
    fig = plot_latency_vs_length([results])
    assert any(load_note([results]) in t.get_text() for t in fig.texts)  # the footer


def test_batch_rows_read_the_load_through_machine_load(tokenizer, monkeypatch):
    import toplib.bench.timing as timing
    monkeypatch.setattr(timing, "machine_load", lambda: {"loadavg": [7.5, 6.0, 5.0],
                                                         "cpu_count": 2})
    settings = BenchSettings(task="rotten_tomatoes", length=LENGTH, batch_sizes=(1,), runs=1,
                             warmup=0, sparsity=0.5)
    out = run_benchmark(settings, tiny_top("bert", tokenizer), tokenizer)
    assert out["batches"][0]["loadavg_1min"] == [7.5, 7.5]
    assert out["load_before"]["loadavg"] == out["load_after"]["loadavg"] == [7.5, 6.0, 5.0]


def test_bf16_benchmark_times_every_variant_in_bf16(tokenizer):
    from toplib.bench import prepare_dense, timed_copy
    top = tiny_top("bert", tokenizer)
    settings = BenchSettings(task="rotten_tomatoes", length=LENGTH, batch_sizes=(2,), runs=1,
                             warmup=0, sparsity=0.5, dtype="bfloat16")
    out = run_benchmark(settings, top, tokenizer)
    assert out["settings"]["dtype"] == "bfloat16" and "| bfloat16 |" in format_report(out)
    assert set(out["cpu_flags"]) >= {"avx512_bf16", "amx_bf16"} or out["cpu_flags"] == {}
    assert all(v > 0 for v in out["batches"][0]["latency_ms"].values())
    assert top.model.dtype is torch.float32, "the caller's model was cast"
    dense, timed = prepare_dense(top, False, "bfloat16"), timed_copy(top, False, "bfloat16")
    assert dense.dtype is torch.bfloat16 and timed.model.dtype is torch.bfloat16


def test_onednn_bf16_linears_only_where_the_cpu_has_them(monkeypatch):
    from toplib.bench.models import onednn_available, resolve_onednn
    supported = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_onednn(None, "cpu", "bfloat16") == (onednn_available() and supported)
    assert resolve_onednn(None, "cpu", torch.float32) == onednn_available()
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert resolve_onednn(None, "cpu", torch.bfloat16) is False
    with pytest.raises(ValueError, match="onednn=True.*bfloat16, a CPU with avx512bw"):
        resolve_onednn(True, "cpu", "bfloat16")


@pytest.mark.parametrize("flags,match", [
    (["--engine", "onnxruntime", "--dtype", "bfloat16"], "dtype='bfloat16'.*float32 with"),
    (["--quantize", "int8"], "quantize='int8'.*--engine onnxruntime"),
    (["--engine", "onnxruntime", "--plot-dir", "plots"], "plot_dir"),
])
def test_engine_flags_are_checked_before_anything_loads(flags, match, monkeypatch):
    import toplib.bench.report as report
    monkeypatch.setattr(report, "build_model", lambda *a, **k: pytest.fail("a model loaded"))
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["bench", "--sparsity", "0.5", *flags])
    with pytest.raises(ValueError, match=match):
        args.func(args)
