"""Command line: ``toplib finetune | prune | evaluate | quickstart | bench``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .config import PRESETS, build_train_config, parse_layers

# (flag, paper name or None, type, help) of every training knob.
KNOBS = [
    ("sparsity", "SPARSITY", float, "target FLOPs sparsity (real length), in [0, 1)"),
    ("learning_rate", "LEARNING_RATE", float, "learning rate of the weights while pruning"),
    ("reg_learning_rate", "REG_LEARNING_RATE", float, "learning rate of gates and multipliers"),
    ("distill_rank_loss_alpha", "DISTILL_RANK_LOSS_ALPHA", float, "rank distillation weight"),
    ("bin_num", "BIN_NUM", int, "rank bins per prune layer"),
    ("topk", "TOPK", int, "teacher tokens ranked by the rank loss"),
    ("warmup_epochs", "WARMUP_EPOCHS", float, "epochs of linear sparsity warm-up"),
    ("epochs", "EPOCHS", float, "epochs of the pruning run"),
    ("prune_location", "PRUNE_LOCATION", str, "layers that receive pruned inputs, e.g. 2-11"),
    ("finetune_epochs", None, float, "epochs of teacher fine-tuning"),
    ("finetune_learning_rate", None, float, "learning rate of teacher fine-tuning"),
    ("batch_size", None, int, "training batch size"),
    ("eval_batch_size", None, int, "evaluation batch size"),
    ("max_seq_length", None, int, "truncation length (default: the task's)"),
    ("eval_steps", None, int, "evaluate every N steps (default: 4 per epoch)"),
    ("sparsity_epsilon", None, float, "best checkpoint needs sparsity >= target - epsilon"),
    ("fix_gates_epochs", None, float, "train the last N epochs on the fixed evaluation masks"),
    ("max_train_samples", None, int, "train on a seeded subset of this size"),
    ("max_eval_samples", None, int, "evaluate on the first N validation examples"),
    ("seed", None, int, "random seed"),
]
# (flag, help) of every on/off training switch: --name / --no-name (default: the preset's).
SWITCHES = [
    ("fix_pruners_after_warmup", "fix each layer's pruner gate on or off once the target is reached"),
    ("binned_expectation", "expected FLOPs count the bins each length fills (off: release formula)"),
    ("constrain_measured", "constrain the evaluation gates' sparsity (straight-through)"),
]


def _add_data_args(p: argparse.ArgumentParser, task_required: bool = True) -> None:
    p.add_argument("--task", required=task_required,
                   help="cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, 20news, rotten_tomatoes, custom")
    p.add_argument("--data-dir", help="a directory in the GLUE TSV layout (or the 20news TSVs)")
    p.add_argument("--train-file", help="CSV/TSV/JSON with text column(s) and `label`")
    p.add_argument("--validation-file", help="CSV/TSV/JSON with text column(s) and `label`")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", required=True)
    p.add_argument("--preset", choices=PRESETS, help="per-task defaults: the paper's, or quick (CPU)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    for name, paper, kind, text in KNOBS:
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{paper}"] if paper else [])
        p.add_argument(*flags, dest=name, type=kind, default=None, help=text)
    for name, text in SWITCHES:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                       action=argparse.BooleanOptionalAction, help=text)


def _train_config(args):
    overrides = {name: getattr(args, name) for name, *_ in KNOBS + SWITCHES}
    overrides["prune_location"] = parse_layers(overrides["prune_location"])
    return build_train_config(args.task, args.preset, overrides)


def _data_kwargs(args) -> dict:
    return dict(data_dir=args.data_dir, train_file=args.train_file,
                validation_file=args.validation_file)


def cmd_finetune(args) -> dict:
    from .train import finetune
    return finetune(args.task, args.output_dir, model=args.model, config=_train_config(args),
                    resume=args.resume, overwrite=args.overwrite, device=args.device,
                    progress=not args.quiet, **_data_kwargs(args))


def cmd_prune(args) -> dict:
    from .train import prune
    return prune(args.task, args.teacher, args.output_dir, config=_train_config(args),
                 resume=args.resume, overwrite=args.overwrite, device=args.device,
                 progress=not args.quiet, **_data_kwargs(args))


def cmd_evaluate(args) -> dict:
    from .evaluate import evaluate_checkpoint, summarize
    results = evaluate_checkpoint(args.checkpoint, task=args.task, device=args.device,
                                  progress=not args.quiet, max_eval_samples=args.max_eval_samples,
                                  **_data_kwargs(args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(summarize(results))
    return results


def cmd_quickstart(args) -> dict:
    from .pipeline import quickstart
    return quickstart(args.output_dir, sparsity=args.sparsity, resume=args.resume,
                      device=args.device, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toplib", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("finetune", help="fine-tune the dense teacher")
    _add_data_args(p)
    p.add_argument("--model", help="hub name or local path (default: offline MiniLM-L6)")
    _add_run_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("prune", help="train ToP from a teacher")
    _add_data_args(p)
    p.add_argument("--teacher", required=True, help="output dir of `toplib finetune`")
    _add_run_args(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("evaluate", help="metrics, FLOPs (two conventions), kept tokens")
    p.add_argument("checkpoint")
    _add_data_args(p, task_required=False)
    p.add_argument("--max-eval-samples", type=int)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("quickstart", help="teacher + ToP + evaluation on the offline default")
    p.add_argument("--output-dir", default="runs/rotten_tomatoes")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_quickstart)

    from . import bench
    if hasattr(bench, "register_cli"):
        bench.register_cli(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"toplib {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
