"""End-to-end runs: teacher -> ToP -> evaluation, and the results table of the paper."""
from __future__ import annotations

import json
import os
import time

from ..data import DataFiles, get_task
from .config import build_train_config
from .runs import finetune, finished_run, prune, read_results

TABLE_COLUMNS = ("Task", "Metric", "FLOPs reduction, real length",
                 "FLOPs reduction, padded (the paper's convention)",
                 "Sparsity measured, real / padded",
                 "Sparsity by the release's formula, real / padded", "Score", "Teacher score")
SPARSITY_KEYS = ("sparsity_real", "reduction_real", "sparsity_padded", "reduction_padded",
                 "sparsity_release_real", "sparsity_release_padded")


def train_task(task: str, output_dir: str, preset: str = "quick", model: str | None = None,
               data: DataFiles | str | None = None, overrides: dict | None = None,
               **options) -> dict:
    """Fine-tune a teacher and prune it (``output_dir/teacher``, ``/top``; finished stages
    reused, interrupted ones resumed); returns one results-table row."""
    config = build_train_config(task, preset, overrides)
    teacher_dir, top_dir = os.path.join(output_dir, "teacher"), os.path.join(output_dir, "top")
    start = time.time()
    if finished_run(teacher_dir) is None:
        finetune(task, teacher_dir, model, config, data, **resuming(options, teacher_dir))
    teacher_time = time.time() - start
    if finished_run(top_dir, config=config) is None:  # not one of other knobs
        prune(task, teacher_dir, top_dir, config, data, **resuming(options, top_dir))
    row = dict(table_row(top_dir), teacher_time_s=teacher_time, total_time_s=time.time() - start)
    with open(os.path.join(output_dir, "row.json"), "w") as f:
        json.dump(row, f, indent=2)
    return row


def resuming(options: dict, run_dir: str) -> dict:
    """Run options that resume a run already begun in ``run_dir``."""
    return dict(options, resume=options.get("resume")
                or (os.path.isdir(run_dir) and not options.get("overwrite")))


def table_row(top_dir: str) -> dict:
    """One row of the paper-style table from a finished pruning run (``target_missed``: the
    last evaluation's)."""
    results = read_results(top_dir)
    spec = get_task(results["task"])
    best = results["best"]
    m = next(iter((best["results"] or {}).values()), {})  # the first split's figures
    return {
        "task": spec.name, "metric": spec.metrics[0],
        "target_sparsity": results["config"]["sparsity"],
        **{k: m.get(k) for k in (*SPARSITY_KEYS, "keep_ratio")},
        "score": best["score"], "teacher_score": results["teacher_score"],
        "prune_time_s": results["wall_time_s"], "epochs": results["config"].get("epochs"),
        "target_missed": bool(best.get("target_missed", False)),
    }


def format_table(rows: list[dict]) -> str:
    """Markdown table in the paper's format (Table 2: FLOPs reduction and score)."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in rows:
        pair = " / ".join
        cells = [format_cell(r["reduction_real"], "{:.2f}x"),
                 format_cell(r["reduction_padded"], "{:.2f}x"),
                 pair(format_cell(r.get(k), "{:.3f}")
                      for k in ("sparsity_real", "sparsity_padded")),
                 pair(format_cell(r.get(k), "{:.3f}")
                      for k in ("sparsity_release_real", "sparsity_release_padded")),
                 format_cell(r["score"], "{:.2f}", 100),
                 format_cell(r["teacher_score"], "{:.2f}", 100)]
        missed = " (target missed)" if r.get("target_missed") else ""
        lines.append(f"| {r['task']} | {r['metric']} | " + " | ".join(cells) + f"{missed} |")
    return "\n".join(lines)


def format_cell(value, pattern: str, scale: float = 1.0, missing: str = "n/a") -> str:
    """``pattern`` of ``value * scale``; ``missing`` for None or NaN.

    Example:
        >>> format_cell(0.8123, "{:.2f}", 100), format_cell(None, "{:.2f}")
        ('81.23', 'n/a')
    """
    if value is None or value != value:
        return missing
    return pattern.format(value * scale if scale != 1.0 else value)


def quickstart(output_dir: str = "runs/rotten_tomatoes", sparsity: float = 0.5,
               resume: bool = False, device: str = "cpu", progress: bool = True) -> dict:
    """The main job on the offline default: MiniLM-L6 + Rotten Tomatoes, quick preset."""
    row = train_task("rotten_tomatoes", output_dir, "quick", overrides={"sparsity": sparsity},
                     resume=resume, device=device, progress=progress)
    print(format_table([row]))
    print(f"measured real-length FLOPs sparsity {row['sparsity_real']:.3f} (target {sparsity}); "
          f"wall time {row['total_time_s'] / 60:.1f} min")
    return row
