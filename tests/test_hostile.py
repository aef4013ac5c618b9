"""Hostile input, table-driven: every case ends in its named error (the message names the
parameter or the file) or in its correct result, and no command-line case prints a
traceback."""
import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import RUN, TINY
from transformers import BertConfig, BertForSequenceClassification, GPT2Config

import toplib.cli as cli
from toplib.bench import BenchSettings
from toplib.cli import main as cli_main
from toplib.core.config import PruneConfig, check_device, parse_layers
from toplib.data import load_task_data
from toplib.hf.model import CheckpointError, load_checkpoint
from toplib.infer import predict, set_eval_sparsity
from toplib.train import TrainConfig, finetune, prune
from toplib.train.config import build_train_config
from toplib.train.evaluate import evaluate_checkpoint
from toplib.train.rundir import LOCK_FILE

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
NEWS = os.path.join(DATA, "20news")
TASK = "rotten_tomatoes"
SMALL = ["--max-train-samples", "48", "--max-eval-samples", "24", "--batch-size", "8",
         "--eval-batch-size", "12", "--finetune-epochs", "1", "--epochs", "1",
         "--warmup-epochs", "0.5", "--eval-steps", "2", "--max-seq-length", "32",
         "--bin-num", "4", "--reg-learning-rate", "0.2", "--quiet"]
WORDS = "good bad fine dull great awful plain fresh stale bright".split()


@dataclass
class World:
    """Everything the cases point at, built once."""

    root: str
    model: str
    teacher: str
    pruned: str

    def __call__(self, *names: str) -> str:
        return os.path.join(self.root, *names)


def _table(path, rows, header="text,label"):
    with open(path, "w") as f:
        f.write(header + "\n" + "\n".join(rows) + "\n")


def _damaged(world: World, name: str, damage) -> str:
    """A copy of the pruned checkpoint with ``damage(path)`` done to it."""
    path = world("ckpt", name)
    shutil.copytree(world.pruned + "/best", path)
    damage(path)
    return path


def _write(relpath: str, data: bytes):
    def damage(path):
        with open(os.path.join(path, relpath), "wb") as f:
            f.write(data)
    return damage


def _truncate(relpath: str):
    def damage(path):
        full = os.path.join(path, relpath)
        with open(full, "rb") as f:
            head = f.read(os.path.getsize(full) // 2)
        with open(full, "wb") as f:
            f.write(head)
    return damage


def _remove(*relpaths: str):
    def damage(path):
        for rel in relpaths:
            if os.path.exists(os.path.join(path, rel)):
                os.remove(os.path.join(path, rel))
    return damage


def _build_files(w: World) -> None:
    rows = [f"{WORDS[i % 10]} {WORDS[(3 * i) % 10]} movie,{'ab'[i % 2]}" for i in range(40)]
    _table(w("custom_train.csv"), rows)
    _table(w("custom_shifted.csv"), [r.replace(",a", ",c") for r in rows])
    _table(w("custom_val_only.csv"), rows[:10] + ["odd movie,z"])
    _table(w("one_class.csv"), [f"{WORDS[i % 10]} film,1" for i in range(20)])
    _table(w("empty.csv"), [], header="text,label")
    _table(w("no_label.csv"), ["nice film"], header="text")
    _table(w("missing_label.csv"), ["nice film,1", "bad film,"])
    _table(w("bad_label.csv"), ["nice film,maybe", "bad film,0"])
    _table(w("ids_only.csv"), [f"r{i}x,{i % 2}" for i in range(20)], header="id,label")
    _table(w("ids_and_text.csv"), [f"r{i}x,{WORDS[i % 10]} film,{i % 2}" for i in range(20)],
           header="id,review,label")
    with open(w("latin1.csv"), "wb") as f:
        f.write("text,label\ncaf\xe9 cr\xe8me,1\n".encode("latin-1") + b"\xff\xfe,0\n")
    with open(w("broken.json"), "w") as f:
        f.write('[{"text": "a", "label": 1},')
    open(w("a_file"), "w").close()
    os.makedirs(w("empty_dir"))


def _build_models(w: World) -> None:
    tokenizer_files = [f for f in os.listdir(w.model) if not f.startswith(("model", "config"))]
    for name, config in (("one_layer", BertConfig(vocab_size=30522, **dict(
            TINY, num_hidden_layers=1))), ("gpt2", GPT2Config(n_layer=1, n_embd=32, n_head=2))):
        os.makedirs(w(name))
        config.save_pretrained(w(name))
        if name == "one_layer":
            BertForSequenceClassification(config).save_pretrained(w(name))
        for f in tokenizer_files:
            shutil.copy(os.path.join(w.model, f), w(name))


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, teacher_dir) -> World:
    root = str(tmp_path_factory.mktemp("hostile"))
    pruned = os.path.join(root, "pruned")
    prune(TASK, teacher_dir, pruned, build_train_config(TASK, None, dict(RUN, sparsity=0.3)),
          progress=False)
    w = World(root, tiny_model_dir, teacher_dir, pruned)
    _build_files(w)
    _build_models(w)
    finetune("custom", w("custom_teacher"), model=tiny_model_dir, progress=False,
             config=build_train_config("custom", None, RUN), data={"train_file": w(
                 "custom_train.csv")})
    os.makedirs(w("ckpt"))
    return w


def _finetune(w, *extra, task=TASK, out="out"):
    return ["finetune", "--task", task, "--model", w.model, "--output-dir", w(out), *SMALL,
            *extra]


def _prune(w, *extra, task=TASK, out="out", teacher=None):
    return ["prune", "--task", task, "--teacher", teacher or w.teacher, "--output-dir", w(out),
            *SMALL, *extra]


def _evaluate(w, checkpoint, *extra):
    return ["evaluate", checkpoint, "--quiet", "--max-eval-samples", "8", *extra]


def _bench(w, *extra):
    return ["bench", "--checkpoint", w.pruned, "--runs", "1", "--warmup", "0",
            "--batch-sizes", "1", *extra]


def _read_only(w, name: str) -> str:
    path = w(name)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o555)
    return path


BENCH_ERRORS = [  # (case, flags or flags(world), the text the error must show): before timing
    ("device foo", ("--device", "foo"), "device='foo'"),
    ("device cuda without CUDA", ("--device", "cuda"), "device='cuda'"),
    ("threads 0", ("--threads", "0"), "threads=0"),
    ("runs 0", ("--runs", "0"), "runs=0"),
    ("batch sizes 0", ("--batch-sizes", "0"), "batch_sizes"),
    ("batch sizes words", ("--batch-sizes", "a,b"), "batch_sizes"),
    ("length 1", ("--length", "1"), "length=1"),
    ("length above positions", ("--length", "5000"), "length=5000"),
    ("max seq length 0", ("--max-seq-length", "0"), "max_seq_length=0"),
    ("max seq length above positions", ("--max-seq-length", "5000"), "max_seq_length=5000"),
    ("sparsity 1.5", ("--sparsity", "1.5"), "sparsity=1.5"),
    ("sparsity words", ("--sparsity", "half"), "sparsity"),
    ("unknown task", ("--task", "nope"), "task='nope'"),
    ("PRUNE_LOCATION reversed", ("--PRUNE_LOCATION", "3-1"), "prune_location='3-1'"),
    ("json in a missing folder", ("--json", "/nonexistent/dir/r.json"), "json="),
    ("plot dir below a file", lambda w: ("--plot-dir", w("a_file", "plots")), "plot_dir="),
    ("missing checkpoint", ("--checkpoint", "/nonexistent/ckpt"), "/nonexistent/ckpt"),
]


CKPT_DAMAGE = {  # name: (damage, the text the error must show)
    "no_weights": (_remove("model.safetensors"), "holds no weights"),
    "truncated_weights": (_truncate("model.safetensors"), "model.safetensors|weights could not"),
    "random_weights": (_write("model.safetensors", os.urandom(4096)), "model.safetensors"),
    "no_gates": (_remove("gates.pt"), "gates.pt"),
    "garbage_gates": (_write("gates.pt", b"not a pickle"), "gates.pt"),
    "truncated_gates": (_truncate("gates.pt"), "gates.pt"),
    "bad_meta": (_write("toplib.json", b"{not json"), "toplib.json"),
    "bad_config": (_write("config.json", b"[1, 2"), "config.json"),
    "no_config": (_remove("config.json"), "config.json"),
    "no_tokenizer": (_remove("tokenizer.json", "tokenizer_config.json", "vocab.txt"),
                     "tokenizer"),
}

# (case id, argv(world), the text the error must show)
CLI_ERRORS = [
    ("sparsity above 1", lambda w: _prune(w, "--sparsity", "1.2"), "sparsity=1.2"),
    ("sparsity negative", lambda w: _prune(w, "--sparsity", "-0.1"), "sparsity=-0.1"),
    ("sparsity not a number", lambda w: _prune(w, "--sparsity", "abc"), "sparsity"),
    ("BIN_NUM 0", lambda w: _prune(w, "--BIN_NUM", "0"), "bin_num=0"),
    ("TOPK 0", lambda w: _prune(w, "--TOPK", "0"), "topk=0"),
    ("LEARNING_RATE inf", lambda w: _prune(w, "--LEARNING_RATE", "inf"), "learning_rate=inf"),
    ("learning rate nan", lambda w: _prune(w, "--learning-rate", "nan"), "learning_rate=nan"),
    ("reg learning rate negative", lambda w: _prune(w, "--reg-learning-rate", "-1"),
     "reg_learning_rate=-1"),
    ("epochs 0", lambda w: _prune(w, "--epochs", "0"), "epochs=0"),
    ("batch size 0", lambda w: _finetune(w, "--batch-size", "0"), "batch_size=0"),
    ("eval batch size negative", lambda w: _finetune(w, "--eval-batch-size", "-3"),
     "eval_batch_size=-3"),
    ("max seq length 1", lambda w: _finetune(w, "--max-seq-length", "1"), "max_seq_length=1"),
    ("max seq length 0", lambda w: _finetune(w, "--max-seq-length", "0"), "max_seq_length=0"),
    ("max seq length above positions", lambda w: _finetune(w, "--max-seq-length", "5000"),
     "max_seq_length=5000"),
    ("PRUNE_LOCATION reversed", lambda w: _prune(w, "--PRUNE_LOCATION", "3-1"),
     "prune_location='3-1'"),
    ("PRUNE_LOCATION words", lambda w: _prune(w, "--PRUNE_LOCATION", "a,b"), "prune_location"),
    ("PRUNE_LOCATION beyond the model", lambda w: _prune(w, "--PRUNE_LOCATION", "1-9"),
     "prune_location"),
    ("distill temperature 0", lambda w: _prune(w, "--distill-temperature", "0"),
     "distill_temperature=0"),
    ("warmup negative", lambda w: _prune(w, "--warmup-epochs", "-1"), "warmup_epochs=-1"),
    ("evals per epoch 0", lambda w: _prune(w, "--evals-per-epoch", "0"), "evals_per_epoch=0"),
    ("max train samples 0", lambda w: _finetune(w, "--max-train-samples", "0"),
     "max_train_samples=0"),
    ("zero training steps", lambda w: _finetune(w, "--finetune-epochs", "0.001"),
     "finetune_epochs=0.001"),
    ("unknown task", lambda w: _finetune(w, task="nope"), "task='nope'"),
    ("unknown preset", lambda w: _finetune(w, "--preset", "nope"), "preset"),
    ("missing data dir", lambda w: _finetune(w, "--data-dir", "/nonexistent", task="sst2"),
     "data_dir='/nonexistent'"),
    ("data dir without the task", lambda w: _finetune(w, "--data-dir", w("empty_dir"),
                                                      task="sst2"), "data_dir="),
    ("missing train file", lambda w: _finetune(w, "--train-file", w("nope.csv"), task="custom"),
     "train_file="),
    ("empty file", lambda w: _finetune(w, "--train-file", w("empty.csv"), task="custom"),
     "empty.csv"),
    ("no label column", lambda w: _finetune(w, "--train-file", w("no_label.csv"),
                                            task="custom"), "no_label.csv"),
    ("rows without labels", lambda w: _finetune(w, "--train-file", w("missing_label.csv"),
                                                task="custom"), "missing_label.csv"),
    ("label not of the task", lambda w: _finetune(w, "--train-file", w("bad_label.csv")),
     "bad_label.csv"),
    ("not UTF-8", lambda w: _finetune(w, "--train-file", w("latin1.csv"), task="custom"),
     "latin1.csv"),
    ("broken JSON", lambda w: _finetune(w, "--train-file", w("broken.json"), task="custom"),
     "broken.json"),
    ("text column absent", lambda w: _finetune(w, "--train-file", w("custom_train.csv"),
                                               "--text-columns", "review", task="custom"),
     "text_columns='review'"),
    ("only an id column", lambda w: _finetune(w, "--train-file", w("ids_only.csv"),
                                              task="custom"), "ids_only.csv"),
    ("one class", lambda w: _finetune(w, "--train-file", w("one_class.csv"), task="custom"),
     "one_class.csv"),
    ("a label only in validation", lambda w: _finetune(
        w, "--train-file", w("custom_train.csv"), "--validation-file", w("custom_val_only.csv"),
        task="custom"), "validation_file="),
    ("device foo", lambda w: _finetune(w, "--device", "foo"), "device='foo'"),
    ("device cuda without CUDA", lambda w: _finetune(w, "--device", "cuda"), "device='cuda'"),
    ("evaluate on device foo", lambda w: _evaluate(w, w.teacher, "--device", "foo"),
     "device='foo'"),
    ("missing model path", lambda w: _finetune(w, "--model", "/nonexistent/model"),
     "model='/nonexistent/model'"),
    ("empty model dir", lambda w: _finetune(w, "--model", w("empty_dir")), "model="),
    ("unsupported model family", lambda w: _finetune(w, "--model", w("gpt2")), "gpt2"),
    ("a 1-layer BERT", lambda w: _finetune(w, "--model", w("one_layer")), "num_hidden_layers"),
    ("output dir is a file", lambda w: _finetune(w, out="a_file"), "output_dir="),
    ("output dir below a file", lambda w: _finetune(w, out="a_file/run"), "output_dir="),
    ("an existing run", lambda w: _finetune(w, out="custom_teacher"), "--resume"),
    ("resume with another sparsity", lambda w: _prune(w, "--resume", "--sparsity", "0.5",
                                                      out="pruned"), "sparsity: 0.3 -> 0.5"),
    ("resume with other epochs", lambda w: _prune(w, "--resume", "--sparsity", "0.3",
                                                  "--epochs", "3", out="pruned"),
     "epochs: 1 -> 3"),
    ("resume with another BIN_NUM", lambda w: _prune(
        w, "--resume", "--sparsity", "0.3", "--BIN_NUM", "8", "--accept-config-change",
        out="pruned"), "prune.bin_num: 4 -> 8"),
    ("evaluate a missing checkpoint", lambda w: _evaluate(w, w("nope")), "checkpoint="),
    ("evaluate an empty dir", lambda w: _evaluate(w, w("empty_dir")), "config.json"),
    ("teacher dir empty", lambda w: _prune(w, "--sparsity", "0.3", teacher=w("empty_dir")),
     "teacher="),
    ("teacher missing", lambda w: _prune(w, "--sparsity", "0.3", teacher=w("nope")),
     "teacher="),
    ("prune 20news from a 2-label teacher", lambda w: _prune(
        w, "--sparsity", "0.3", "--data-dir", NEWS, task="20news"),
     "fine-tuned on task 'rotten_tomatoes', not '20news'"),
    ("evaluate a 2-label checkpoint on 20news", lambda w: _evaluate(
        w, w.pruned, "--task", "20news", "--data-dir", NEWS), "20 labels"),
    ("custom labels shifted", lambda w: _evaluate(
        w, w("custom_teacher"), "--task", "custom", "--validation-file",
        w("custom_shifted.csv")), "custom_shifted.csv"),
    ("PRUNE_LOCATION empty", lambda w: _prune(w, "--PRUNE_LOCATION", ""), "prune_location=''"),
    ("rank distill layers negative", lambda w: _prune(w, "--rank-distill-layers", "-1"),
     "rank_distill_layers='-1'"),
    ("seed negative", lambda w: _finetune(w, "--seed", "-1"), "seed=-1"),
    ("seed beyond numpy's range", lambda w: _finetune(w, "--seed", str(2**40)), "seed="),
    ("DISTILL_RANK_LOSS_ALPHA inf", lambda w: _prune(w, "--DISTILL_RANK_LOSS_ALPHA", "inf"),
     "distill_rank_loss_alpha=inf"),
    ("sparsity epsilon 1", lambda w: _prune(w, "--sparsity-epsilon", "1"), "sparsity_epsilon=1"),
    ("eval steps 0", lambda w: _prune(w, "--eval-steps", "0"), "eval_steps=0"),
    ("max eval samples negative", lambda w: _finetune(w, "--max-eval-samples", "-4"),
     "max_eval_samples=-4"),
    ("finetune learning rate inf", lambda w: _finetune(w, "--finetune-learning-rate", "inf"),
     "finetune_learning_rate=inf"),
    ("train file is a folder", lambda w: _finetune(w, "--train-file", w("empty_dir"),
                                                  task="custom"), "empty_dir"),
    ("model path is a file", lambda w: _finetune(w, "--model", w("a_file")), "a_file"),
    ("output dir not writable", lambda w: _finetune(w, out=_read_only(w, "ro") + "/run"),
     "ro"),
    ("evaluate with max-eval-samples 0", lambda w: _evaluate(w, w.teacher) + [
        "--max-eval-samples", "0"], "max_eval_samples=0"),
    ("evaluate on cuda:1", lambda w: _evaluate(w, w.teacher, "--device", "cuda:1"),
     "device='cuda:1'"),
    ("evaluate a file as checkpoint", lambda w: _evaluate(w, w("a_file")), "a_file"),
    ("evaluate an unknown task", lambda w: _evaluate(w, w.teacher, "--task", "nope"),
     "task='nope'"),
    ("quickstart on device foo", lambda w: ["quickstart", "--device", "foo", "--output-dir",
                                            w("qs"), "--quiet"], "device='foo'"),
    ("quickstart sparsity 1.5", lambda w: ["quickstart", "--sparsity", "1.5", "--output-dir",
                                           w("qs"), "--quiet"], "sparsity=1.5"),
    *[(f"bench {name}", lambda w, f=flags: _bench(w, *(f(w) if callable(f) else f)), needle)
      for name, flags, needle in BENCH_ERRORS],
    *[(f"checkpoint {name}", lambda w, name=name, d=d: _evaluate(w, _damaged(w, name, d)),
       needle) for name, (d, needle) in CKPT_DAMAGE.items()],
]


def _run_cli(argv, capsys, caplog) -> tuple[int, str]:
    with caplog.at_level(logging.INFO):
        code = cli_main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    return code, err


ROOT_WRITES_ANYWAY = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod does not stop root from writing")


def _cli_params():
    for case, argv, needle in CLI_ERRORS:
        marks = [ROOT_WRITES_ANYWAY] if "not writable" in case else []
        yield pytest.param(case, argv, needle, id=case, marks=marks)


@pytest.mark.parametrize("case, argv, needle", list(_cli_params()))
def test_cli_case_ends_in_a_named_error(case, argv, needle, world, capsys, caplog):  # noqa: ARG001
    if "20news" in case and not os.path.isdir(NEWS):
        pytest.skip(f"20news data not at {NEWS}")
    code, err = _run_cli(argv(world), capsys, caplog)
    assert code != 0
    assert any(n.lower() in err.lower() for n in needle.split("|")), err


def test_cli_a_torn_history_line_resumes_with_a_warning(world, capsys, caplog):
    out = world("torn")
    shutil.copytree(world.pruned, out)
    with open(os.path.join(out, "history.jsonl"), "a") as f:
        f.write('{"step": 9, "kin')
    code, _ = _run_cli(_prune(world, "--resume", "--sparsity", "0.3", out="torn"), capsys, caplog)
    assert code == 0 and "dropped 1 unreadable line" in caplog.text


def test_cli_a_diverging_run_stops_naming_step_and_quantity(world, capsys, caplog):
    code, err = _run_cli(_finetune(world, "--finetune-learning-rate", "1e35", out="nan"),
                         capsys, caplog)
    assert code == 1 and "step" in err and "not finite" in err
    assert not os.path.exists(world("nan", "best")) or all(
        torch.isfinite(p).all() for p in load_checkpoint(world("nan"))[0].parameters())


def test_cli_a_locked_output_dir_names_the_holder(world, capsys, caplog):
    out = world("locked")
    os.makedirs(out)
    with open(os.path.join(out, LOCK_FILE), "w") as f:
        json.dump({"pid": os.getppid(), "host": socket.gethostname()}, f)
    code, err = _run_cli(_finetune(world, out="locked"), capsys, caplog)
    assert code == 1 and f"PID {os.getppid()}" in err


def test_cli_custom_files_log_their_text_columns_and_skip_ids(world, capsys, caplog):
    code, _ = _run_cli(_finetune(world, "--train-file", world("ids_and_text.csv"),
                                 task="custom", out="ids"), capsys, caplog)
    assert code == 0 and "text from column(s) ['review']" in caplog.text


@pytest.mark.parametrize("argv", [["evaluate", "/nonexistent"], ["finetune", "--task", "x",
                                                                  "--output-dir", "o"]])
def test_a_real_process_prints_no_traceback(argv, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toplib", *argv], capture_output=True,
                          text=True, cwd=tmp_path, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    debug = subprocess.run([sys.executable, "-m", "toplib", "--debug", *argv],
                           capture_output=True, text=True, cwd=tmp_path,
                           env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert "Traceback" in debug.stderr


def _raises(error: BaseException):
    def command(*args, **kwargs):  # noqa: ARG001 - stands in for finetune
        raise error
    return command


FULL = "/runs/x/best/model.safetensors"
# (case, what the command raises, exit status, the texts its one line must show)
CLI_FAILURES = [
    ("disk full", OSError(errno.ENOSPC, "No space left on device", FULL), 1,
     (FULL, "free space", "--output-dir")),
    ("permission denied", OSError(errno.EACCES, "Permission denied", "/runs/x"), 1,
     ("/runs/x", "permissions")),
    ("read-only file system", OSError(errno.EROFS, "Read-only file system", "/runs/x"), 1,
     ("/runs/x", "read-only")),
    ("an OS error without a file", OSError("the device went away"), 1, ("went away",)),
    ("a missing key", KeyError("column 'label' is missing"), 2, ("column 'label' is missing",)),
    ("a bug", RuntimeError("boom"), 1, ("RuntimeError: boom", "--debug")),
    ("interrupted", KeyboardInterrupt(), 130, ("interrupted", "--resume")),
]


@pytest.mark.parametrize("case, error, status, needles", CLI_FAILURES,
                         ids=[c[0] for c in CLI_FAILURES])
def test_cli_failure_is_one_line(case, error, status, needles, world, monkeypatch,  # noqa: ARG001
                                 capsys, caplog):
    monkeypatch.setattr(cli, "finetune", _raises(error))
    code, err = _run_cli(_finetune(world), capsys, caplog)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status and len(lines) == 1 and lines[0].startswith("toplib finetune: "), err
    assert all(n.lower() in err.lower() for n in needles), err


@pytest.mark.parametrize("where", ["before the command", "after the command"])
def test_debug_adds_the_traceback(where, world, monkeypatch, capsys):
    monkeypatch.setattr(cli, "finetune", _raises(RuntimeError("boom")))
    argv = ["--debug", *_finetune(world)] if where.startswith("before") else [
        *_finetune(world), "--debug"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err


def test_log_lines_carry_no_traceback_without_debug():
    try:
        raise ValueError("bad input")
    except ValueError:
        record = logging.LogRecord("toplib", logging.ERROR, __file__, 1, "failed", None,
                                   sys.exc_info())
    full = logging.Formatter(cli.LOG_FORMAT).format(record)  # caches the traceback text
    quiet = cli._NoTracebackFormatter(cli.LOG_FORMAT).format(record)
    assert "Traceback" in full and "failed" in quiet and "Traceback" not in quiet


def _top(w):
    return load_checkpoint(w.pruned)[0]


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
NO_MPS = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")


# (case id, call(world), the exception, the text its message must show)
API_ERRORS = [
    ("config with a text learning rate", lambda w: TrainConfig(learning_rate="3e-5"),
     ValueError, "learning_rate='3e-5'"),
    ("config with nan sparsity", lambda w: TrainConfig(sparsity=float("nan")), ValueError,
     "sparsity=nan"),
    ("config with a negative seed", lambda w: TrainConfig(seed=-1), ValueError, "seed=-1"),
    ("config with a text switch", lambda w: TrainConfig(binned_expectation="yes"), ValueError,
     "binned_expectation='yes'"),
    ("saved config of a removed option", lambda w: TrainConfig.from_dict(
        {"constrain_measured": True}), ValueError, "constrain_measured=True is invalid: this option was removed"),
    ("config with a bool batch size", lambda w: TrainConfig(batch_size=True), ValueError,
     "batch_size=True"),
    ("prune structure with a fractional layer", lambda w: PruneConfig(prune_location=[1.5]),
     ValueError, "prune_location=[1.5]"),
    ("prune structure with nan droprate", lambda w: PruneConfig(droprate_init=float("nan")),
     ValueError, "droprate_init=nan"),
    *[(f"parse_layers {text!r}", lambda w, t=text: parse_layers(t), ValueError,
       f"prune_location={text!r}") for text in ("3-1", "", "-1", "a-b", "1.5", "2-")],
    ("check_device foo", lambda w: check_device("foo"), ValueError, "device='foo'"),
    ("check_device meta", lambda w: check_device("meta"), ValueError, "device='meta'"),
    ("check_device one CUDA index too many", lambda w: check_device(
        f"cuda:{torch.cuda.device_count()}"), ValueError, "device='cuda:"),
    pytest.param("check_device cuda without CUDA", lambda w: check_device("cuda"), ValueError,
                 "device='cuda'", marks=NO_CUDA, id="check_device cuda without CUDA"),
    pytest.param("check_device mps unavailable", lambda w: check_device("mps", "bench_device"),
                 ValueError, "bench_device='mps'", marks=NO_MPS, id="check_device mps"),
    ("bench settings runs 0", lambda w: BenchSettings(runs=0), ValueError, "runs=0"),
    ("bench settings no batch sizes", lambda w: BenchSettings(batch_sizes=()), ValueError,
     "batch_sizes=()"),
    ("bench settings inf sparsity", lambda w: BenchSettings(sparsity=float("inf")), ValueError,
     "sparsity=inf"),
    ("evaluate a missing checkpoint", lambda w: evaluate_checkpoint(w("nope"), progress=False),
     CheckpointError, "checkpoint="),
    ("evaluate on device foo", lambda w: evaluate_checkpoint(w.pruned, device="foo",
                                                             progress=False), ValueError,
     "device='foo'"),
    ("evaluate max_eval_samples -5", lambda w: evaluate_checkpoint(
        w.pruned, progress=False, max_eval_samples=-5), ValueError, "max_eval_samples=-5"),
    ("load task data from a missing dir", lambda w: load_task_data("sst2", data_dir=w("nope")),
     FileNotFoundError, "data_dir="),
    ("load an unknown task", lambda w: load_task_data("nope"), ValueError, "task='nope'"),
    ("load an empty checkpoint dir", lambda w: load_checkpoint(w("empty_dir")),
     CheckpointError, "config.json"),
    ("prune from an empty teacher dir", lambda w: prune(TASK, w("empty_dir"), w("api_t"),
                                                        progress=False), ValueError,
     "teacher="),
    ("predict no examples", lambda w: predict(_top(w), []), ValueError, "examples"),
    ("predict batch size 0", lambda w: predict(_top(w), [{"input_ids": [101, 2204, 102]}],
                                               batch_size=0), ValueError, "batch_size=0"),
    ("predict past the position embeddings", lambda w: predict(
        _top(w), [{"input_ids": [101] + [2204] * 300 + [102]}]), ValueError, "position"),
    ("gates for sparsity 1.5", lambda w: set_eval_sparsity(_top(w), torch.tensor([10, 12]), 1.5),
     ValueError, "1.5"),
    ("custom task without files", lambda w: load_task_data("custom"), ValueError,
     "task='custom'"),
    ("run on device foo", lambda w: finetune(TASK, w("api"), device="foo"), ValueError,
     "device='foo'"),
    ("check_device cuda:3", lambda w: check_device("cuda:3"), ValueError, "device='cuda:3'"),
    ("config with inf learning rate", lambda w: TrainConfig(learning_rate=float("inf")),
     ValueError, "learning_rate=inf"),
    ("config with max_seq_length 1", lambda w: TrainConfig(max_seq_length=1), ValueError,
     "max_seq_length=1"),
    ("load a damaged checkpoint", lambda w: load_checkpoint(_damaged(
        w, "api_gates", _write("gates.pt", b"x"))), CheckpointError, "gates.pt"),
    ("load a missing checkpoint", lambda w: load_checkpoint(w("nope"), name="teacher"),
     CheckpointError, "teacher="),
    ("text columns through the API", lambda w: load_task_data(
        "custom", train_file=w("custom_train.csv"), text_columns="a,b,c"), ValueError,
     "text_columns='a,b,c'"),
    ("prune with a shifted custom file", lambda w: prune(
        "custom", w("custom_teacher"), w("api_custom"), build_train_config("custom", None, RUN),
        data={"train_file": w("custom_shifted.csv")}, progress=False), ValueError,
     "custom_shifted.csv"),
]


@pytest.mark.parametrize("case, call, error, needle", API_ERRORS,
                         ids=[c[0] if isinstance(c, tuple) else c.id for c in API_ERRORS])
def test_api_case_ends_in_a_named_error(case, call, error, needle, world):  # noqa: ARG001
    with pytest.raises(error) as raised:
        call(world)
    assert needle.lower() in str(raised.value).lower()


def test_a_pruned_checkpoint_keeps_its_labels_and_gates(world):
    top, _, meta = load_checkpoint(world.pruned)
    assert meta["labels"] == {"problem_type": "classification", "num_labels": 2,
                              "label_names": ["rotten", "fresh"]}
    assert top.config.id2label == {0: "rotten", 1: "fresh"}
    saved = torch.load(os.path.join(world.pruned, "best", "gates.pt"))
    assert all(torch.equal(saved[k], v) for k, v in top.gates.state_dict().items())


# (case, call(world), the correct result)
API_RESULTS = [
    ("check_device cpu", lambda w: check_device("cpu"), "cpu"),
    ("parse_layers with spaces", lambda w: parse_layers(" 2 - 4 ,7"), (2, 3, 4, 7)),
    ("parse_layers of a list", lambda w: parse_layers([3, 1]), (3, 1)),
    ("layers as text through the API", lambda w: PruneConfig(prune_location="5,2-4").
     prune_location, (2, 3, 4, 5)),
    ("numpy integers stored as Python ones", lambda w: json.loads(json.dumps(TrainConfig(
        batch_size=np.int64(4), seed=np.int64(3)).to_dict()))["batch_size"], 4),
    ("bench batch sizes from a list", lambda w: BenchSettings(batch_sizes=[2, 1]).batch_sizes,
     (2, 1)),
    ("max_eval_samples is honoured", lambda w: evaluate_checkpoint(
        w.teacher, progress=False, max_eval_samples=8)["validation"]["num_examples"], 8),
]


@pytest.mark.parametrize("case, call, expected", API_RESULTS, ids=[c[0] for c in API_RESULTS])
def test_api_case_gives_the_correct_result(case, call, expected, world):  # noqa: ARG001
    assert call(world) == expected


def test_an_interrupted_overwrite_says_where_the_old_run_is(world, monkeypatch, capsys, caplog):
    os.makedirs(world("replacing", ".replaced", "best"))
    monkeypatch.setattr(cli, "finetune", _raises(KeyboardInterrupt()))
    code, err = _run_cli(_finetune(world, out="replacing"), capsys, caplog)
    assert code == 130 and ".replaced/" in err and "--resume brings it back" in err, err


def test_sigterm_ends_a_run_as_ctrl_c_does(world, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "toplib", *_finetune(world, "--quiet", out=str(out))]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "history.jsonl").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "toplib finetune: interrupted; rerun with --resume" in err
    assert "Loading weights" not in err  # --quiet silences transformers' progress bars too
