"""Checkpoints describe their label space and are checked file by file; model arguments,
sequence lengths and custom files are checked before anything large loads. Every error
names the parameter or the file."""
import json
import logging
import os
import shutil

import pytest
import torch
from conftest import RUN, tiny_classifier
from transformers import AutoConfig, AutoTokenizer, BertConfig, RobertaConfig

from toplib.data import (
    DataFiles,
    check_label_space,
    get_task,
    load_task_data,
    prepare_data,
    resolve_task,
)
from toplib.hf import CheckpointError, ToPModel, label_space, load_checkpoint
from toplib.hf.model import (
    GATES_FILE,
    META_FILE,
    check_model_type,
    check_sequence_length,
    load_classifier,
    load_tokenizer,
    resolve_model_path,
    verify_checkpoint,
)
from toplib.train.config import build_train_config
from toplib.train.evaluate import evaluate_checkpoint

RT_LABELS = {"problem_type": "classification", "num_labels": 2,
             "label_names": ["rotten", "fresh"]}


@pytest.fixture
def ckpt(teacher_dir, tmp_path):
    """A copy of the teacher's best/ checkpoint, free to damage."""
    path = tmp_path / "ckpt"
    shutil.copytree(os.path.join(teacher_dir, "best"), path)
    return path


def _csv(path, rows: list[dict]) -> str:
    lines = [",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _edit_meta(path, **changes):
    meta = json.loads((path / META_FILE).read_text())
    (path / META_FILE).write_text(json.dumps({**meta, **changes}))


# ---------------------------------------------------------------- label spaces
def test_a_finetuned_checkpoint_records_its_label_names(teacher_dir):
    best = os.path.join(teacher_dir, "best")
    meta = json.loads(open(os.path.join(best, META_FILE)).read())
    assert meta["labels"] == RT_LABELS
    assert AutoConfig.from_pretrained(best).label2id == {"rotten": 0, "fresh": 1}
    assert verify_checkpoint(best)["labels"] == RT_LABELS


@pytest.mark.parametrize("config, expected", [
    (BertConfig(), {"problem_type": "classification", "num_labels": 2, "label_names": None}),
    (BertConfig(num_labels=1), {"problem_type": "regression", "num_labels": 1,
                                "label_names": None}),
    (BertConfig(id2label={0: "neg", 1: "neu", 2: "pos"}),
     {"problem_type": "classification", "num_labels": 3, "label_names": ["neg", "neu", "pos"]}),
], ids=["HF placeholders", "regression", "named"])
def test_label_space_of_a_plain_config(config, expected):
    assert label_space(config) == expected


def test_a_task_without_names_drops_the_previous_tasks_names(teacher_dir):
    model = load_classifier(os.path.join(teacher_dir, "best"), get_task("sst2"))
    assert label_space(model.config)["label_names"] is None
    assert label_space(load_classifier(os.path.join(teacher_dir, "best"), get_task("rte"))
                       .config)["label_names"] == ["entailment", "not_entailment"]


LABEL_CASES = [  # (checkpoint's label space, task, pattern of the error or None)
    (RT_LABELS, "rotten_tomatoes", None),
    (dict(RT_LABELS, label_names=None), "rotten_tomatoes", None),  # names on one side only
    (RT_LABELS, "sst2", None),  # counts agree, sst2 has no names
    (RT_LABELS, "20news", r"c='x' was trained on 2 labels \['rotten', 'fresh'\] but task "
                          r"'20news' has 20 labels \['alt.atheism', .*'talk.religion.misc'\]"),
    (RT_LABELS, "stsb", r"2 labels \['rotten', 'fresh'\] but task 'stsb' has a regression"),
    (dict(RT_LABELS, label_names=["fresh", "rotten"]), "rotten_tomatoes",
     r"another order"),
    ({"problem_type": "classification", "num_labels": 3, "label_names": None}, "cola",
     r"3 labels but task 'cola' has 2 labels"),
    ({}, "cola", None),  # nothing recorded: nothing to compare
]


@pytest.mark.parametrize("labels, task, match", LABEL_CASES)
def test_check_label_space(labels, task, match):
    if match is None:
        check_label_space(labels, get_task(task), "c='x'")
    else:
        with pytest.raises(ValueError, match=match):
            check_label_space(labels, get_task(task), "c='x'")


def test_evaluating_on_another_tasks_labels_fails_before_any_data(teacher_dir):
    with pytest.raises(ValueError, match=r"checkpoint='.*teacher' was trained on 2 labels "
                                         r"\['rotten', 'fresh'\] but task '20news' has 20"):
        evaluate_checkpoint(teacher_dir, task="20news")  # no 20news data: checked first


def test_a_custom_task_reads_its_labels_by_the_checkpoints_names(teacher_dir, tmp_path):
    rows = [{"text": f"review number {i}", "label": ("fresh", "rotten")[i % 2]} for i in range(8)]
    path = _csv(tmp_path / "v.csv", rows)
    splits = load_task_data("custom", validation_file=path, label_names=["rotten", "fresh"])
    assert splits["validation"].labels == [1, 0] * 4  # by name, not sorted: fresh = 1
    results = evaluate_checkpoint(teacher_dir, task="custom", data=DataFiles(validation_file=path))
    assert results["validation"]["num_examples"] == 8


def test_a_custom_label_the_checkpoint_lacks_is_an_error(teacher_dir, tmp_path):
    path = _csv(tmp_path / "v.csv", [{"text": "a b", "label": "fresh"},
                                     {"text": "c d", "label": "meh"}])
    with pytest.raises(ValueError, match=r"validation_file='.*v.csv' has label\(s\) \['meh'\] "
                                         r"that the checkpoint does not have: labels of the "
                                         r"checkpoint: \['rotten', 'fresh'\], of this file: "
                                         r"\['fresh', 'meh'\]"):
        evaluate_checkpoint(teacher_dir, task="custom", data=DataFiles(validation_file=path))


def test_numbers_map_to_checkpoint_names_without_rounding(tmp_path):
    path = _csv(tmp_path / "n.csv", [{"text": "a", "label": 1.0}, {"text": "b", "label": 0}])
    assert load_task_data("custom", validation_file=path,
                          label_names=["0", "1"])["validation"].labels == [1, 0]
    path = _csv(tmp_path / "f.csv", [{"text": "a", "label": 0.5}, {"text": "b", "label": 0}])
    with pytest.raises(ValueError, match=r"f.csv' has label\(s\) \['0.5'\]"):
        load_task_data("custom", validation_file=path, label_names=["0", "1"])


def test_custom_classes_come_from_the_training_file(tmp_path):
    train = _csv(tmp_path / "t.csv", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    val = _csv(tmp_path / "v.csv", [{"text": "c", "label": "pos"}, {"text": "d", "label": "pos"}])
    splits = load_task_data("custom", train_file=train, validation_file=val)
    assert splits["validation"].labels == [1, 1] and resolve_task("custom", splits).num_labels == 2
    extra = _csv(tmp_path / "x.csv", [{"text": "c", "label": "neu"}, {"text": "d", "label": "pos"}])
    with pytest.raises(ValueError, match=r"validation_file='.*x.csv' has label\(s\) \['neu'\] "
                                         r"that train_file='.*t.csv' does not have"):
        load_task_data("custom", train_file=train, validation_file=extra)


@pytest.mark.parametrize("label", [1, "pos"])
def test_a_single_class_is_an_error_not_a_regression(tmp_path, label):
    path = _csv(tmp_path / "one.csv", [{"text": t, "label": label} for t in "abc"])
    with pytest.raises(ValueError, match=r"train_file='.*one.csv' has a single class .*needs "
                                         r"at least 2 classes; for regression give float"):
        load_task_data("custom", train_file=path)


def test_float_labels_still_make_a_regression(tmp_path):
    path = _csv(tmp_path / "s.csv", [{"text": t, "label": v} for t, v in zip("abc", (0.5, 1, 2))])
    splits = load_task_data("custom", train_file=path, validation_file=path)
    assert resolve_task("custom", splits).is_regression
    assert splits["validation"].labels == [0.5, 1.0, 2.0]


# ---------------------------------------------------------------- damaged checkpoints
def _truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[:len(data) // 2])


def _damage(path, case):
    if case == "empty directory":
        shutil.rmtree(path), path.mkdir()
    elif case == "config.json unparseable":
        (path / "config.json").write_text("{not json")
    elif case == "no weights":
        (path / "model.safetensors").unlink()
    elif case == "truncated weights":
        _truncate(path / "model.safetensors")
    elif case == "random-bytes weights":
        (path / "model.safetensors").write_bytes(os.urandom(4096))
    elif case == "toplib.json malformed":
        (path / META_FILE).write_text('{"prune": ')
    elif case == "bad pruning structure":
        _edit_meta(path, prune={"bin_num": -1})
    elif case == "pruned without gates":
        _edit_meta(path, stage="prune")
        (path / GATES_FILE).unlink()
    elif case == "garbage gates":
        (path / GATES_FILE).write_bytes(b"\x00garbage" * 10)
    elif case == "truncated gates":
        _truncate(path / GATES_FILE)
    elif case == "gates of another shape":
        torch.save({"bin_log_alpha": torch.zeros(1, 3), "pruner_log_alpha": torch.zeros(1)},
                   path / GATES_FILE)
    elif case == "no tokenizer":
        for name in ("tokenizer.json", "vocab.txt"):
            (path / name).unlink(missing_ok=True)
    elif case == "truncated tokenizer":
        _truncate(path / "tokenizer.json")


DAMAGE_CASES = [  # (damage, pattern of the error)
    ("empty directory", r"checkpoint='.*ckpt' is not a checkpoint: it holds no config.json.*"
                        r"pass the output_dir of `toplib finetune`/`prune`"),
    ("config.json unparseable", r"'.*ckpt/config.json' is corrupt \(not JSON"),
    ("no weights", r"checkpoint='.*ckpt' holds no weights file \(model.safetensors"),
    ("truncated weights", r"'.*ckpt/model.safetensors' could not be loaded"),
    ("random-bytes weights", r"'.*ckpt/model.safetensors' could not be loaded"),
    ("toplib.json malformed", r"'.*ckpt/toplib.json' is corrupt \(not JSON"),
    ("bad pruning structure", r"'.*ckpt/toplib.json' could not be loaded.*bin_num=-1"),
    ("pruned without gates", r"checkpoint='.*ckpt' is a pruned checkpoint .*without its gates.pt"),
    ("garbage gates", r"'.*ckpt/gates.pt' could not be loaded"),
    ("truncated gates", r"'.*ckpt/gates.pt' could not be loaded"),
    ("gates of another shape", r"'.*ckpt/gates.pt' does not fit the pruning structure"),
    ("no tokenizer", r"checkpoint='.*ckpt' holds no tokenizer \(tokenizer.json or vocab.txt"),
    ("truncated tokenizer", r"checkpoint: '.*ckpt' could not be loaded"),
]


@pytest.mark.parametrize("case, match", DAMAGE_CASES, ids=[c for c, _ in DAMAGE_CASES])
def test_a_damaged_checkpoint_names_the_file(ckpt, case, match):
    _damage(ckpt, case)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(str(ckpt))


@pytest.mark.parametrize("case", ["truncated weights", "pruned without gates", "garbage gates",
                                  "gates of another shape"])
def test_from_pretrained_checks_the_same_files(ckpt, case):
    _damage(ckpt, case)
    with pytest.raises(CheckpointError, match=r"teacher"):
        ToPModel.from_pretrained(str(ckpt), name="teacher")


def test_a_missing_checkpoint_and_a_run_without_best(tmp_path, ckpt):
    with pytest.raises(CheckpointError, match=r"checkpoint='.*nowhere' does not exist"):
        load_checkpoint(str(tmp_path / "nowhere"))
    run = tmp_path / "run"
    run.mkdir()
    shutil.move(str(ckpt), str(run / "last"))
    with pytest.raises(CheckpointError, match=r"holds no config.json.*pass its last/"):
        load_checkpoint(str(run))
    assert isinstance(CheckpointError("x"), ValueError)  # callers catching ValueError see it


def test_a_pruned_checkpoint_loads_its_gates(ckpt):
    top = ToPModel.from_pretrained(str(ckpt))
    with torch.no_grad():
        top.gates.bin_log_alpha.uniform_(-3, 3)
    top.save_pretrained(str(ckpt), AutoTokenizer.from_pretrained(str(ckpt)), {"stage": "prune"})
    loaded, _, meta = load_checkpoint(str(ckpt))
    assert meta["stage"] == "prune" and meta["labels"] == RT_LABELS
    torch.testing.assert_close(loaded.gates.bin_log_alpha, top.gates.bin_log_alpha)


# ---------------------------------------------------------------- model arguments
@pytest.mark.parametrize("model, match", [
    ("./no/such/model", r"model='./no/such/model': '.*no/such/model' does not exist"),
    ("~/no-such-model-dir", r"model='~/no-such-model-dir': .* does not exist"),
    ("runs/no/such/best", r"model='runs/no/such/best': .* does not exist"),
])
def test_a_missing_path_is_named(model, match):
    with pytest.raises(ValueError, match=match):
        resolve_model_path(model)


def test_an_unreachable_hub_name_is_named():
    with pytest.raises(ValueError, match=r"model='nobody/no-such-model' is neither a local "
                                         r"directory nor reachable on the Hugging Face hub"):
        check_model_type("nobody/no-such-model")


def test_model_folders_are_checked_before_loading(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"model='.*empty' is not a checkpoint: it holds no "
                                         r"config.json"):
        check_model_type(str(tmp_path / "empty"))
    tiny_classifier(num_layers=1).save_pretrained(tmp_path / "one")
    with pytest.raises(ValueError, match=r"model='.*one' is invalid: it has 1 encoder layer"):
        check_model_type(str(tmp_path / "one"))
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match=r"model type 'gpt2'; supported: bert, roberta"):
        check_model_type(str(tmp_path / "gpt"))


def test_a_one_layer_model_cannot_be_wrapped_for_pruning():
    with pytest.raises(ValueError, match=r"num_hidden_layers=1 .*at least 2 layers"):
        ToPModel(tiny_classifier(num_layers=1))


def test_a_tokenizer_larger_than_the_models_vocabulary(tmp_path, tiny_model_dir):
    tiny_classifier().save_pretrained(tmp_path / "m")  # vocab_size 100
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"its tokenizer has 30522 tokens but the model embeds "
                                         r"100"):
        load_tokenizer(str(tmp_path / "m"))


@pytest.mark.parametrize("config, length, match", [
    (BertConfig(), 512, None),
    (BertConfig(), 513, r"max_seq_length=513 is invalid: allowed 2..512 \(the bert model "
                        r"embeds 512 positions"),
    (BertConfig(), 1, r"max_seq_length=1 is invalid: allowed 2..512"),
    (RobertaConfig(max_position_embeddings=514), 512, None),
    (RobertaConfig(max_position_embeddings=514), 513, r"allowed 2..512 \(the roberta model "
                                                      r"embeds 514 positions.*padding offset"),
])
def test_check_sequence_length(config, length, match):
    if match is None:
        check_sequence_length(length, config)
    else:
        with pytest.raises(ValueError, match=match):
            check_sequence_length(length, config)


def test_evaluate_checks_the_sequence_length_first(ckpt):
    meta = json.loads((ckpt / META_FILE).read_text())
    _edit_meta(ckpt, config=dict(meta["config"], max_seq_length=200))
    with pytest.raises(ValueError, match=r"max_seq_length=200 is invalid: allowed 2..128"):
        evaluate_checkpoint(str(ckpt))


# ---------------------------------------------------------------- custom files
def test_text_columns_choose_the_text(tmp_path):
    path = _csv(tmp_path / "q.csv", [{"q": "why so", "a": "because", "note": "x", "label": 1},
                                     {"q": "how so", "a": "thus", "note": "y", "label": 0}])
    splits = load_task_data("custom", validation_file=path, text_columns="q, a")
    assert splits["validation"].texts == [("why so", "because"), ("how so", "thus")]
    with pytest.raises(ValueError, match=r"text_columns='q,b': validation_file='.*q.csv' lacks "
                                         r"column\(s\) \['b'\]; its columns: \['q', 'a', 'note', "
                                         r"'label'\]"):
        load_task_data("custom", validation_file=path, text_columns="q,b")


@pytest.mark.parametrize("value", ["a,b,c", "", "label", "a,a"])
def test_bad_text_columns_fail_when_the_files_are_named(value):
    with pytest.raises(ValueError, match=rf"text_columns={value!r} is invalid: give 1 or 2"):
        DataFiles(validation_file="v.csv", text_columns=value)


def test_text_columns_without_files_is_an_error():
    with pytest.raises(ValueError, match=r"text_columns='review' names columns of train_file"):
        load_task_data("rotten_tomatoes", text_columns="review")


def test_an_id_column_is_never_taken_for_text(tmp_path, caplog):
    rows = [{"uid": f"r{i:03d}", "review": f"a fine film {i}", "label": i % 2} for i in range(6)]
    path = _csv(tmp_path / "ids.csv", rows)
    with caplog.at_level(logging.INFO, logger="toplib.data"):
        splits = load_task_data("custom", validation_file=path)
    assert splits["validation"].texts[0] == ("a fine film 0",)  # not the pair (uid, review)
    assert "validation_file=" in caplog.text and "ids.csv" in caplog.text
    assert "['review']" in caplog.text
    only = _csv(tmp_path / "only.csv", [{"uid": r["uid"], "label": r["label"]} for r in rows])
    with pytest.raises(ValueError, match=r"only.csv' has no text column.*\['uid'\] look like ids"):
        load_task_data("custom", validation_file=only)


def test_one_word_texts_are_not_ids(tmp_path):
    path = _csv(tmp_path / "w.csv", [{"word": "good", "label": 1}, {"word": "bad", "label": 0}])
    assert load_task_data("custom", validation_file=path)["validation"].texts == [("good",),
                                                                                 ("bad",)]


def test_files_with_different_text_columns_are_refused(tmp_path):
    one = _csv(tmp_path / "one.csv", [{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    two = _csv(tmp_path / "two.csv", [{"sentence1": "a", "sentence2": "b", "label": 1},
                                      {"sentence1": "c", "sentence2": "d", "label": 0}])
    with pytest.raises(ValueError, match=r"text columns differ in number"):
        load_task_data("custom", train_file=one, validation_file=two)


def test_prepare_data_passes_label_names_and_text_columns(tmp_path, tiny_model_dir):
    path = _csv(tmp_path / "p.csv", [{"body": "so good", "label": "fresh"},
                                     {"body": "so bad", "label": "rotten"}])
    config = build_train_config("custom", None, RUN)
    data = prepare_data("custom", AutoTokenizer.from_pretrained(tiny_model_dir), config,
                        DataFiles(validation_file=path, text_columns="body"), need_train=False,
                        label_names=["rotten", "fresh"])
    assert data.spec.label_names == ("rotten", "fresh")
    assert [e["label"] for e in data.validation["validation"]] == [1, 0]


@pytest.mark.parametrize("field, value", [("intermediate_size", 48), ("hidden_size", 48)])
def test_a_config_that_does_not_fit_the_weights_says_which_tensors(tmp_path, field, value):
    path = tmp_path / "ckpt"
    tiny_classifier("bert").save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(dict(config, **{field: value})))
    with pytest.raises(CheckpointError, match=r"does not describe its weights: .* in the "
                                              r"weights, .* by config.json"):
        ToPModel.from_pretrained(str(path))
