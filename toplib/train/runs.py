"""Training runs: teacher fine-tuning and ToP pruning, resumable, with atomic checkpoints.

Both build a stage (``toplib.train.objectives``) and hand it to the one loop
(``toplib.train.loop.run_stage``); finished runs are read back with :func:`read_results`.
"""
from __future__ import annotations

import json
import logging
import os

import torch

from ..data import DataFiles, prepare_data
from ..hf.model import (
    DEFAULT_MODEL,
    ToPModel,
    checkpoint_path,
    load_checkpoint,
    load_classifier,
    load_tokenizer,
)
from .config import TrainConfig
from .evaluate import DENSE, evaluate_splits, mean_score
from .loop import HISTORY_FILE, RESULTS_FILE, STATE_FILE, RunOptions, StageRun, run_stage, set_seed
from .objectives import FinetuneStage, PruneStage

logger = logging.getLogger(__name__)


def finetune(task: str, output_dir: str, model: str | None = None,
             config: TrainConfig | None = None, data: DataFiles | str | None = None,
             **options) -> dict:
    """Fine-tune the dense teacher; the best evaluation is kept in ``output_dir/best``.

    Args:
        model: hub name or local path (default: the offline MiniLM-L6).
        data: a :class:`~toplib.data.DataFiles` or a ``data_dir`` (default: the task's own).
        options: :class:`~toplib.train.loop.RunOptions` fields (resume, device, callback, ...).
    Returns:
        The run's results (as ``results.json``).
    """
    config, opts = config or TrainConfig(), RunOptions(**options)
    resuming = _check_output_dir(output_dir, opts, config.seed)
    tokenizer = load_tokenizer(model)
    split_data = prepare_data(task, tokenizer, config, data)
    top = ToPModel(load_classifier(model, split_data.spec), config.prune).to(opts.device)
    stage = FinetuneStage(top, config, split_data.steps_per_epoch(config))
    meta = {"model": model or DEFAULT_MODEL}
    return _run(StageRun(stage, split_data, tokenizer, output_dir, meta, opts), resuming)


def prune(task: str, teacher: str, output_dir: str, config: TrainConfig | None = None,
          data: DataFiles | str | None = None, **options) -> dict:
    """Train ToP from a fine-tuned teacher (its run directory or a saved classifier) towards
    ``config.sparsity``; ``data`` and ``options`` as for :func:`finetune`.

    The best checkpoint is chosen among evaluations whose measured real-length FLOPs
    sparsity is at least ``sparsity - sparsity_epsilon`` (as the paper does).
    """
    config, opts = config or TrainConfig(), RunOptions(**options)
    resuming = _check_output_dir(output_dir, opts, config.seed)
    teacher_model, tokenizer, _ = load_checkpoint(teacher, device=opts.device, name="teacher")
    teacher_dir = checkpoint_path(teacher)
    top = ToPModel.from_pretrained(teacher_dir, prune=config.prune).to(opts.device)
    split_data = prepare_data(task, tokenizer, config, data)
    teacher_results = evaluate_splits(teacher_model, split_data.eval_loaders(config, tokenizer),
                                      split_data.spec, split_data.max_seq_length, DENSE,
                                      opts.device, opts.progress)
    stage = PruneStage(top, teacher_model, config, split_data.steps_per_epoch(config))
    meta = {"teacher": os.path.abspath(teacher_dir), "teacher_results": teacher_results,
            "teacher_score": mean_score(teacher_results)}
    return _run(StageRun(stage, split_data, tokenizer, output_dir, meta, opts), resuming)


def _run(run: StageRun, resuming: bool) -> dict:
    os.makedirs(run.output_dir, exist_ok=True)
    if resuming:
        trim_history(run.output_dir, saved_step(run.output_dir))
    return run_stage(run, resume=resuming)


def _check_output_dir(output_dir: str, opts: RunOptions, seed: int) -> bool:
    """True when there is a run to resume; refuses to clobber a run silently. Seeds the run."""
    set_seed(seed)
    has_state = os.path.exists(os.path.join(output_dir, "last", STATE_FILE))
    if opts.resume:
        if not has_state:
            logger.warning("resume: no saved state in %s, starting afresh", output_dir)
        return has_state
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not opts.overwrite:
        raise ValueError(f"output_dir={output_dir!r} already holds files; pass resume=True "
                         "(--resume) to continue that run or overwrite=True (--overwrite)")
    return False


def saved_step(output_dir: str) -> int | None:
    """The step of the state saved in ``output_dir/last`` (None: nothing to resume)."""
    path = os.path.join(output_dir, "last", STATE_FILE)
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=False)["step"]


def trim_history(output_dir: str, step: int) -> None:
    """Drop history lines written after the state we resume from."""
    path = os.path.join(output_dir, HISTORY_FILE)
    if os.path.exists(path):
        with open(path) as f:
            keep = [line for line in f if json.loads(line)["step"] <= step]
        with open(path, "w") as f:
            f.writelines(keep)


def read_results(run_dir: str) -> dict:
    """The ``results.json`` of a finished run."""
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"run_dir={run_dir!r} holds no {RESULTS_FILE}: the run has not "
                                "finished (resume it with resume=True)")
    with open(path) as f:
        return json.load(f)


def read_history(run_dir: str) -> list[dict]:
    """The records of a training run's ``history.jsonl``."""
    with open(os.path.join(run_dir, HISTORY_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


def finished_run(output_dir: str, overwrite: bool = False) -> dict | None:
    """The results of a finished run in ``output_dir``, or None (train it; ``overwrite``:
    None whatever is there). Notebooks call ``finished_run(d) or finetune(..., d,
    resume=True)``: re-running one reads a finished run back and resumes an interrupted one."""
    if overwrite or not os.path.exists(os.path.join(output_dir, RESULTS_FILE)):
        return None
    logger.info("reusing the finished run in %s", output_dir)
    return read_results(output_dir)
