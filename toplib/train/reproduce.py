"""The reproduction table: a teacher per task, ToP over several seeds, beside the paper.
A task's folder holds ``teacher/``, ``top/`` (the first seed) and ``top-seed<N>/``."""
from __future__ import annotations

import json
import logging
import os
import statistics
from typing import Sequence

from ..data import DataFiles, chance_scores
from ..data.batching import validation_labels
from ..hf.model import DEFAULT_MODEL
from .config import build_train_config
from .dev_records import dev_error, recorded_data, seed_curve, within_point
from .pipeline import SPARSITY_KEYS, format_cell, resuming, table_row
from .records import RESULTS_FILE
from .runs import finished_run, prune, read_results

logger = logging.getLogger(__name__)

# microsoft/Moonlit, ToP/README.md, "Results and Models": bert-base-uncased, the score in
# points and the FLOPs reduction the release reports (its formula, inputs padded).
PAPER_RESULTS: dict[str, tuple[float, float]] = {
    "cola": (60.3, 10.39), "rte": (68.3, 7.71), "qqp": (90.9, 12.41), "mrpc": (89.1, 7.71),
    "sst2": (93.4, 4.66), "mnli": (83.4, 6.68), "qnli": (89.0, 6.16), "stsb": (86.6, 7.20),
}
PAPER_MODEL = "bert-base-uncased"


def seed_dir(task_dir: str, seed: int, seeds: Sequence[int]) -> str:
    """The pruning run folder of ``seed``.

    Example:
        >>> seed_dir("runs/cola", 43, [42, 43])
        'runs/cola/top-seed43'
    """
    return os.path.join(task_dir, "top" if seed == seeds[0] else f"top-seed{seed}")


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list of distinct integers >= 0."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(
            isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r}: give one or more distinct integers >= 0")
    return seeds


def train_seeds(task: str, task_dir: str, seeds: Sequence[int], preset: str = "standard",
                data: DataFiles | str | None = None, overrides: dict | None = None,
                **options) -> dict[int, str]:
    """Prune the finished teacher in ``task_dir/teacher`` once per seed (finished runs
    reused, interrupted ones resumed); returns each seed's run folder (:func:`seed_row`
    reduces them)."""
    seeds = check_seeds(seeds)
    teacher = os.path.join(task_dir, "teacher")
    if finished_run(teacher) is None:
        raise FileNotFoundError(f"task_dir={task_dir!r} has no finished teacher/ run; "
                                f"fine-tune one first (toplib finetune --output-dir {teacher})")
    configs = {s: build_train_config(task, preset, dict(overrides or {}, seed=s)) for s in seeds}
    runs = {s: seed_dir(task_dir, s, seeds) for s in seeds}
    # every seed checked before any training: a finished run of other settings is refused
    done = {s: finished_run(runs[s], config=configs[s]) for s in seeds}
    for seed, config in configs.items():
        if done[seed] is None:
            prune(task, teacher, runs[seed], config, data, **resuming(options, runs[seed]))
    return runs


def seed_row(task_dir: str, seeds: Sequence[int]) -> dict:
    """One row of the reproduction table: ``table_row`` fields averaged over the finished
    seeds, their spread, the drop (teacher minus ToP), the chance score and the paper's."""
    seeds = check_seeds(seeds)
    done = [s for s in seeds if _finished(seed_dir(task_dir, s, seeds))]
    if not done:
        raise FileNotFoundError(f"task_dir={task_dir!r}: no finished pruning run among "
                                f"seeds {seeds}")
    rows = [table_row(seed_dir(task_dir, s, seeds)) for s in done]
    if len(epochs := {r["epochs"] for r in rows}) > 1:
        raise ValueError(f"task_dir={task_dir!r}: seeds {done} were trained for different "
                         f"ToP epochs {sorted(epochs)}; average runs of one schedule only")
    scores = [r["score"] for r in rows]
    drops = [r["teacher_score"] - r["score"] for r in rows]
    row = {key: _mean([r[key] for r in rows]) for key in
           (*SPARSITY_KEYS, "score", "teacher_score", "prune_time_s")}
    paper, drop_std = PAPER_RESULTS.get(rows[0]["task"]), _std(drops)
    runs = [os.path.join(task_dir, "teacher")] + [seed_dir(task_dir, s, seeds) for s in done]
    dev = dev_error(runs)
    seed_se = None if drop_std is None else drop_std / len(done) ** 0.5
    row.update(drop_se_seeds=seed_se, drop_se_dev=dev, drop_se=None if None in (seed_se, dev)
               else (seed_se**2 + dev**2) ** 0.5)
    row.update(task=rows[0]["task"], metric=rows[0]["metric"],
               target_sparsity=rows[0]["target_sparsity"], epochs=rows[0]["epochs"],
               seeds=done, n_seeds=len(done),
               scores=scores, score_std=_std(scores), drop=_mean(drops), drop_std=drop_std,
               sparsity_real_std=_std([r["sparsity_real"] for r in rows]),
               seed_sparsities=[r["sparsity_real"] for r in rows],
               targets_missed=sum(r["target_missed"] for r in rows),
               model=_model_name(task_dir),
               chance_score=run_chance_score(seed_dir(task_dir, done[0], seeds)),
               paper_model=PAPER_MODEL if paper else None,
               paper_score=paper[0] / 100 if paper else None,
               paper_reduction=paper[1] if paper else None, curve=(curve := seed_curve(runs)))
    teacher = row["teacher_score"]  # ToP: its trained point, or lower on its models' curve
    row.update(within_1pt=within_point([row, *(curve or {}).get("seeds", [])], teacher),
               within_1pt_untrained=within_point(curve["teacher"], teacher) if curve else None)
    return row


def run_chance_score(run_dir: str) -> float | None:
    """The label-blind primary score on the validation labels a run was evaluated on; None,
    with a warning, when that data cannot be read here."""
    results = read_results(run_dir)
    config = results.get("config", {})
    try:
        spec, labels = validation_labels(results["task"], recorded_data(results),
                                         config.get("max_eval_samples"), config.get("seed", 42))
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        logger.warning("%s: no chance score, its validation data is not readable here (%s)",
                       run_dir, err)
        return None
    evaluated = next(iter(results.get("teacher_results", {}).values()), {}).get("num_examples")
    if evaluated not in (None, len(labels)):
        logger.warning("%s: evaluated on %s examples, its data now has %d: no chance score",
                       run_dir, evaluated, len(labels))
        return None
    return chance_scores(spec, labels)[spec.metrics[0]]


def _finished(run_dir: str) -> bool:
    """Whether a run has finished."""
    return os.path.exists(os.path.join(run_dir, RESULTS_FILE))


def _model_name(task_dir: str) -> str:
    """The teacher's base model, as ``task_dir/teacher`` recorded it."""
    try:
        model = read_results(os.path.join(task_dir, "teacher")).get("model") or DEFAULT_MODEL
    except (OSError, ValueError):  # a teacher given as a checkpoint elsewhere
        model = DEFAULT_MODEL
    return os.path.basename(str(model).rstrip("/")) or str(model)


CHANCE_MARGIN = 0.02
"""A score closer to chance than this, or than 2 sd over seeds, is not told apart from it."""


def describe_row(row: dict) -> str:
    """One sentence on a :func:`seed_row` against teacher, chance and paper, in points.

    Example:
        >>> describe_row(dict(task="rte", metric="accuracy", score=0.565, teacher_score=0.574))
        'rte (accuracy): ToP 56.50 over 1 seed(s), teacher 57.40'
    """
    text = (f"{row['task']} ({row['metric']}): ToP {_pm(row['score'], row.get('score_std'))} "
            f"over {row.get('n_seeds', 1)} seed(s), teacher {_pts(row['teacher_score'])}")
    chance = row.get("chance_score")
    if chance is not None:
        margin = row["score"] - chance
        close = max(CHANCE_MARGIN, 2 * (row.get("score_std") or 0.0))
        verdict = ("not distinguishable from a label-blind guess" if margin < close
                   else "above it by more than 2 sd and 2 points")
        text += f"; chance {_pts(chance)}, ToP {margin * 100:+.2f} points: {verdict}"
    if row.get("paper_score") is not None:
        text += (f"; paper {_pts(row['paper_score'])} with {row.get('paper_model')} at "
                 f"{row['paper_reduction']:.2f}x (padded), ToP here at "
                 f"{format_cell(row.get('reduction_padded'), '{:.2f}x')} (padded)")
    return text


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and v == v]
    return statistics.fmean(values) if values else None


def _std(values: list) -> float | None:
    """Sample standard deviation; None for one value."""
    values = [v for v in values if v is not None and v == v]
    return statistics.stdev(values) if len(values) > 1 else None


SEED_COLUMNS = ("Task", "Metric", "Model", "Teacher", "ToP, mean ± sd (seeds)",
                "Drop, mean ± sd", "Drop's SE: total (seeds / dev set)", "Target", "ToP epochs",
                "Sparsity measured, real / padded", "Release's formula, real / padded",
                "FLOPs reduction, real / padded", "Within 1 point up to, real",
                f"Paper ({PAPER_MODEL}): score at reduction (release's formula, padded)")


def format_seed_table(rows: list[dict]) -> str:
    """Markdown table of :func:`seed_row` rows; scores in points (x100), as the paper."""
    lines = ["| " + " | ".join(SEED_COLUMNS) + " |", "|" + "---|" * len(SEED_COLUMNS)]
    for r in rows:
        missed = f", {r['targets_missed']} missed target" if r["targets_missed"] else ""
        paper = (f"{r['paper_score'] * 100:.1f} at {r['paper_reduction']:.2f}x "
                 f"({1 - 1 / r['paper_reduction']:.3f})"
                 if r.get("paper_score") is not None else "n/a")
        cells = [r["task"], r["metric"], r["model"], _pts(r["teacher_score"]),
                 f"{_pm(r['score'], r['score_std'])} ({r['n_seeds']}{missed})",
                 _pm(r["drop"], r["drop_std"]), f"{_pts(r.get('drop_se'))} ("
                 f"{_pts(r.get('drop_se_seeds'))} / {_pts(r.get('drop_se_dev'))})",
                 f"{r['target_sparsity']:.2f}", format_cell(r.get("epochs"), "{:g}"),
                 _pair(r, "sparsity_real", "sparsity_padded", "{:.3f}"),
                 _pair(r, "sparsity_release_real", "sparsity_release_padded", "{:.3f}"),
                 _pair(r, "reduction_real", "reduction_padded", "{:.2f}x"),
                 _within(r), paper]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _within(row: dict) -> str:
    """The ``within_1pt`` cell, the untrained teacher's beside it where the curves were
    recorded: "none" where no measured point holds, n/a where nothing below was measured."""
    curve = row.get("curve") is not None
    cell = format_cell(row.get("within_1pt"), "{:.3f}", missing="none" if curve else "n/a")
    untrained = format_cell(row.get("within_1pt_untrained"), "{:.3f}", missing="none")
    return cell + (f" (untrained: {untrained})" if curve else "")


def _pts(value: float | None) -> str:
    return format_cell(value, "{:.2f}", 100)


def _pm(value: float | None, std: float | None) -> str:
    return _pts(value) + ("" if std is None else f" ± {std * 100:.2f}")


def _pair(row: dict, first: str, second: str, pattern: str) -> str:
    return " / ".join(format_cell(row.get(k), pattern) for k in (first, second))


def write_seed_table(rows: list[dict], output_dir: str, name: str = "results") -> str:
    """Write ``<name>.json`` (the rows) and ``<name>.md`` (the table); returns the table."""
    os.makedirs(output_dir, exist_ok=True)
    table = format_seed_table(rows)
    with open(os.path.join(output_dir, f"{name}.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(output_dir, f"{name}.md"), "w") as f:
        f.write(table + "\n")
    return table
