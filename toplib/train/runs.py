"""Training runs: teacher fine-tuning and ToP pruning, inputs checked before a model loads."""
from __future__ import annotations

import os

from transformers import AutoConfig

from ..data import DataFiles, get_task, prepare_data
from ..hf.model import (
    DEFAULT_MODEL,
    ToPModel,
    checkpoint_path,
    load_classifier,
    load_tokenizer,
    model_config,
    verify_checkpoint,
)
from .config import TrainConfig
from .evaluate import DENSE, check_task, checkpoint_data, evaluate_splits, mean_score
from .identity import run_identity
from .loop import RunOptions, StageRun, run_stage, set_seed
from .objectives import FinetuneStage, PruneStage, planned_steps
from .records import finished_run, read_history, read_results  # noqa: F401 - this API's
from .rundir import checkpoint_bytes, open_run
from .teacher import teacher_targets


def finetune(task: str, output_dir: str, model: str | None = None,
             config: TrainConfig | None = None, data: DataFiles | str | None = None,
             **options) -> dict:
    """Fine-tune the dense teacher (``model`` None: the offline MiniLM-L6); returns the
    run's results. ``options``: :class:`~toplib.train.loop.RunOptions` fields."""
    config, opts = config or TrainConfig(), RunOptions(**options)
    model_path, hf_config = model_config(model)
    check_task(task, config, hf_config)
    identity = run_identity("finetune", task, {"model": model or DEFAULT_MODEL}, config, data)
    with open_run(output_dir, opts, identity, checkpoint_bytes(model_path)) as resuming:
        set_seed(config.seed)
        tokenizer = load_tokenizer(model_path, hf_config=hf_config)
        split_data = prepare_data(task, tokenizer, config, data)
        planned_steps(config.finetune_epochs, split_data.steps_per_epoch(config), "finetune_epochs")
        top = ToPModel(load_classifier(model_path, split_data.spec), config.prune).to(opts.device)
        stage = FinetuneStage(top, config, split_data.steps_per_epoch(config))
        return run_stage(StageRun(stage, split_data, tokenizer, output_dir, identity, opts),
                         resuming)


def prune(task: str, teacher: str, output_dir: str, config: TrainConfig | None = None,
          data: DataFiles | str | None = None, **options) -> dict:
    """Train ToP from a fine-tuned teacher (run directory or saved classifier) towards
    ``config.sparsity``; best/ needs sparsity >= target - epsilon (``PruneStage.eligible``)."""
    config, opts = config or TrainConfig(), RunOptions(**options)
    teacher_dir = checkpoint_path(teacher)
    meta, name = verify_checkpoint(teacher_dir, "teacher"), f"teacher={teacher!r}"
    check_teacher(meta, teacher, task)
    hf_config = AutoConfig.from_pretrained(teacher_dir)
    check_task(task, config, hf_config, meta["labels"], name)
    identity = run_identity("prune", task, {"teacher": os.path.abspath(teacher_dir)}, config, data)
    with open_run(output_dir, opts, identity, checkpoint_bytes(teacher_dir)) as resuming:
        set_seed(config.seed)
        tokenizer = load_tokenizer(teacher_dir, "teacher", hf_config)
        split_data = checkpoint_data(task, tokenizer, config, data, meta["labels"], name)
        planned_steps(config.epochs, split_data.steps_per_epoch(config), "epochs")
        teacher_model = ToPModel.from_pretrained(teacher_dir, name="teacher", meta=meta)
        teacher_model = teacher_model.to(opts.device).eval()
        top = ToPModel.from_pretrained(teacher_dir, config.prune, "teacher", meta).to(opts.device)
        stage = PruneStage(top, teacher_model, config, split_data.steps_per_epoch(config))
        if config.cache_teacher:
            stage.targets = teacher_targets(stage.teacher, split_data.train, tokenizer, config,
                                            output_dir, opts.device, opts.progress)
        teacher_results = evaluate_splits(
            teacher_model, split_data.eval_loaders(config, tokenizer), split_data.spec,
            split_data.padded_length, DENSE, opts.device, opts.progress)
        identity.update(teacher_results=teacher_results, teacher_score=mean_score(teacher_results))
        return run_stage(StageRun(stage, split_data, tokenizer, output_dir, identity, opts),
                         resuming)


def check_teacher(meta: dict, teacher: str, task: str) -> None:
    """A ValueError for a pruned teacher or one fine-tuned on another task."""
    name = get_task(task).name
    if meta.get("stage") == "prune":
        raise ValueError(f"teacher={teacher!r} is a pruned checkpoint (stage 'prune'); the "
                         "teacher runs dense and would ignore its gates: pass the fine-tuned "
                         "teacher's run (`toplib finetune`)")
    if meta.get("task") not in (None, name):
        raise ValueError(f"teacher={teacher!r} was fine-tuned on task {meta['task']!r}, not "
                         f"{name!r}: fine-tune a teacher on {name!r} first")
