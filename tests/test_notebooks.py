"""The notebooks: committed clean, one parameters cell, and each executes under papermill
with tiny parameters and records sane metrics.

A random-initialised 4-layer BERT (hidden 32) with the offline MiniLM tokenizer stands in
for the model, so every training run takes seconds; one teacher and one ToP run, trained
once per session through ``toplib.train``, serve notebooks 04-07. Kernels run with one
thread: on a shared 2-core machine, two threads per kernel are ~10x slower, not faster.
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import torch

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
TASK = "rotten_tomatoes"
EXPECTED = ["00_quickstart", "01_how_top_works", "02_finetune_teacher", "03_token_pruning", "04_kept_tokens",
            "05_sparsity_vs_accuracy", "06_speedup", "07_explorer", "08_reproduce"]
TINY_LAYERS = 4
# 64 examples in batches of 8: 8 steps an epoch; the gates' learning rate is raised so
# the FLOPs target (0.5) is reached within 4 epochs.
TINY_DATA = dict(max_train_samples=64, max_eval_samples=32, batch_size=8, eval_steps=8, seed=0)
TINY_FINETUNE = dict(finetune_epochs=1)
TINY_PRUNE = dict(epochs=4, warmup_epochs=1, reg_learning_rate=0.5, bin_num=10)
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
              "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}


# ---- static checks: cheap, always run -------------------------------------------------------
def _read(name: str):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def test_the_suite_is_complete():
    assert NOTEBOOKS == EXPECTED


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = _read(name)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{name}: cells {dirty} hold outputs or execution counts; clear them"
    assert "papermill" not in nb.metadata, f"{name}: an executed copy was committed"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_one_parameters_cell_of_flat_primitives_near_the_top(name):
    nb = _read(name)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0] <= 2, f"{name}: the parameters cell is cell {tagged[0]}, not near the top"
    for stmt in ast.parse(nb.cells[tagged[0]].source).body:
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant), \
            f"{name}: parameters must be flat primitives: {ast.unparse(stmt)}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0] is nb.cells[tagged[0]] and "setup_notebook()" in code[1].source, \
        f"{name}: the cell after the parameters must call setup_notebook(), which checks them"


PARAMETERS = 'task = "rte"\nseed = 42\nsparsity = None\nlive = True\nrate = 0.5\n'


@pytest.mark.parametrize("injected, error", [
    ("seeds = 1", "seeds=1 is not one of this notebook's parameters (did you mean 'seed'?)"),
    ("zzz = 1", "zzz=1 is not one .* (task, seed, sparsity, live, rate)"),
    ("seed = 1.5", "seed=1.5 has type float; the notebook's default 42 has type int"),
    ('live = "False"', "live='False' has type str; .* default True has type bool"),
    ("task = 3", "task=3 has type int"), ("rate = True", "rate=True has type bool"),
    ("seed = True", "seed=True has type bool")])
def test_a_misspelled_or_mistyped_parameter_is_refused(injected, error):
    from toplib.viz.notebook import check_injected_parameters
    with pytest.raises(ValueError, match=re.escape(error).replace(re.escape(".*"), ".*")):
        check_injected_parameters(["", PARAMETERS, f"# Parameters\n{injected}\n"])


def test_parameters_of_the_declared_kinds_pass():
    from toplib.viz.notebook import check_injected_parameters
    injected = '# Parameters\ntask = "sst2"\nseed = 1\nsparsity = 0.3\nrate = 1\nlive = None\n'
    check_injected_parameters(["", PARAMETERS, injected])
    check_injected_parameters(["", PARAMETERS, "print(1)"])  # nothing injected: run by hand


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_title_first_and_metrics_last(name):
    nb = _read(name)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("## "), \
        f"{name}: must open with an H2 title"
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "record_metrics(" in last.source, f"{name}: the last cell must record metrics"


# ---- lessons: explanation, formulas, how to read each figure, things to try ---------------
MIN_WORDS = 250
METHOD_NOTEBOOK, METHOD_MIN_WORDS, METHOD_MIN_FORMULAS = "01_how_top_works", 1500, 10
FIGURE_CALL = re.compile(r"\bplot_\w+\(|save_figure\(")
FORMULA = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$", re.S)


def _markdown(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def _words(text: str) -> int:
    """Words of prose: formulas and inline code left out."""
    return len(re.findall(r"[A-Za-z][A-Za-z'-]*", re.sub(r"`[^`]*`", " ", FORMULA.sub(" ", text))))


@pytest.mark.parametrize("name", EXPECTED)
def test_every_notebook_is_a_lesson(name):
    nb = _read(name)
    words = sum(_words(m) for m in _markdown(nb))
    floor = METHOD_MIN_WORDS if name == METHOD_NOTEBOOK else MIN_WORDS
    assert words >= floor, f"{name}: {words} words of explanation, fewer than {floor}"
    opening = nb.cells[0].source.lower()
    assert re.search(r"you('ll| will) learn", opening) and re.search(r"\bmin(ute)?s?\b", opening), \
        f"{name}: the first cell must say what the reader will learn and how many minutes it takes"
    assert _markdown(nb)[-1].lstrip().startswith("### Try this"), \
        f"{name}: must end with a '### Try this' cell of experiments"


@pytest.mark.parametrize("name", EXPECTED)
def test_every_figure_is_followed_by_how_to_read_it_and_an_observation(name):
    cells = _read(name).cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or not FIGURE_CALL.search(cell.source):
            continue
        after = cells[i + 1:i + 3]
        assert len(after) == 2 and after[0].cell_type == "markdown" \
            and after[0].source.lstrip().startswith("**How to read it.**"), \
            f"{name}: the figure of cell {i} needs a '**How to read it.**' cell right after it"
        assert after[1].cell_type == "code" and "print(" in after[1].source, \
            f"{name}: cell {i + 2} must print an observation computed from the figure's data"


def test_the_method_notebook_sets_the_formulas_beside_the_code():
    text = "\n".join(_markdown(_read(METHOD_NOTEBOOK)))
    formulas = FORMULA.findall(text)
    assert len(formulas) >= METHOD_MIN_FORMULAS, f"{len(formulas)} formulas"
    for name in ("hard-concrete", "L0", "bin", "Lagrangian", "LambdaLoss"):
        assert name.lower() in text.lower(), f"the method notebook never names {name!r}"


# The toplib functions the method notebook's plain-torch maths is asserted against, each in an
# ``agrees(step, mine, toplib_value)`` call (``torch.testing.assert_close``); executing the
# notebook (tests/test_method.py) runs the asserts.
METHOD_CHECKED = ("token_importance", "rank_bins", "sample_hard_concrete", "hard_concrete_cdf",
                  "prob_nonzero", "keep_mask", "kept_bins", "layer_macs", "encoder_macs",
                  "expected_sparsity", "lambda_arp2_loss", "rank_distillation_loss")


def _called(node) -> set[str]:
    """Names of the functions called anywhere in ``node``."""
    return {n.func.id if isinstance(n.func, ast.Name) else n.func.attr for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}


def test_the_method_notebook_checks_its_maths_against_toplib():
    code = [c.source for c in _read(METHOD_NOTEBOOK).cells if c.cell_type == "code"]
    helper = next((node for source in code for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.FunctionDef) and node.name == "agrees"), None)
    assert helper is not None, "the method notebook defines no agrees(step, mine, toplib_value)"
    assert "torch.testing.assert_close" in ast.unparse(helper), "agrees() must assert"
    calls = [node for source in code for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "agrees"]
    for call in calls:  # the notebook's side never calls the function it is checked against
        assert not _called(call.args[1]) & set(METHOD_CHECKED), \
            f"{ast.unparse(call)}: compares toplib with itself"
    checked = set().union(*(_called(call.args[2]) for call in calls))
    missing = set(METHOD_CHECKED) - checked
    assert not missing, f"the method notebook never checks its maths against {sorted(missing)}"
    assert any("LagrangianConstraint()" in source for source in code)


def test_no_notebook_writes_to_the_repository_figures_by_default():
    for name in EXPECTED:
        declared = _parameter_names(name)
        cell = next(c for c in _read(name).cells if "parameters" in c.metadata.get("tags", []))
        if "figures_dir" in declared:
            assert re.search(r"^figures_dir = None\b", cell.source, re.M), \
                f"{name}: figures_dir must default to None (beside the run); make figures sets it"


# ---- execution -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kernel_env():
    """Environment the papermill kernels inherit."""
    saved = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A random 4-layer BERT with the offline MiniLM tokenizer, saved as a local model."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from toplib.hf.model import resolve_model_path
    path = tmp_path_factory.mktemp("tiny_model")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(None))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                        num_hidden_layers=TINY_LAYERS, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, tiny_model) -> dict:
    """One tiny teacher and one tiny ToP run (sparsity 0.5), shared by notebooks 04-07."""
    from toplib.train import finetune, prune
    from toplib.train.config import build_train_config
    root = tmp_path_factory.mktemp("runs")
    runs = {"root": str(root), "teacher": str(root / TASK / "teacher"),
            "top": str(root / TASK / "top")}
    config = build_train_config(TASK, "quick", dict(TINY_DATA, **TINY_FINETUNE, **TINY_PRUNE,
                                                    sparsity=0.5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        finetune(TASK, runs["teacher"], model=tiny_model, config=config, progress=False)
        prune(TASK, runs["teacher"], runs["top"], config=config, progress=False)
    finally:
        torch.set_num_threads(threads)
    return runs


def execute(name: str, tmp_path: Path, **parameters) -> dict:
    """Run a notebook with papermill (kernel cwd: notebooks/) and return its metrics."""
    import papermill

    from toplib.viz.notebook import read_metrics
    parameters.setdefault("output_dir", str(tmp_path / "out"))
    if "figures_dir" in _parameter_names(name):
        parameters.setdefault("figures_dir", str(tmp_path / "figures"))
    unknown = set(parameters) - _parameter_names(name)
    assert not unknown, f"{name} has no parameters {unknown}"
    papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                               parameters=parameters, kernel_name="python3", cwd=str(NOTEBOOK_DIR),
                               progress_bar=False)
    _figures_have_alt_text(tmp_path / f"{name}.ipynb")
    return read_metrics(parameters["output_dir"])


def _figures_have_alt_text(executed: Path) -> None:
    """Every picture the executed notebook shows is an ``<img>`` with non-empty alt text
    (``toplib.viz.plots.show_figure``), so nbconvert and JupyterLab have one to give."""
    nb = nbformat.read(executed, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data or "image/svg+xml" in data:
                assert re.search(r'<img [^>]*alt="[^"]+"', data.get("text/html", "")), \
                    f"{executed.stem}: cell {i} shows a figure without alt text"


def _parameter_names(name: str) -> set[str]:
    cell = next(c for c in _read(name).cells if "parameters" in c.metadata.get("tags", []))
    return {t.id for stmt in ast.parse(cell.source).body for t in stmt.targets}


def _figures(tmp_path: Path, *names: str, folder: str = "figures") -> None:
    for name in names:
        for ext in ("png", "svg"):
            path = tmp_path / folder / f"{name}.{ext}"
            assert path.exists() and path.stat().st_size > 1000, f"missing figure {path}"


def _machine(machine: dict) -> None:
    """The CPU, threads and load averages recorded beside a benchmark's latencies."""
    assert machine["cpu_model"] and machine["threads"] >= 1
    for key in ("load_before", "load_after"):
        assert len(machine[key]) == 3 and min(machine[key]) >= 0


def _majority(n: int) -> float:
    """Chance accuracy on the first ``n`` validation labels, computed here independently."""
    from toplib.data import load_task_data
    labels = load_task_data(TASK)["validation"].labels[:n]
    return max(labels.count(c) for c in set(labels)) / len(labels)


def _score(x) -> bool:
    return x is not None and 0.0 <= x <= 1.0


def _sparsity(x) -> bool:
    return x is not None and 0.0 <= x < 1.0


@pytest.mark.notebooks
def test_00_quickstart(kernel_env, tiny_model, tmp_path):
    m = execute("00_quickstart", tmp_path, model=tiny_model, sparsity=0.5, num_sentences=2,
                bench_batch_sizes="1,4", bench_runs=2, bench_warmup=0,
                **TINY_DATA, **TINY_FINETUNE, **TINY_PRUNE)
    assert _score(m["score"]) and _score(m["teacher_score"])
    assert not m["target_missed"] and 0.49 <= m["sparsity_real"] < 1.0
    assert 1.0 <= m["reduction_real"] <= m["reduction_padded"]  # padding only adds dense FLOPs
    assert m["num_layers"] == TINY_LAYERS
    assert m["sparsity_real"] <= m["sparsity_padded"] < 1.0
    # every token after [CLS] of the 2 sentences, counted once by kind, each entering 1..N layers
    from transformers import AutoTokenizer

    from toplib.viz.analysis import validation_texts
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    n = sum(len(tokenizer(t, truncation=True, max_length=64)["input_ids"]) - 1
            for t in validation_texts(TASK, limit=2))
    assert sum(m["tokens_by_kind"].values()) == n and set(m["layers_by_kind"]) == set(m["tokens_by_kind"])
    assert all(1 <= v <= TINY_LAYERS for v in m["layers_by_kind"].values())
    speedups = m["speedup_vs_dynamic"]
    assert set(speedups) == {"1", "4"} and all(v > 0 for v in speedups.values())
    _machine(m["machine"])
    _figures(tmp_path, "00_kept_tokens")


@pytest.mark.notebooks
def test_papermill_refuses_a_misspelled_parameter_before_any_work(kernel_env, tmp_path):
    import papermill
    out = tmp_path / "out"
    with pytest.raises(papermill.PapermillExecutionError, match="did you mean 'max_train_samples'"):
        papermill.execute_notebook(str(NOTEBOOK_DIR / "03_token_pruning.ipynb"),
                                   str(tmp_path / "03.ipynb"), kernel_name="python3",
                                   parameters=dict(max_train_sample=10, output_dir=str(out)),
                                   cwd=str(NOTEBOOK_DIR), progress_bar=False)
    assert not out.exists()


@pytest.mark.notebooks
def test_02_finetune_teacher(kernel_env, tiny_model, tmp_path):
    m = execute("02_finetune_teacher", tmp_path, task=TASK, model=tiny_model,
                **TINY_DATA, **TINY_FINETUNE)
    assert _score(m["score"]) and m["steps"] == 64 // 8
    assert m["splits"]["validation"]["num_examples"] == 32
    assert m["splits"]["validation"]["sparsity_real"] == 0.0  # the teacher is dense
    assert m["metric"] == "accuracy" and m["trained"] and 1 <= m["best_step"] <= m["steps"]
    with open(tmp_path / "out" / "history.jsonl") as f:
        evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
    assert m["evaluations"] == len(evals) and m["final_score"] == evals[-1]["score"]
    assert m["score"] == max(r["score"] for r in evals)  # best/ is the best evaluation
    assert m["drop_after_best"] == pytest.approx(m["score"] - m["final_score"])
    assert m["drop_after_best"] >= 0
    p, n = m["score"], m["splits"]["validation"]["num_examples"]  # accuracy: a binomial proportion
    assert m["standard_error"] == pytest.approx((p * (1 - p) / n) ** 0.5)
    _figures(tmp_path, f"02_finetune_{TASK}")


@pytest.mark.notebooks
def test_03_token_pruning(kernel_env, tiny_runs, tmp_path):
    m = execute("03_token_pruning", tmp_path, task=TASK, teacher_dir=tiny_runs["teacher"],
                sparsity=0.5, live=True, **TINY_DATA, **TINY_PRUNE)
    assert m["target_sparsity"] == 0.5 and not m["target_missed"]
    assert 0.49 <= m["sparsity_real"] < 1.0 and m["sparsity_real"] <= m["sparsity_padded"] < 1.0
    assert _score(m["score"]) and _score(m["teacher_score"])
    assert len(m["keep_ratio"]) == TINY_LAYERS and all(0 <= r <= 1 for r in m["keep_ratio"])
    assert m["train_records"] > 0 and m["trained"]  # the live callback saw the run
    assert m["constraint_met_step"] is not None and m["lambda_2"] > 0  # lambda_2 only grows
    # the rank weight, alpha * max(0.01, 1 - step / warm-up steps), computed independently
    with open(tmp_path / "out" / "history.jsonl") as f:
        train = [r for r in map(json.loads, f) if r["kind"] == "train"]
    alpha, warmup = m["distill_rank_loss_alpha"], TINY_PRUNE["warmup_epochs"] * 64 // 8
    assert alpha > 0 and all(r["rank_weight"] == pytest.approx(  # step: 1-based, after the update
        alpha * max(0.01, 1 - (r["step"] - 1) / warmup)) for r in train)
    assert m["rank_weight_first"] == train[0]["rank_weight"]
    assert m["rank_weight_last"] == pytest.approx(alpha * 0.01)
    after = [r for r in train if r["step"] >= warmup]
    assert m["loss_terms"]["after warm-up"]["weighted_rank"] == pytest.approx(
        sum(r["rank_weight"] * r["rank_loss"] for r in after) / len(after))
    assert 0 <= m["rank_share"] < 1  # the rank term's share of the loss value
    fit = sum(r["distill_loss"] for r in train) / len(train)  # over the whole run
    lag = sum(abs(r["lagrangian_loss"]) for r in train) / len(train)
    weighted = sum(r["rank_weight"] * r["rank_loss"] for r in train) / len(train)
    assert m["rank_share"] == pytest.approx(weighted / (fit + lag + weighted))
    with open(tmp_path / "out" / "results.json") as f:
        epsilon = json.load(f)["config"]["sparsity_epsilon"]
    with open(tmp_path / "out" / "history.jsonl") as f:  # the first evaluation at the target
        evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
    assert m["constraint_met_step"] == next(r["step"] for r in evals if r["sparsity_real"] >= 0.5 - epsilon)
    grads = m["rank_gradient"]  # and of the gradient on the weights, which is what acts
    assert grads["fit"] > 0 and grads["rank"] >= 0 and grads["alpha"] == alpha
    assert grads["rank_weight_first"] == pytest.approx(alpha)
    assert grads["rank_weight_last"] == pytest.approx(alpha * 0.01)
    for when in ("first", "last"):
        assert grads[f"ratio_{when}"] == pytest.approx(
            grads[f"rank_weight_{when}"] * grads["rank"] / grads["fit"])
    keep = m["prune_keep"]
    assert len(keep["layers"]) == len(keep["expected"]) == len(keep["measured"]) > 0
    assert all(0 <= r <= 1 for r in keep["expected"] + keep["measured"])
    assert all(a >= b for a, b in zip(keep["cumulative"], keep["cumulative"][1:]))  # cumulative
    with open(tmp_path / "out" / "history.jsonl") as f:  # measured over the ranked tokens, no [CLS]
        ev = [r for r in map(json.loads, f) if r["kind"] == "eval" and r["step"] == m["best_step"]][-1]
    n = [ratio * ev["mean_length"] for ratio in ev["keep_ratio"]]
    assert keep["measured"] == pytest.approx([(n[loc] - 1) / (n[loc - 1] - 1) if n[loc - 1] > 1 else 0.0
                                              for loc in keep["layers"]])
    _figures(tmp_path, f"03_training_curves_{TASK}")


@pytest.mark.notebooks
def test_04_kept_tokens(kernel_env, tiny_runs, tmp_path):
    import shutil
    import statistics
    task_dir = tmp_path / "runs" / TASK  # a copy: the extra seeds and twins train beside it
    shutil.copytree(tiny_runs["teacher"], task_dir / "teacher")
    shutil.copytree(tiny_runs["top"], task_dir / "top")
    m = execute("04_kept_tokens", tmp_path, task=TASK, teacher_dir=str(task_dir / "teacher"),
                top_dir=str(task_dir / "top"), seeds="0,1", num_sentences=2, max_eval_samples=32,
                min_count=2, top_n=10)
    assert m["num_inputs"] == 32 and m["num_layers"] == TINY_LAYERS and m["cls_always_kept"]
    assert m["seeds"] == [0, 1] and len(m["trained"]) == 3  # top-seed1 and two twins
    for run, seed, alpha in (("top-norank", 0, 0.0), ("top-seed1", 1, None),
                             ("top-seed1-norank", 1, 0.0)):
        with open(task_dir / run / "results.json") as f:
            config = json.load(f)["config"]
        assert config["seed"] == seed and (alpha is None or config["distill_rank_loss_alpha"] == alpha)
    assert m["norank_dir"] == str(task_dir / "top-norank")
    agreement = m["agreement_at_pruning_layers"]
    assert set(agreement) == {"ToP", "ToP without rank distillation"}  # the teacher prunes nothing
    for values in agreement.values():
        assert values["kendall_tau"] is None or -1.0 <= values["kendall_tau"] <= 1.0
        assert values["ndcg"] is None or 0.0 <= values["ndcg"] <= 1.0
    by_seed = m["agreement_by_seed"]
    assert set(by_seed) == set(agreement) and all(set(v) == {"0", "1"} for v in by_seed.values())
    for model, seeds in by_seed.items():  # the recorded mean is the mean over the seeds
        taus = [v["kendall_tau"] for v in seeds.values()]
        if None not in taus:
            assert agreement[model]["kendall_tau"] == pytest.approx(statistics.fmean(taus))
    compared = [row for row in m["pruning_layer_gap"] if row["n"] == 2]  # tau defined in both seeds
    assert compared, m["pruning_layer_gap"]
    for row in compared:  # spread: sd over the two seeds, per model, summed
        top, norank = row["top_seeds"], row["norank_seeds"]
        assert len(top) == len(norank) == 2
        assert row["spread"] == pytest.approx(statistics.stdev(top) + statistics.stdev(norank))
        assert row["diff"] == pytest.approx(statistics.fmean(top) - statistics.fmean(norank))
        assert row["exceeds"] == (abs(row["diff"]) > row["spread"])
        assert row["ahead"] == sum(a > b for a, b in zip(top, norank))
        assert row["behind"] == sum(a < b for a, b in zip(top, norank))
        assert row["ahead"] + row["behind"] + row["ties"] == row["n"]
    closed = m["closed_bins"]  # the checkpoint's evaluation gates, read here independently
    from toplib.hf.model import load_checkpoint
    top, _, _ = load_checkpoint(str(task_dir / "top"))
    z_bins, z_pruner = top.gates(training=False)
    assert closed == {str(loc): (z_bins[i] == 0).nonzero().flatten().tolist()
                      for i, loc in enumerate(top.prune.prune_location)}
    pruning = [i for i, on in enumerate(z_pruner.tolist()) if on]
    assert len(m["most_closed_third"]) == len(pruning)
    assert m["last_bin_open_layers"] == sum(bool(z_bins[i, -1]) for i in pruning)
    rates = [r["prune_rate"] for r in m["most_pruned"]]
    assert rates and all(0 <= r <= 1 for r in rates) and rates == sorted(rates, reverse=True)
    assert all(r["count"] >= 2 and r["token"] != "[CLS]" for r in m["most_pruned"])
    _figures(tmp_path, "04_kept_tokens", "04_ranking_agreement", "04_prune_rates")


@pytest.mark.notebooks
def test_05_sparsity_vs_accuracy(kernel_env, tiny_runs, tmp_path):
    m = execute("05_sparsity_vs_accuracy", tmp_path, task=TASK, teacher_dir=tiny_runs["teacher"],
                targets="0.5", **TINY_DATA, **TINY_PRUNE)
    points = m["points"]
    assert sorted(p["method"] for p in points) == ["ToP", "attention", "random", "teacher"]
    for p in points:
        assert _score(p["score"])
        assert _sparsity(p["sparsity_real"]) and _sparsity(p["sparsity_padded"])
        assert 1.0 <= p["reduction_real"] <= p["reduction_padded"]
    top = next(p for p in points if p["method"] == "ToP")
    for p in points:
        if p["method"] in ("attention", "random"):
            assert p["requested"] == pytest.approx(top["sparsity_real"])
    assert m["max_baseline_flops_gap"] < 0.1  # matched FLOPs, up to the bins' granularity
    assert _score(m["teacher_score"])
    assert m["chance_score"] == pytest.approx(_majority(TINY_DATA["max_eval_samples"]))
    _figures(tmp_path, "05_sparsity_vs_accuracy")


@pytest.mark.notebooks
def test_06_speedup(kernel_env, tiny_runs, tmp_path):
    m = execute("06_speedup", tmp_path, task=TASK, checkpoint=tiny_runs["top"], lengths="8,16",
                sparsities="0.3,0.6", batch_sizes="1,4", runs=2, warmup=0, threads=1,
                dtype="bfloat16")  # the bf16 path end to end
    points = m["points"]
    assert len(points) == (2 + 2) * 2  # (lengths + sparsities) x batch sizes
    for p in points:
        assert _sparsity(p["sparsity"]) and p["speedup_vs_dynamic"] > 0 and p["reduction_real"] >= 1
        assert all(v > 0 for v in p["latency_ms"].values())
        assert len(p["load_1min"]) == 2 and p["ratio_real"] > 0  # the load beside each latency
    _machine(m["machine"])
    assert m["machine"]["threads"] == m["threads"] == 1
    assert sorted({p["length"] for p in points[:4]}) == [8.0, 16.0]
    _figures(tmp_path, "06_latency_vs_length", "06_latency_vs_sparsity", "06_flops_vs_latency")


@pytest.mark.notebooks
def test_07_explorer(kernel_env, tiny_runs, tmp_path):
    m = execute("07_explorer", tmp_path, checkpoints_dir=tiny_runs["root"], sparsity=0.5)
    assert m["num_checkpoints"] >= 2 and m["checkpoint"].startswith(tiny_runs["top"])  # ToP first
    assert len(m["top"]) == len(m["baseline"]) == TINY_LAYERS
    assert m["top"][0] == m["baseline"][0] == m["tokens"] > 1  # layer 0 sees every token
    for kept in (m["top"], m["baseline"]):
        assert all(a >= b >= 1 for a, b in zip(kept, kept[1:]))  # pruned tokens stay pruned


@pytest.mark.notebooks
def test_08_reproduce(kernel_env, tiny_model, tmp_path):
    data = {k: v for k, v in TINY_DATA.items() if k != "seed"}
    m = execute("08_reproduce", tmp_path, tasks=TASK, model=tiny_model, sparsity=0.5, seeds="0,1",
                figures_dir=None, **data, **TINY_FINETUNE, **TINY_PRUNE)
    (row,) = m["rows"]
    assert row["task"] == TASK and row["metric"] == "accuracy" and row["target_sparsity"] == 0.5
    assert row["seeds"] == [0, 1] and len(row["scores"]) == 2 and row["score_std"] is not None
    assert all(_score(s) for s in row["scores"]) and _score(row["teacher_score"])
    assert row["score"] == pytest.approx(sum(row["scores"]) / 2) and _sparsity(row["sparsity_real"])
    assert 1.0 <= row["reduction_real"] <= row["reduction_padded"]
    assert row["chance_score"] == m["chance"][TASK] == pytest.approx(_majority(data["max_eval_samples"]))
    header, _, line = m["table"].splitlines()
    assert "ToP, mean ± sd (seeds)" in header and "Paper (bert-base-uncased)" in header
    assert line.startswith(f"| {TASK} | accuracy | ")
    for step in ("02_finetune_teacher", "03_token_pruning"):
        assert (tmp_path / "out" / TASK / f"{step}.ipynb").exists()
    for run in ("teacher", "top", "top-seed1"):
        assert (tmp_path / "out" / TASK / run / "results.json").exists()
        assert (tmp_path / "out" / TASK / run / "retargeted.json").exists()  # its curve
    assert len(row["curve"]["seeds"]) == len(row["curve"]["teacher"]) == 9
    assert (tmp_path / "out" / "results.md").read_text().strip() == m["table"]
    # figures_dir None: this notebook's figures and those of the 02/03 runs it drives, beside the runs
    assert m["figures"] == str(tmp_path / "out" / "figures")
    _figures(tmp_path, "08_reproduction", "08_score_vs_sparsity", f"02_finetune_{TASK}",
             f"03_training_curves_{TASK}", "08_study_budget", "08_study_baselines",
             "08_study_prune_layer", folder="out/figures")
    from toplib.viz.study import budget_frame, load_study  # the committed study's records
    committed = budget_frame(load_study())
    assert len(m["study"]) == committed.groupby(["task", "budget"]).ngroups > 0
    assert sum(r["seeds"] for r in m["study"]) == len(committed)
