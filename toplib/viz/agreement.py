"""Ranking agreement over seeds: does ranking distillation (ToP Sec. 3.4) make the pruning layers
rank tokens more like the teacher's final layer, beyond the spread between seeds?"""
from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

TOP, NORANK, TEACHER = "ToP", "ToP without rank distillation", "dense teacher"
MEASURES = ("kendall_tau", "ndcg")


def seed_runs(top_dir: str, seeds: Sequence[int]) -> dict[int, tuple[str, str]]:
    """{seed: (ToP run, its ``-norank`` twin)}: ``top_dir`` for the first seed, then ``seed_dir``
    for a task's ``top/``, else ``<top_dir>-seed<N>``.

    Example:
        >>> seed_runs("runs/rte/top", [42, 43])[43]
        ('runs/rte/top-seed43', 'runs/rte/top-seed43-norank')
        >>> seed_runs("runs/rte/top-a1e-2", [42, 43])[43][0]
        'runs/rte/top-a1e-2-seed43'
    """
    from ..train.reproduce import check_seeds, seed_dir
    from .analysis import NORANK_SUFFIX
    seeds, top_dir = check_seeds(seeds), top_dir.rstrip("/\\")
    task_dir, name = os.path.split(os.path.normpath(top_dir))
    runs = {}
    for seed in seeds:
        if seed == seeds[0]:
            run = top_dir
        else:
            run = seed_dir(task_dir, seed, seeds) if name == "top" else f"{top_dir}-seed{seed}"
        runs[seed] = (run, run + NORANK_SUFFIX)
    return runs


def check_runs(top_dir: str, seeds: Sequence[int]) -> None:
    """Raise a ValueError naming the run when a finished run of :func:`seed_runs` differs from
    ``top_dir`` beyond its seed (and a twin's rank weight 0), or ``top_dir``'s seed is not first."""
    from ..train import finished_run, read_results
    from ..train.config import TrainConfig, config_differences

    def filled(values: dict) -> dict:  # a run saved before a knob existed reads its default
        return TrainConfig.from_dict(values).to_dict()

    config = read_results(top_dir)["config"]
    runs = seed_runs(top_dir, seeds)
    if config["seed"] != next(iter(runs)):
        raise ValueError(f"seeds={list(seeds)!r}: the first seed must be the one top_dir="
                         f"{top_dir!r} was trained with ({config['seed']})")
    for seed, (run, twin) in runs.items():
        for path, changes in ((run, {"seed": seed}),
                              (twin, {"seed": seed, "distill_rank_loss_alpha": 0.0})):
            done = finished_run(path)
            if done is None:
                continue
            differ = list(config_differences(filled(dict(config, **changes)),
                                             filled(done["config"])))
            if differ:
                raise ValueError(f"{path!r} differs from top_dir={top_dir!r} in {differ} beyond "
                                 f"{sorted(changes)}; move it aside or choose another top_dir")


def missing_runs(top_dir: str, seeds: Sequence[int]) -> list[str]:
    """The runs of :func:`seed_runs` that have not finished (none if all are there)."""
    from ..train import finished_run
    return [run for pair in seed_runs(top_dir, seeds).values() for run in pair
            if finished_run(run) is None]


def train_missing(top_dir: str, seeds: Sequence[int], data_dir: str | None = None,
                  device: str = "cpu", progress: bool = True) -> list[str]:
    """Train the missing runs of :func:`seed_runs` (finished ones checked, reused); returns them."""
    from .analysis import retrain
    check_runs(top_dir, seeds)
    runs, todo = seed_runs(top_dir, seeds), set(missing_runs(top_dir, seeds))
    for seed, (run, twin) in runs.items():
        if run in todo:
            retrain(top_dir, run, {"seed": seed}, data_dir, device, progress)
        if twin in todo:  # the run without rank distillation (ToP Table 5)
            retrain(run, twin, {"distill_rank_loss_alpha": 0.0}, data_dir, device, progress)
    return [run for pair in runs.values() for run in pair if run in todo]


def seed_agreement(teacher, tokenizer, texts, top_dir: str, seeds: Sequence[int],
                   k: int = 10, max_length: int = 128) -> pd.DataFrame:
    """:func:`~toplib.viz.analysis.ranking_agreement` of every seed's ToP run and twin, and of the
    dense teacher's own layers (model TOP, NORANK or TEACHER; seed None for the teacher)."""
    from ..hf import load_checkpoint
    from .analysis import ranking_agreement
    frames = [ranking_agreement(teacher, teacher, tokenizer, texts, k, False, max_length)
              .assign(model=TEACHER, seed=None)]
    for seed, pair in seed_runs(top_dir, seeds).items():
        for model, run in zip((TOP, NORANK), pair):
            top, _, _ = load_checkpoint(run)
            frames.append(ranking_agreement(top, teacher, tokenizer, texts, k, True, max_length)
                          .assign(model=model, seed=seed))
    return pd.concat(frames, ignore_index=True)


def agreement_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd (NaN for one seed) and seed count ``n`` of each measure per model and layer.

    Example:
        >>> df = pd.DataFrame({"model": ["a", "a"], "layer": [1, 1], "seed": [0, 1],
        ...                    "kendall_tau": [0.2, 0.4], "ndcg": [0.5, 0.7]})
        >>> round(float(agreement_spread(df)["kendall_tau_sd"][0]), 4)
        0.1414
    """
    stats = {"n": ("layer", "size")}
    if "decides_pruning" in df:
        stats["decides_pruning"] = ("decides_pruning", "any")
    for m in MEASURES:
        stats.update({f"{m}_mean": (m, "mean"), f"{m}_sd": (m, "std")})
    return df.groupby(["model", "layer"], sort=False).agg(**stats).reset_index()
