"""Training runs end to end on a tiny model: checkpoints, save/load, resume, CLI errors."""
import json
import os

import pytest
import torch
from conftest import RUN

from toplib.cli import main as cli_main
from toplib.core.gates import FIXED_LOG_ALPHA, LOG_ALPHA_MAX, prob_nonzero
from toplib.hf.model import ToPModel
from toplib.train import finetune, prune
from toplib.train.config import build_train_config


def _weights(path):
    top = ToPModel.from_pretrained(path)
    return {k: v.clone() for k, v in top.state_dict().items()}


def test_finetune_writes_best_last_and_history(teacher_dir):
    for name in ("best", "last", "history.jsonl", "results.json"):
        assert os.path.exists(os.path.join(teacher_dir, name)), name
    with open(os.path.join(teacher_dir, "results.json")) as f:
        results = json.load(f)
    assert results["steps"] == 6 and 0.0 <= results["best"]["score"] <= 1.0
    assert not any(n.startswith(".") for n in os.listdir(teacher_dir)), "temporary dirs left"


@pytest.mark.parametrize("fix_pruners", [False, True])
def test_prune_records_the_method_and_resume_matches_uninterrupted(teacher_dir, tmp_path, fix_pruners):
    config = build_train_config("rotten_tomatoes", None,
                                dict(RUN, sparsity=0.3, fix_pruners_after_warmup=fix_pruners))
    full = prune("rotten_tomatoes", teacher_dir, str(tmp_path / "full"), config, progress=False)
    assert full["steps"] == 6
    records = [json.loads(line) for line in open(tmp_path / "full" / "history.jsonl")]
    train = [r for r in records if r["kind"] == "train"]
    for key in ("distill_loss", "lagrangian_loss", "rank_loss", "expected_sparsity",
                "target_sparsity", "lambda_1", "lambda_2", "expected_keep_ratio"):
        assert key in train[-1], key
    assert train[-1]["lambda_2"] > 0  # the multipliers moved while below target

    interrupted = prune("rotten_tomatoes", teacher_dir, str(tmp_path / "cut"), config,
                        progress=False, stop_after=5)  # state saved at step 4, step 5 lost
    assert interrupted == {"interrupted_at": 5}
    resumed = prune("rotten_tomatoes", teacher_dir, str(tmp_path / "cut"), config,
                    progress=False, resume=True)
    assert resumed["steps"] == 6
    a, b = _weights(tmp_path / "full" / "last"), _weights(tmp_path / "cut" / "last")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    steps = [json.loads(line)["step"] for line in open(tmp_path / "cut" / "history.jsonl")]
    assert steps == sorted(steps), "history has duplicated steps after resume"
    pruners = a["gates.pruner_log_alpha"]  # warm-up ends at step 3 of 6
    on = prob_nonzero(pruners) > 0.5
    if fix_pruners:  # every pruner on at evaluation is fixed on; the others still learn
        assert pruners[on].eq(FIXED_LOG_ALPHA).all() and pruners[~on].le(LOG_ALPHA_MAX).all()
    else:
        assert pruners.le(LOG_ALPHA_MAX).all()


def test_resume_with_the_tasks_own_length(teacher_dir, tmp_path):
    """max_seq_length None (the task's) is saved as None beside the resolved length; a
    resume must not read the two as a changed configuration."""
    config = build_train_config("rotten_tomatoes", None, dict(RUN, max_seq_length=None))
    out = str(tmp_path / "cut")
    assert prune("rotten_tomatoes", teacher_dir, out, config, progress=False,
                 stop_after=3) == {"interrupted_at": 3}
    resumed = prune("rotten_tomatoes", teacher_dir, out, config, progress=False, resume=True)
    assert resumed["steps"] == 6 and resumed["max_seq_length"] == 64  # rotten_tomatoes' own


def test_save_load_gives_identical_predictions(teacher_dir, tmp_path):
    top = ToPModel.from_pretrained(os.path.join(teacher_dir, "best"))
    with torch.no_grad():
        top.gates.bin_log_alpha.uniform_(-5, 5)
        top.gates.pruner_log_alpha.fill_(5.0)
    top.save_pretrained(str(tmp_path / "ckpt"))
    loaded = ToPModel.from_pretrained(str(tmp_path / "ckpt"))
    ids = torch.randint(1000, 2000, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    top.eval(), loaded.eval()
    a, b = top(ids, mask), loaded(ids, mask)
    assert (a.alive[:, -1].sum() < mask.sum()), "the gates should prune something"
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    torch.testing.assert_close(a.alive, b.alive, atol=0, rtol=0)


def test_existing_output_dir_is_never_clobbered(teacher_dir):
    with pytest.raises(ValueError, match="output_dir=.*resume"):
        finetune("rotten_tomatoes", teacher_dir, config=build_train_config("rotten_tomatoes", None, RUN))


@pytest.mark.parametrize("argv, needle", [
    (["finetune", "--task", "nope", "--output-dir", "x"], "task='nope'"),
    (["prune", "--task", "cola", "--teacher", "t", "--output-dir", "x", "--sparsity", "1.2"],
     "sparsity=1.2"),
    (["prune", "--task", "cola", "--teacher", "t", "--output-dir", "x", "--BIN_NUM", "0"],
     "bin_num=0"),
    (["prune", "--task", "cola", "--teacher", "t", "--output-dir", "x", "--TOPK", "0"], "topk=0"),
    (["finetune", "--task", "cola", "--output-dir", "x", "--data-dir", "/nonexistent"],
     "data_dir='/nonexistent'"),
])
def test_cli_bad_input_names_parameter_and_value(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    assert needle in capsys.readouterr().err


def test_cli_evaluate_json_reports_both_flops_conventions(teacher_dir, capsys):
    assert cli_main(["evaluate", teacher_dir, "--json", "--quiet", "--max-eval-samples", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = out["validation"]
    for key in ("accuracy", "sparsity_real", "reduction_real", "sparsity_padded",
                "reduction_padded", "keep_ratio"):
        assert key in m, key
    assert m["sparsity_real"] == 0.0 and m["reduction_padded"] > 1.0  # a dense teacher


GLUE_DIR = os.environ.get("TOPLIB_GLUE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "glue"))


@pytest.mark.skipif(not os.path.isdir(GLUE_DIR), reason=f"local GLUE TSVs not at {GLUE_DIR}")
@pytest.mark.parametrize("task, metrics", [
    ("cola", {"matthews"}), ("mrpc", {"f1", "accuracy"}), ("stsb", {"pearson", "spearman"}),
])
def test_glue_tasks_run_end_to_end_with_their_metrics(task, metrics, tiny_model_dir, tmp_path):
    config = build_train_config(task, "quick", dict(RUN, sparsity=0.3))
    finetune(task, str(tmp_path / "teacher"), model=tiny_model_dir, config=config,
             data=GLUE_DIR, progress=False)
    results = prune(task, str(tmp_path / "teacher"), str(tmp_path / "top"), config,
                    data=GLUE_DIR, progress=False)
    evaluated = results["best"]["results"]["validation"]
    assert metrics <= set(evaluated) and metrics <= set(results["teacher_results"]["validation"])
    assert evaluated["num_examples"] == RUN["max_eval_samples"]
    head = ToPModel.from_pretrained(str(tmp_path / "top" / "best")).model.classifier
    assert head.out_features == (1 if task == "stsb" else 2)  # STS-B: a regression head


def test_a_fixed_schedule_trains_only_the_weights_on_its_top_k_tokens(teacher_dir, tmp_path):
    from toplib.core.gates import schedule_gates
    knobs = dict(RUN, sparsity=0.0, prune_location=(1, 2), distill_rank_loss_alpha=0.0)
    config = build_train_config("rotten_tomatoes", None, dict(knobs, fixed_schedule="1,3"))
    prune("rotten_tomatoes", teacher_dir, str(tmp_path / "fixed"), config, progress=False)
    top = ToPModel.from_pretrained(tmp_path / "fixed" / "best")
    assert top.gates.closed_counts() == [1, 3]
    for got, want in zip(top.gates(training=False), schedule_gates([1, 3], RUN["bin_num"])):
        torch.testing.assert_close(got, want)
    train = [json.loads(x) for x in open(tmp_path / "fixed" / "history.jsonl")]
    train = [r for r in train if r["kind"] == "train"]
    assert all(r["lagrangian_loss"] == 0 and r["lambda_1"] == 0 for r in train)
    teacher = _weights(os.path.join(teacher_dir, "best"))
    trained = _weights(tmp_path / "fixed" / "best")
    assert any(not torch.equal(teacher[k], trained[k]) for k in teacher if "encoder" in k)
    with pytest.raises(ValueError, match=r"fixed_schedule=\(1, 5\).*0..BIN_NUM=4"):
        build_train_config("rotten_tomatoes", None, dict(knobs, fixed_schedule=(1, 5)))
    with pytest.raises(ValueError, match=r"one count per prune location \[1, 2\]"):
        prune("rotten_tomatoes", teacher_dir, str(tmp_path / "short"),
              build_train_config("rotten_tomatoes", None, dict(knobs, fixed_schedule=(1,))),
              progress=False)
