"""Command line: ``toplib finetune | prune | evaluate | quickstart | bench``.

The training knobs' flags are generated from the configuration fields' metadata
(``toplib.core.config.knob``): ``--name`` and the release's ``--PAPER_NAME``, the field's
help, and ``--x/--no-x`` for switches. Every error exits non-zero.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from .core.config import PruneConfig, parse_layers
from .train.config import TrainConfig
from .train.presets import PRESETS

LAYER_KNOBS = ("prune_location", "rank_distill_layers")  # parsed from '2-11' or '2,3,5'


def _knob_fields() -> list[dataclasses.Field]:
    return [f for cls in (TrainConfig, PruneConfig) for f in dataclasses.fields(cls)
            if "help" in f.metadata]


def _flag_type(f: dataclasses.Field):
    kind = str(f.type).split("|")[0].strip()
    return str if f.name in LAYER_KNOBS else {"int": int, "float": float}[kind]


def _add_knobs(p: argparse.ArgumentParser) -> None:
    """One flag per knob, default None (the preset's value)."""
    for f in _knob_fields():
        flags = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.metadata['paper']}"]
                                                     if f.metadata["paper"] else [])
        if str(f.type) == "bool":
            p.add_argument(*flags, dest=f.name, default=None,
                           action=argparse.BooleanOptionalAction, help=f.metadata["help"])
        else:
            p.add_argument(*flags, dest=f.name, type=_flag_type(f), default=None,
                           help=f.metadata["help"])


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
    _add_knobs(p)


def _train_config(args) -> TrainConfig:
    from .train.presets import build_train_config
    overrides = {f.name: getattr(args, f.name) for f in _knob_fields()}
    for name in LAYER_KNOBS:
        overrides[name] = parse_layers(overrides[name], name)
    return build_train_config(args.task, args.preset, overrides)


def _data(args):
    from .data import DataFiles
    return DataFiles(args.data_dir, args.train_file, args.validation_file)


def _run_options(args) -> dict:
    return dict(resume=args.resume, overwrite=args.overwrite, device=args.device,
                progress=not args.quiet)


def cmd_finetune(args) -> dict:
    from .train import finetune
    return finetune(args.task, args.output_dir, args.model, _train_config(args), _data(args),
                    **_run_options(args))


def cmd_prune(args) -> dict:
    from .train import prune
    return prune(args.task, args.teacher, args.output_dir, _train_config(args), _data(args),
                 **_run_options(args))


def cmd_evaluate(args) -> dict:
    from .train.evaluate import evaluate_checkpoint, summarize
    results = evaluate_checkpoint(args.checkpoint, args.task, _data(args), args.device,
                                  not args.quiet, args.max_eval_samples)
    print(json.dumps(results, indent=2) if args.json else summarize(results))
    return results


def cmd_quickstart(args) -> dict:
    from .train.pipeline import quickstart
    return quickstart(args.output_dir, sparsity=args.sparsity, resume=args.resume,
                      device=args.device, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toplib", description=__doc__.split("\n")[0])
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

    from .bench import register_cli
    register_cli(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2: bad input, 1: another failure)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse's own errors (exit 2) and --help (exit 0)
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"toplib {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a clear line and a non-zero status, then the trace
        logging.getLogger("toplib").exception("toplib %s failed", args.command)
        print(f"toplib {args.command}: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
