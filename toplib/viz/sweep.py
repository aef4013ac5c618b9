"""Score against FLOPs: ToP at several targets, and the training-free baselines (tokens ranked by
attention, or at random) at the FLOPs sparsity each ToP model measured. Both baselines use one
bin schedule (:func:`toplib.infer.gates_for_sparsity`), so their measured FLOPs are equal."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Sequence

import pandas as pd
import torch

from ..data import DataFiles, prepare_data, real_lengths
from ..hf.model import load_checkpoint
from ..infer import gates_for_sparsity
from ..train import TrainConfig, finished_run, prune
from ..train.dev_records import CURVE_FILE, recorded_data, task_runs
from ..train.evaluate import DENSE, PRUNED, EvalMode, evaluate_splits, split_summary
from ..train.pipeline import SPARSITY_KEYS, table_row
from ..train.records import write_atomic
from ..train.runs import read_results
from .analysis import BASELINES

logger = logging.getLogger(__name__)

FLOPS_KEYS = SPARSITY_KEYS  # measured (real, padded) and the release's formula
POINT_KEYS = ("score", *FLOPS_KEYS, "keep_ratio")
"""What a sweep point records: the score (mean over splits), the first split's FLOPs."""


@torch.no_grad()
def evaluate_with_gates(top, loaders: dict, spec, max_seq_length: int, mode: EvalMode = PRUNED,
                        seed: int = 0, device: str = "cpu") -> dict:
    """``evaluate_splits`` reduced to a sweep point; random ranking is seeded by ``seed``."""
    torch.manual_seed(seed)
    summary = split_summary(evaluate_splits(top, loaders, spec, max_seq_length, mode, device,
                                            progress=False))
    return {k: summary[k] for k in POINT_KEYS}


def baselines_at(teacher_dir: str, task: str, sparsities: Sequence[float], config: TrainConfig,
                 data: DataFiles | str | None = None, methods: Sequence[str] = BASELINES,
                 device: str = "cpu") -> list[dict]:
    """The dense teacher and each baseline at each real-length FLOPs sparsity in ``sparsities``:
    one row per (method, sparsity) plus the teacher's."""
    if set(methods) - set(BASELINES):
        raise ValueError(f"methods={list(methods)!r} is invalid: choose among {BASELINES}")
    top, tokenizer, _ = load_checkpoint(teacher_dir, config.prune, device, name="teacher_dir")
    split_data = prepare_data(task, tokenizer, config, data, need_train=False)
    loaders = split_data.eval_loaders(config, tokenizer)
    lengths = real_lengths(next(iter(split_data.validation.values())))
    common = dict(spec=split_data.spec, max_seq_length=split_data.padded_length,
                  seed=config.seed, device=device)
    rows = [dict(method="teacher", requested=0.0,
                 **evaluate_with_gates(top, loaders, mode=DENSE, **common))]
    for sparsity in sparsities:
        gates, _ = gates_for_sparsity(top, lengths, float(sparsity))
        for method in methods:
            mode = EvalMode(gates=gates, random_ranking=method == "random")
            rows.append(dict(method=method, requested=float(sparsity),
                             **evaluate_with_gates(top, loaders, mode=mode, **common)))
    return rows


def sparsity_sweep(task: str, teacher_dir: str, output_dir: str, targets: Sequence[float],
                   config: TrainConfig | None = None, data: DataFiles | str | None = None,
                   **options) -> pd.DataFrame:
    """ToP at each target (``output_dir/top-<t>``, reused when finished) and the baselines at its
    measured FLOPs; ``target`` of a baseline row is the ToP target it is matched to (0: teacher)."""
    config, rows = config or TrainConfig(), []
    for target in targets:
        run_dir = os.path.join(output_dir, f"top-{target:g}")
        if finished_run(run_dir) is None:
            prune(task, teacher_dir, run_dir, dataclasses.replace(config, sparsity=float(target)),
                  data, **dict(options, resume=True))
        row = table_row(run_dir)
        rows.append(dict(method="ToP", target=float(target), requested=float(target),
                         **{k: row[k] for k in (*POINT_KEYS, "target_missed", "teacher_score")}))
    measured = [r["sparsity_real"] for r in rows]
    for row in baselines_at(teacher_dir, task, measured, config, data,
                            device=options.get("device", "cpu")):
        match = [r["target"] for r in rows if r["sparsity_real"] == row["requested"]]
        rows.append(dict(row, target=match[0] if match else 0.0, target_missed=False))
    return pd.DataFrame(rows).drop(columns=["keep_ratio"], errors="ignore")


CURVE_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Where a run's score-vs-sparsity curve is measured (its gates re-derived, no training)."""


def record_curve(run_dir: str, sparsities: Sequence[float] = CURVE_SPARSITIES,
                 device: str = "cpu") -> str:
    """Write ``run_dir/retargeted.json`` (kept if there; nothing without best/'s weights):
    :func:`baselines_at` rows of best/, dense and with its gates re-derived for each of
    ``sparsities`` (a teacher's: attention pruning without training), on its recorded data."""
    path = os.path.join(run_dir, CURVE_FILE)
    if not os.path.exists(path) and os.path.isdir(os.path.join(run_dir, "best")):
        results = read_results(run_dir)
        rows = baselines_at(os.path.join(run_dir, "best"), results["task"], sparsities,
                            TrainConfig.from_dict(results["config"]), recorded_data(results),
                            methods=("attention",), device=device)
        write_atomic(path, json.dumps(rows))
    return path


def record_curves(task_dir: str, device: str = "cpu") -> list[str]:
    """:func:`record_curve` for the teacher and every finished ``top*`` run of ``task_dir``."""
    return [record_curve(os.path.join(task_dir, name), device=device)
            for name in task_runs(task_dir)]
