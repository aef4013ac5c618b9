"""ONNX export: the token-dropping graph in onnxruntime against prune_forward, the dense
graph against the Hugging Face model, int8, and the command line's errors."""
from __future__ import annotations

import os

import pytest
import torch
from conftest import padded_batch, tiny_classifier

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from toplib import PruneConfig, ToPModel  # noqa: E402
from toplib.core.gates import GATE_CLOSED, GATE_OPEN  # noqa: E402
from toplib.export import OrtModel, export_onnx, quantize_int8, require  # noqa: E402
from toplib.infer import eval_keep_table, prune_forward  # noqa: E402

ATOL = 1e-4
BIN_NUM = 5
BATCHES = [  # (real lengths, padded width): none is the tracing example's (11, 7) at 11
    ((12, 9, 5, 1, 2), 14),  # padding, a [CLS]-only row
    ((20,), 20),  # batch 1, a length not seen at export
    ((3, 3), 5),  # equal lengths, padded beyond both
    ((30, 29, 17, 8), 31),
]
GATE_CASES = {  # {prune-location index: closed bins}; locations are layers 1..3
    "nothing prunes": {},
    "bin 0 closed only": {0: [0]},
    "scattered bins": {0: [1, 3], 2: [0, 4]},
    "lowest bins": {0: [3, 4], 1: [2, 3, 4], 2: [4]},
    "all bins closed": {1: list(range(BIN_NUM))},
}


def gated_top(family: str, closed: dict[int, list[int]]) -> ToPModel:
    """Tiny ToP model (4 layers, prune locations 1..3) with exactly the ``closed`` bins shut."""
    top = ToPModel(tiny_classifier(family), PruneConfig(bin_num=BIN_NUM)).eval()
    with torch.no_grad():
        top.gates.bin_log_alpha.fill_(GATE_OPEN)
        top.gates.pruner_log_alpha.fill_(GATE_CLOSED)
        for p, bins in closed.items():
            top.gates.bin_log_alpha[p, bins] = GATE_CLOSED
            top.gates.pruner_log_alpha[p] = GATE_OPEN
    return top


def run_both(top, graph: OrtModel, lengths, width):
    ids, mask = padded_batch(top.config, lengths=lengths, seq_len=width)
    types = torch.zeros_like(ids) if top.config.model_type == "bert" else None
    return prune_forward(top, ids, mask, types), graph(ids, mask, types)


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "raw"])
@pytest.mark.parametrize("closed", GATE_CASES.values(), ids=GATE_CASES.keys())
def test_drop_graph_matches_prune_forward(family, closed, optimize, tmp_path):
    top = gated_top(family, closed)
    assert sorted(eval_keep_table(top)) == sorted(1 + p for p in closed)  # others prune nothing
    graph = OrtModel(export_onnx(top, str(tmp_path / "m.onnx"), optimize=optimize))
    for lengths, width in BATCHES:
        ref, out = run_both(top, graph, lengths, width)
        torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
        assert torch.equal(out.logits.argmax(-1), ref.logits.argmax(-1))
        assert torch.equal(out.kept, ref.kept), (lengths, out.kept, ref.kept)


def test_closed_bins_prune_the_right_ranks(tmp_path):
    """Closing only bin 0 drops the most important fifth: of 21 candidates, ranks 0..4 fall
    in bin 0 (floor(r / 21 * 5) == 0 for r < 4.2), so 5 go and 17 tokens enter layers 1..3."""
    top = gated_top("bert", {0: [0]})
    graph = OrtModel(export_onnx(top, str(tmp_path / "m.onnx")))
    _, out = run_both(top, graph, (22,), 22)
    assert out.kept[0].tolist() == [22, 17, 17, 17]


def test_release_rounding_and_all_rows(family, tmp_path):
    prune = PruneConfig(bin_num=BIN_NUM, bin_rounding="release", importance_rows="all")
    top = ToPModel(tiny_classifier(family), prune).eval()
    with torch.no_grad():
        top.gates.bin_log_alpha.fill_(GATE_OPEN)
        top.gates.bin_log_alpha[:, [1, 4]] = GATE_CLOSED
        top.gates.pruner_log_alpha.fill_(GATE_OPEN)
    graph = OrtModel(export_onnx(top, str(tmp_path / "m.onnx")))
    for lengths, width in BATCHES:
        ref, out = run_both(top, graph, lengths, width)
        torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
        assert torch.equal(out.kept, ref.kept)


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "raw"])
def test_dense_graph_equals_hugging_face(family, optimize, tmp_path):
    top = gated_top(family, {0: [0, 1]})  # gates play no part in the dense graph
    graph = OrtModel(export_onnx(top, str(tmp_path / "d.onnx"), dense=True, optimize=optimize))
    assert graph.outputs == ["logits"]
    for lengths, width in BATCHES:
        ids, mask = padded_batch(top.config, lengths=lengths, seq_len=width)
        with torch.no_grad():
            ref = top.model(input_ids=ids, attention_mask=mask).logits
        out = graph(ids, mask)
        assert out.kept is None
        torch.testing.assert_close(out.logits, ref, atol=ATOL, rtol=0)


def test_int8_graphs_run_and_mostly_agree(tmp_path):
    top = gated_top("bert", GATE_CASES["lowest bins"])
    lengths = tuple(range(30, 2, -1))
    ids, mask = padded_batch(top.config, lengths=lengths, seq_len=32)
    ref = prune_forward(top, ids, mask)
    for dense in (False, True):
        fp32 = export_onnx(top, str(tmp_path / f"{dense}.onnx"), dense=dense)
        out = OrtModel(quantize_int8(fp32, str(tmp_path / f"{dense}-int8.onnx")), 2)(ids, mask)
        if not dense:  # kept counts follow from the lengths and the gates alone
            assert torch.equal(out.kept, ref.kept)
        agree = (out.logits.argmax(-1) == ref.logits.argmax(-1)).double().mean().item()
        assert agree >= 0.8, (dense, agree)
        assert (out.logits - ref.logits).abs().max() < 0.5


@pytest.mark.parametrize("call, match", [
    (lambda top, d: export_onnx(top, str(d / "m.onnx"), opset=9), "opset=9"),
    (lambda top, d: export_onnx(top, str(d / "m.txt")), "ending in .onnx"),
    (lambda top, d: export_onnx(top, str((d / "x.onnx").mkdir() or d / "x.onnx")),
     "it is a folder"),
    (lambda top, d: export_onnx(top, str(d / "no" / "m.onnx")), "must exist"),
    (lambda top, d: OrtModel(str(d / "missing.onnx")), "path="),
    (lambda top, d: quantize_int8(str(d / "missing.onnx"), str(d / "q.onnx")), "src="),
    (lambda top, d: require("no_such_module_toplib"), r"\.\[export\]"),
], ids=["opset", "suffix", "a folder named .onnx", "folder", "runner path", "quantize src",
        "missing extra"])
def test_clear_errors(call, match, tmp_path):
    top = gated_top("bert", {})
    with pytest.raises((ValueError, ImportError), match=match):
        call(top, tmp_path)


def test_runner_refuses_left_padding(tmp_path):
    top = gated_top("bert", {})
    graph = OrtModel(export_onnx(top, str(tmp_path / "m.onnx")))
    ids, mask = padded_batch(top.config)
    with pytest.raises(ValueError, match="right-padded"):
        graph(ids, mask.flip(1))


@pytest.mark.parametrize("argv, match", [
    (["CKPT", "out.txt"], "output="),
    (["CKPT", "m.onnx", "--opset", "3"], "opset=3"),
    (["CKPT", "m.onnx", "--check", "-1"], "check=-1"),
    (["CKPT", "m.onnx", "--sparsity", "1.5"], "sparsity=1.5"),
    (["CKPT", "m.onnx", "--dense", "--sparsity", "0.5"], "no gates"),
    (["no/such/dir", "m.onnx"], "checkpoint="),
    (["CKPT", "m.onnx", "--check", "3", "--task", "nope"], "nope"),
    (["CKPT", "m.onnx", "--quantize", "int4"], "int4"),
], ids=["suffix", "opset", "check", "sparsity", "dense sparsity", "checkpoint", "task",
        "quantize"])
def test_command_line_errors(argv, match, tiny_model_dir, tmp_path, capsys):
    from toplib.cli import main
    argv = [tiny_model_dir if a == "CKPT" else a for a in argv]
    argv[1] = str(tmp_path / argv[1])
    assert main(["export", *argv]) == 2
    assert match in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # refused before writing anything


def test_command_line_writes_and_checks(teacher_dir, tmp_path, capsys):
    """A tiny run on rotten_tomatoes: sparsity on its validation lengths, int8, --check."""
    from toplib.cli import main
    out = str(tmp_path / "m.onnx")
    assert main(["export", teacher_dir, out, "--sparsity", "0.3", "--check", "24"]) == 0
    printed = capsys.readouterr().out
    assert "labels agree 1.0000" in printed and "kept counts equal True" in printed
    assert main(["export", teacher_dir, str(tmp_path / "q.onnx"), "--quantize", "int8"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "q.onnx"]  # no fp32 copy left behind


@pytest.mark.slow
def test_minilm_on_real_validation_data(tmp_path):
    """The offline MiniLM at sparsity 0.5 on 256 rotten_tomatoes validation examples."""
    from toplib.bench.models import build_model
    from toplib.data import encode, load_task_data, real_lengths
    from toplib.export.cli import compare
    from toplib.infer import set_eval_sparsity
    top, tok = build_model()
    examples = encode(load_task_data("rotten_tomatoes")["validation"], tok, 128)[:256]
    set_eval_sparsity(top, real_lengths(examples), 0.5)
    assert eval_keep_table(top)  # something prunes
    result = compare(top, export_onnx(top, str(tmp_path / "m.onnx")), examples)
    assert result["max_abs_diff"] < ATOL
    assert result["label_agreement"] == 1.0 and result["kept_equal"]


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_ort_benchmark_reads_like_run_benchmark(quantize, tiny_model_dir, tmp_path):
    from toplib.bench import BenchSettings, build_model, format_report, run_benchmark
    top, tok = build_model(tiny_model_dir)
    settings = BenchSettings(batch_sizes=(1, 4), runs=2, warmup=1, sparsity=0.4,
                             max_seq_length=32, engine="onnxruntime", quantize=quantize)
    workdir = str(tmp_path / "graphs") if quantize else None  # None: a temporary folder
    results = run_benchmark(settings, top, tok, workdir=workdir)
    assert results["quantize"] == (quantize or "fp32") and results["cpu_model"]
    assert results["engine"] == "onnxruntime" and results["onnxruntime"]
    if quantize:
        assert all(os.path.isfile(p) for p in results["graphs"].values())
    else:
        assert results["graphs"] is None
    for row in results["batches"]:
        assert set(row["latency_ms"]) == {"ort_dense", "ort_drop"}
        assert row["speedup"] == pytest.approx(
            row["latency_ms"]["ort_dense"] / row["latency_ms"]["ort_drop"])
        assert row["ratio_real"] == pytest.approx(row["speedup"] / row["reduction_real"])
        assert row["reduction_real"] > 1 and 0 <= row["label_agreement"] <= 1
    report, row = format_report(results), results["batches"][-1]
    assert f"onnxruntime {results['onnxruntime']} {quantize or 'fp32'}" in report
    for needle in ("speedup over ort_dense", "ort_drop", "label_agreement", "ratio_real_cpu",
                   f"{row['latency_ms']['ort_drop']:.5g}", f"{row['ratio_real']:.5g}"):
        assert needle in report, needle
    assert "where the time goes" not in report  # the section profile is torch's


@pytest.mark.parametrize("given,match", [(dict(quantize="int4"), "quantize='int4'"),
                                         (dict(dtype="bfloat16"), "dtype='bfloat16'"),
                                         (dict(device="cuda"), "device='cuda'")])
def test_ort_benchmark_refuses_bad_quantize(given, match):
    from toplib.bench import BenchSettings
    with pytest.raises(ValueError, match=match):
        BenchSettings(engine="onnxruntime", **given)
