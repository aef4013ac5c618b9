"""The training loop shared by both stages: train, evaluate, keep best and last, resume.
The run folder is described in :mod:`toplib.train.rundir`."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.config import check_device
from ..data import TaskData, to_device
from ..hf.checkpoint import load_torch_file
from ..hf.model import ToPModel, atomic_directory
from .evaluate import EvalMode, evaluate_splits, split_summary
from .records import HISTORY_FILE, write_results
from .rundir import STATE_FILE, discard_replaced

logger = logging.getLogger(__name__)
LOG_EVERY = 10  # steps between history lines
MAX_GRAD_NORM = 1.0  # Hugging Face Trainer default, used by the release


@dataclass
class RunOptions:
    """How a run is carried out (not what it learns)."""

    resume: bool = False  # continue an interrupted run in output_dir
    overwrite: bool = False  # replace a run already in output_dir
    accept_config_change: bool = False  # resume although the configuration changed
    device: str = "cpu"
    callback: Callable[[dict], None] | None = None  # called with every history record
    progress: bool = True  # progress bars
    stop_after: int | None = None  # stop after this many steps as if interrupted (tests)

    def __post_init__(self):
        self.device = check_device(self.device)
        if self.resume and self.overwrite:
            raise ValueError("resume=True and overwrite=True: choose one (--resume continues "
                             "the run in output_dir, --overwrite replaces it)")

    def stopped(self, step: int) -> bool:
        return self.stop_after is not None and step >= self.stop_after


@dataclass
class TrainState:
    """What the loop carries from step to step, and saves beside ``last/``."""

    step: int = 0
    best: dict | None = None  # {"score", "step", "results"} of the best eligible evaluation
    last: dict | None = None  # the same for the latest evaluation
    elapsed: float = 0.0  # seconds of training before this process


@dataclass
class StageRun:
    """One stage on its data; ``meta`` (completed here) goes into every checkpoint and results."""

    stage: object
    data: TaskData
    tokenizer: object
    output_dir: str
    meta: dict
    options: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self):
        self.config = self.stage.config
        self.meta = {"stage": self.stage.name, "task": self.data.spec.name, **self.meta,
                     "config": self.config.to_dict(), "max_seq_length": self.data.max_seq_length}

    def path(self, *names: str) -> str:
        return os.path.join(self.output_dir, *names)


def run_stage(run: StageRun, resume: bool) -> dict:
    """Train, evaluate, keep best and last; returns the results (``{"interrupted_at": step}``
    when ``options.stop_after`` cut it short)."""
    config, opts, top = run.config, run.options, run.stage.top
    per_epoch, total = run.data.steps_per_epoch(config), run.stage.total_steps
    eval_steps = config.eval_steps or max(1, per_epoch // config.evals_per_epoch)
    loaders = run.data.eval_loaders(config, run.tokenizer)
    state = _restore(run) if resume else TrainState()
    start = time.time() - state.elapsed
    bar = tqdm(total=total, initial=state.step, desc=run.stage.name, disable=not opts.progress)
    while state.step < total and not opts.stopped(state.step):
        epoch, offset = divmod(state.step, per_epoch)
        for i, batch in enumerate(run.data.train_loader(config, run.tokenizer, epoch)):
            if i < offset:
                continue  # resume mid-epoch: same order, skip what was done
            top.train()
            loss, record = run.stage.loss(to_device(batch, opts.device), state.step)
            optimizer_step(run.stage, loss, state.step + 1)
            state.step += 1
            bar.update(1)
            if state.step % LOG_EVERY == 0 or state.step in (1, total):
                _log(run, dict(record, step=state.step, epoch=state.step / per_epoch,
                               loss=loss.item(), kind="train"))
            if state.step % eval_steps == 0 or state.step == total:
                state.elapsed = time.time() - start
                _evaluate_and_save(run, state, loaders)
                bar.set_postfix(best=None if state.best is None else round(state.best["score"], 4))
            if state.step >= total or opts.stopped(state.step):
                break
    bar.close()
    if opts.stopped(state.step):
        return {"interrupted_at": state.step}
    return _finish(run, state, time.time() - start)


class NonFiniteError(ArithmeticError):
    """Training produced a NaN or an infinity; the run stops before it reaches a checkpoint."""


def _finite(step: int, quantity: str, value: torch.Tensor) -> None:
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(
            f"training stopped at step {step}: the {quantity} is not finite "
            f"({value.detach().flatten()[:4].tolist()}); no checkpoint holds it (last/ is from "
            "the latest evaluation before). Lower the learning rates (--learning-rate, "
            "--reg-learning-rate) and resume with --accept-config-change, or start again")


def optimizer_step(stage, loss: torch.Tensor, step: int) -> None:
    """Backward, clip, step every optimiser and scheduler; raises NonFiniteError on a
    non-finite loss, gradient norm or parameter."""
    _finite(step, "loss", loss)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(
        [p for p in stage.top.model.parameters() if p.grad is not None], MAX_GRAD_NORM)
    _finite(step, "gradient norm", norm)
    for opt in stage.optimizers.values():
        opt.step()
        opt.zero_grad(set_to_none=True)
    for sched in stage.schedulers.values():
        sched.step()
    stage.after_step()
    for name, module in {"gate": stage.top.gates, **stage.modules()}.items():
        for pname, p in module.named_parameters():
            _finite(step, f"{name} parameter {pname}", p)


def _log(run: StageRun, record: dict) -> None:
    with open(run.path(HISTORY_FILE), "a") as f:
        f.write(json.dumps(record) + "\n")
    if run.options.callback is not None:
        run.options.callback(record)


def _evaluate_and_save(run: StageRun, state: TrainState, loaders: dict) -> None:
    stage, data = run.stage, run.data
    for name, p in stage.top.named_parameters():
        _finite(state.step, f"weight {name}", p)  # best/ and last/ never hold a non-finite one
    results = evaluate_splits(stage.top, loaders, data.spec, data.padded_length,
                              EvalMode(pruning=stage.pruning), run.options.device, progress=False)
    summary = dict(split_summary(results, data.spec.name, stage.config.select_by),
                   step=state.step, kind="eval", splits=results)
    _log(run, summary)
    state.last = {"score": summary["score"], "step": state.step, "results": results}
    extra = dict(run.meta, step=state.step, results=results)
    started = state.best is not None  # an evaluation has qualified (the release: sticky)
    if stage.eligible(summary, started) and (not started or summary["score"] > state.best["score"]):
        state.best = dict(state.last)
        stage.top.save_pretrained(run.path("best"), run.tokenizer, extra)
        logger.info("step %d: new best %.4f", state.step, summary["score"])
    trainer_state = {**dataclasses.asdict(state),
                     "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
                     "schedulers": {k: s.state_dict() for k, s in stage.schedulers.items()},
                     "modules": {k: m.state_dict() for k, m in stage.modules().items()},
                     "rng": {name: get() for name, (get, _) in _RNGS.items()}}
    stage.top.save_pretrained(run.path("last"), run.tokenizer, extra,
                              files={STATE_FILE: trainer_state})
    discard_replaced(run.output_dir)


def _restore(run: StageRun) -> TrainState:
    stage = run.stage
    saved = load_torch_file(run.path("last", STATE_FILE), "resume", "the run cannot "
                            "continue from it: pass --overwrite to train again, or restore it",
                            weights_only=False)
    loaded = ToPModel.from_pretrained(run.path("last"), prune=stage.top.prune)
    stage.top.load_state_dict(loaded.state_dict())
    for group, objects in (("optimizers", stage.optimizers), ("schedulers", stage.schedulers),
                           ("modules", stage.modules())):
        for k, obj in objects.items():
            obj.load_state_dict(saved[group][k])
    for name, (_, restore) in _RNGS.items():
        restore(saved["rng"][name])
    logger.info("resumed %s at step %d", run.output_dir, saved["step"])
    return TrainState(**{f.name: saved[f.name] for f in dataclasses.fields(TrainState)})


def _finish(run: StageRun, state: TrainState, wall: float) -> dict:
    if state.best is None:  # no evaluation met the sparsity target: keep the last one
        logger.warning("no evaluation reached the target sparsity; best/ holds the last model")
        with atomic_directory(run.path("best")) as tmp:
            shutil.copytree(run.path("last"), tmp, ignore=shutil.ignore_patterns(STATE_FILE),
                            dirs_exist_ok=True)
        state.best = dict(state.last, target_missed=True)
    results = dict(run.meta, best=state.best, wall_time_s=wall, steps=state.step)
    write_results(run.output_dir, results)
    return results


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


_RNGS = {"python": (random.getstate, random.setstate),  # every generator a run depends on
         "numpy": (np.random.get_state, np.random.set_state),
         "torch": (torch.get_rng_state, torch.set_rng_state)}
