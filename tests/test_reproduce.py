"""The reproduction table: ToP over seeds from one teacher, its row, table and figure."""
import json
import os
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import RUN

from toplib.train.config import build_train_config, preset_values
from toplib.train.dev_records import (
    CURVE_FILE,
    DEV_FILE,
    RECORD_FILES,
    dev_error,
    export_records,
    record_dev_predictions,
    seed_curve,
    within_point,
)
from toplib.train.reproduce import (
    PAPER_RESULTS,
    check_seeds,
    format_seed_table,
    seed_dir,
    seed_row,
    train_seeds,
    write_seed_table,
)
from toplib.viz.plots import plot_seed_results

SEEDS = [3, 7]


@pytest.fixture(scope="module")
def task_dir(teacher_dir, tmp_path_factory):
    """A task folder holding the shared tiny teacher and two seeds' pruning runs."""
    path = tmp_path_factory.mktemp("task")
    shutil.copytree(teacher_dir, path / "teacher")  # its dev predictions are written here
    train_seeds("rotten_tomatoes", str(path), SEEDS, preset=None, overrides=RUN, progress=False)
    return str(path)


def _best_score(run_dir):
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f)["best"]["score"]


def test_each_seed_has_its_own_run_and_the_row_averages_them(task_dir):
    assert os.path.isdir(os.path.join(task_dir, "top"))
    assert os.path.isdir(os.path.join(task_dir, "top-seed7"))
    scores = [_best_score(seed_dir(task_dir, s, SEEDS)) for s in SEEDS]
    row = seed_row(task_dir, SEEDS)
    assert row["n_seeds"] == 2 and row["seeds"] == SEEDS
    assert row["score"] == pytest.approx(np.mean(scores))
    assert row["score_std"] == pytest.approx(np.std(scores, ddof=1))
    assert row["drop"] == pytest.approx(row["teacher_score"] - np.mean(scores))
    assert row["model"] == "tiny-bert0"  # the tiny teacher's folder name (tmp_path_factory)
    assert row["paper_score"] is None  # no paper figure for the offline default task
    # chance: the majority class's share of the validation labels the runs were scored on
    from toplib.data.batching import validation_labels
    _, labels = validation_labels("rotten_tomatoes", None, RUN["max_eval_samples"])
    assert len(labels) == RUN["max_eval_samples"]
    assert row["chance_score"] == pytest.approx(max(np.mean(labels), 1 - np.mean(labels)))


def test_describe_row_tells_chance_from_learning():
    from toplib.train.reproduce import describe_row
    row = dict(task="rte", metric="accuracy", score=0.545, score_std=0.02, n_seeds=3,
               teacher_score=0.574, chance_score=0.527, paper_score=None)
    assert "not distinguishable" in describe_row(row)  # 1.8 points, within 2 sd (4 points)
    assert "more than 2 sd" in describe_row(dict(row, score=0.60))
    assert "chance" not in describe_row(dict(row, chance_score=None))


def test_rerun_reuses_finished_seeds(task_dir):
    results = os.path.join(task_dir, "top-seed7", "results.json")
    before = os.stat(results).st_mtime_ns
    runs = train_seeds("rotten_tomatoes", task_dir, SEEDS, preset=None, overrides=RUN,
                       progress=False)
    assert os.stat(results).st_mtime_ns == before
    assert runs == {s: seed_dir(task_dir, s, SEEDS) for s in SEEDS}


def test_a_finished_seed_of_other_knobs_is_refused_not_reused(task_dir, tmp_path):
    """After a preset change (e.g. a longer schedule), rerunning the seeds refuses the old
    finished runs, before training any seed, instead of reporting them as the new ones."""
    changed = tmp_path / "task"
    shutil.copytree(task_dir, changed)
    epochs = json.loads((changed / "top" / "results.json").read_text())["config"]["epochs"]
    with pytest.raises(ValueError, match=rf"other settings \(epochs: {epochs!r} -> "):
        train_seeds("rotten_tomatoes", str(changed), [*SEEDS, 11], preset=None,
                    overrides=dict(RUN, epochs=3 * epochs), progress=False)
    assert not (changed / "top-seed11").exists()  # the new seed was not started either


def test_one_seed_has_no_spread(task_dir):
    row = seed_row(task_dir, [3])
    assert row["n_seeds"] == 1 and row["score_std"] is None and row["drop_std"] is None
    assert "±" not in format_seed_table([row]).splitlines()[2].split("|")[5]


@pytest.mark.parametrize("seeds", [[], [1, 1], [-1], ["a"], [1.5]])
def test_bad_seeds_are_refused(seeds):
    with pytest.raises(ValueError, match="seeds="):
        check_seeds(seeds)


def test_missing_teacher_and_bad_knobs_fail_before_training(tmp_path, teacher_dir):
    with pytest.raises(FileNotFoundError, match="no finished teacher"):
        train_seeds("rotten_tomatoes", str(tmp_path), [1], preset=None, overrides=RUN)
    os.symlink(teacher_dir, tmp_path / "teacher")
    with pytest.raises(ValueError, match="sparsity"):
        train_seeds("rotten_tomatoes", str(tmp_path), [1, 2], preset=None,
                    overrides=dict(RUN, sparsity=1.5))
    assert sorted(os.listdir(tmp_path)) == ["teacher"]  # no run folder was started
    with pytest.raises(FileNotFoundError, match="no finished pruning run"):
        seed_row(str(tmp_path), [1])


def test_table_has_the_paper_beside_it_and_is_written(tmp_path):
    row = dict(task="cola", metric="matthews", model="m", teacher_score=0.4, score=0.35,
               score_std=0.02, n_seeds=3, targets_missed=1, drop=0.05, drop_std=0.02,
               target_sparsity=0.43, epochs=6.0, sparsity_real=0.44, sparsity_padded=0.9,
               sparsity_release_real=0.45, sparsity_release_padded=0.91, reduction_real=1.79,
               reduction_padded=10.0, paper_score=PAPER_RESULTS["cola"][0] / 100,
               paper_reduction=PAPER_RESULTS["cola"][1])
    table = write_seed_table([row, dict(row, drop_se=0.0125, drop_se_seeds=0.0115,
                                        drop_se_dev=0.005)], str(tmp_path))
    cells = [c.strip() for c in table.splitlines()[2].split("|")[1:-1]]
    assert cells[3:7] == ["40.00", "35.00 ± 2.00 (3, 1 missed target)", "5.00 ± 2.00",
                          "n/a (n/a / n/a)"]  # no dev predictions recorded
    assert table.splitlines()[3].split("|")[7].strip() == "1.25 (1.15 / 0.50)"
    assert cells[7:9] == ["0.43", "6"]  # the target and the ToP schedule that met it
    assert cells[-1] == "60.3 at 10.39x (0.904)"
    assert json.load(open(tmp_path / "results.json"))[0]["task"] == "cola"
    assert open(tmp_path / "results.md").read().strip() == table


def test_seeds_of_different_schedules_are_not_averaged(task_dir, tmp_path):
    """A folder whose seeds were trained for different ToP epochs (one rerun at a longer
    schedule, the other not yet) is refused, not averaged into one row."""
    mixed = tmp_path / "task"
    shutil.copytree(task_dir, mixed)
    results = mixed / "top-seed7" / "results.json"
    record = json.loads(results.read_text())
    assert seed_row(str(mixed), SEEDS)["epochs"] == record["config"]["epochs"]
    record["config"]["epochs"] *= 3
    results.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different ToP epochs"):
        seed_row(str(mixed), SEEDS)


def test_seed_figure_has_a_panel_per_task(task_dir):
    row = seed_row(task_dir, SEEDS)
    fig = plot_seed_results([row, dict(row, task="cola", metric="matthews", paper_score=0.6,
                                       paper_model="bert-base-uncased",
                                       paper_reduction=10.39)])
    assert len(fig.axes) == 2
    assert f"{row['epochs']:g} ToP epochs" in fig.axes[0].get_title()
    assert "accuracy" in fig.axes[0].get_ylabel() and "Matthews" in fig.axes[1].get_ylabel()
    assert any("bert-base-uncased" in line.get_label() for line in fig.axes[1].get_lines())
    plt.close(fig)


@pytest.mark.parametrize("task", sorted(PAPER_RESULTS))
def test_standard_preset_scales_the_release_schedule(task):
    paper, standard = preset_values("paper", task), preset_values("standard", task)
    assert standard["warmup_epochs"] / standard["epochs"] == pytest.approx(
        paper["warmup_epochs"] / paper["epochs"])  # the warm-up keeps its share
    assert standard["epochs"] == 3 * max(paper["epochs"] / 100, 2.0)  # the study's 3x
    for knob in ("bin_num", "topk", "sparsity"):
        assert standard[knob] == paper[knob]


def test_standard_preset_evaluates_20news_once_an_epoch():
    news, sst2 = preset_values("standard", "20news"), preset_values("standard", "sst2")
    assert (news["evals_per_epoch"], sst2["evals_per_epoch"]) == (1, 4)
    assert news["epochs"] == sst2["epochs"] and news["max_train_samples"] == 10000


def test_standard_preset_prunes_stsb_from_layer_2_and_mrpc_from_layer_1():
    resolved = {task: build_train_config(task, "standard", {}).prune.resolve(6).prune_location
                for task in ("stsb", "mrpc", "sst2")}
    assert resolved == {"stsb": (2, 3, 4, 5), "mrpc": (1, 2, 3, 4, 5), "sst2": (2, 3, 4, 5)}


def test_exported_records_regenerate_the_row(task_dir, tmp_path):
    copied = export_records(task_dir, str(tmp_path / "cola"))
    assert copied == ["teacher", "top", "top-seed7"]
    for name in copied:  # records only, no weights
        files = set(os.listdir(tmp_path / "cola" / name))
        assert {DEV_FILE, "history.jsonl", "results.json"} <= files <= set(RECORD_FILES)
    row, again = seed_row(task_dir, SEEDS), seed_row(str(tmp_path / "cola"), SEEDS)
    assert again == dict(row, model=again["model"])
    assert row["drop_se_dev"] is not None and row["drop_se"] == pytest.approx(
        (row["drop_std"] ** 2 / 2 + row["drop_se_dev"] ** 2) ** 0.5)


def _dev_records(path, task, predictions, labels):
    """A task folder of runs holding only what dev_error reads."""
    for name, preds in predictions.items():
        os.makedirs(path / name)
        (path / name / "results.json").write_text(json.dumps({"task": task}))
        (path / name / DEV_FILE).write_text(json.dumps(
            {"validation": {"predictions": preds, "labels": labels}}))


def test_dev_error_is_the_paired_standard_error_of_the_drop(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 600)
    teacher = np.where(rng.random(600) < 0.85, labels, 1 - labels)
    top = np.where(rng.random(600) < 0.9, teacher, 1 - teacher)  # ToP mostly agrees
    _dev_records(tmp_path, "sst2", {"teacher": teacher.tolist(), "top": top.tolist()},
                 labels.tolist())
    paired = ((teacher == labels).astype(float) - (top == labels)).std(ddof=1) / 600 ** 0.5
    assert dev_error([str(tmp_path / "teacher"), str(tmp_path / "top")]) == pytest.approx(
        paired, rel=0.1)
    unpaired = (2 * 0.85 * 0.15 / 600) ** 0.5  # what two independent test sets would give
    assert paired < 0.8 * unpaired


def test_dev_error_needs_every_run_and_the_same_labels(tmp_path):
    _dev_records(tmp_path, "sst2", {"teacher": [0, 1, 1], "top": [0, 1, 0]}, [0, 1, 1])
    runs = [str(tmp_path / n) for n in ("teacher", "top", "top-seed2")]
    assert dev_error(runs) is None  # top-seed2 has no predictions
    (tmp_path / "top" / DEV_FILE).write_text(json.dumps(
        {"validation": {"predictions": [0, 1, 0], "labels": [1, 1, 1]}}))
    with pytest.raises(ValueError, match="different validation labels"):
        dev_error(runs[:2])


def test_each_model_records_its_curve_and_the_row_summarises_it(task_dir, tmp_path):
    from toplib.viz.sweep import record_curves
    task = tmp_path / "rt"
    for name in ("teacher", "top", "top-seed7"):  # copies: the shared folder stays as it was
        shutil.copytree(os.path.join(task_dir, name), task / name)
    paths = record_curves(str(task))
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == ["teacher", "top",
                                                                      "top-seed7"]
    rows = json.loads((task / "top" / CURVE_FILE).read_text())
    assert [r["method"] for r in rows] == ["teacher"] + ["attention"] * 8
    assert rows[0]["requested"] == 0.0 and rows[0]["sparsity_real"] == 0.0  # dense
    kept = [r["sparsity_real"] for r in rows]
    assert kept == sorted(kept) and kept[-1] > 0.6  # more removed as more is asked
    mtime = os.path.getmtime(paths[1])
    record_curves(str(task))  # kept, not measured again
    assert os.path.getmtime(paths[1]) == mtime
    row = seed_row(str(task), SEEDS)
    seeds = row["curve"]["seeds"]
    assert [p["requested"] for p in seeds] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    top7 = json.loads((task / "top-seed7" / CURVE_FILE).read_text())
    assert seeds[3]["score"] == pytest.approx((rows[3]["score"] + top7[3]["score"]) / 2)
    assert row["curve"]["teacher"][0]["score"] == pytest.approx(row["teacher_score"], abs=1e-6)
    assert row["within_1pt"] == within_point([row, *seeds], row["teacher_score"])
    assert row["within_1pt_untrained"] == within_point(row["curve"]["teacher"],
                                                       row["teacher_score"])
    exported = export_records(str(task), str(tmp_path / "out"))
    assert all((tmp_path / "out" / n / CURVE_FILE).exists() for n in exported)
    fig = plot_seed_results([row])
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any("gates re-derived" in label for label in labels)
    assert any("without training" in label for label in labels)
    plt.close(fig)


def test_within_point_is_the_highest_sparsity_that_keeps_the_teacher():
    curve = [dict(score=0.90, sparsity_real=0.0), dict(score=0.895, sparsity_real=0.2),
             dict(score=0.89, sparsity_real=0.4), dict(score=0.85, sparsity_real=0.6)]
    trained = dict(score=0.80, sparsity_real=0.7)
    assert within_point([trained, *curve], 0.90) == pytest.approx(0.4)  # 1 point, not 0.6
    assert within_point([dict(trained, score=0.895), *curve], 0.90) == pytest.approx(0.7)
    assert within_point(curve, 0.95) is None  # the dense point alone does not count


def test_the_table_says_how_far_each_task_keeps_its_teacher():
    row = dict(task="mrpc", metric="f1", model="m", teacher_score=0.87, score=0.83,
               score_std=None, n_seeds=1, targets_missed=0, drop=0.04, drop_std=None,
               target_sparsity=0.67, epochs=6.0)
    cell = lambda r: format_seed_table([r]).splitlines()[2].split(" | ")[-2]  # noqa: E731
    assert cell(row) == "n/a"  # no curve recorded: nothing below the target was measured
    curve = dict(row, curve={"seeds": [], "teacher": []}, within_1pt_untrained=0.3)
    assert cell(curve) == "none (untrained: 0.300)"
    assert cell(dict(curve, within_1pt=0.2, within_1pt_untrained=None)) == "0.200 (untrained: none)"


def test_seed_curves_of_different_sparsities_are_refused(tmp_path):
    for name, sparsities in (("teacher", [0.0, 0.5]), ("top", [0.0, 0.4])):
        (tmp_path / name).mkdir()
        (tmp_path / name / CURVE_FILE).write_text(json.dumps(
            [dict(requested=s, score=0.8, sparsity_real=s) for s in sparsities]))
    runs = [str(tmp_path / "teacher"), str(tmp_path / "top")]
    with pytest.raises(ValueError, match="different sparsities"):
        seed_curve(runs)
    assert seed_curve(runs + [str(tmp_path / "top-seed2")]) is None  # a run without its curve


def test_dev_predictions_must_reproduce_the_recorded_score(task_dir, tmp_path):
    run = tmp_path / "top"
    shutil.copytree(os.path.join(task_dir, "top"), run, ignore=shutil.ignore_patterns(DEV_FILE))
    results = json.loads((run / "results.json").read_text())
    results["best"]["score"] += 0.01
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="its results record"):
        record_dev_predictions(str(run))
    assert not (run / DEV_FILE).exists()


def test_the_committed_records_regenerate_the_readme_table_and_the_study_figures(tmp_path):
    import shutil
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copytree(os.path.join(repo, "results", "standard"), tmp_path / "standard")
    out = subprocess.run([sys.executable, os.path.join(repo, "scripts", "collect_results.py"),
                          "--runs", str(tmp_path / "standard"), "--out", str(tmp_path / "standard"),
                          "--tasks", "cola,mrpc,rte,stsb,sst2", "--seeds", "42,43,44",
                          "--figures", str(tmp_path / "figures")],
                         capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"))
    assert out.returncode == 0, out.stderr[-2000:]
    committed = open(os.path.join(repo, "results", "standard", "results.md")).read()
    assert (tmp_path / "standard" / "results.md").read_text() == committed
    assert "| stsb | std_x3 | 3 |" in out.stdout  # the study's table, mean ± sd per arm
    figures = set(os.listdir(tmp_path / "figures"))
    assert {"standard_score_vs_sparsity.png", "study_budget.png", "study_baselines.png",
            "study_prune_layer.png"} <= figures
