"""Command line: ``toplib finetune | prune | sweep | evaluate | quickstart | bench |
export | convert-release``; knob flags are generated from the fields' metadata."""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import signal
import sys
import threading
import traceback

from .core.config import add_knob_arguments, parse_layers
from .data import TASKS, DataFiles, get_task
from .hf.release import convert_release
from .search import format_trials, hyperparameter_search, read_trials
from .search.table import DIRECTIONS
from .train import TrainConfig, finetune, prune
from .train.config import KNOB_FIELDS, PRESETS, build_train_config
from .train.evaluate import evaluate_checkpoint, summarize

LAYER_KNOBS = ("prune_location", "rank_distill_layers", "fixed_schedule")  # '2-11', '2,3,5'


def _add_data_args(p: argparse.ArgumentParser, task_required: bool = True) -> None:
    p.add_argument("--task", required=task_required, help=", ".join(TASKS))
    add_knob_arguments(p, dataclasses.fields(DataFiles))  # --data-dir, --train-file, ...
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_run_parser(sub, name: str, summary: str, func, flag: str, **flag_options) -> None:
    """``finetune`` or ``prune``; ``flag``: the model or the teacher."""
    p = sub.add_parser(name, help=summary)
    _add_data_args(p)
    p.add_argument(flag, **flag_options)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--preset", choices=PRESETS,
                   help="per-task defaults: the paper's, or quick (CPU)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run (kept aside until the new one's first checkpoint)")
    p.add_argument("--accept-config-change", action="store_true",
                   help="--resume although knobs changed (never the pruning structure)")
    add_knob_arguments(p, KNOB_FIELDS, as_text=LAYER_KNOBS)  # default None: the preset's
    p.set_defaults(func=func)


def _overrides(args) -> dict:
    """The knob flags given (None: not given), layer lists parsed."""
    overrides = {f.name: getattr(args, f.name) for f in KNOB_FIELDS}
    overrides.update({name: parse_layers(overrides[name], name) for name in LAYER_KNOBS})
    return overrides


def _train_config(args) -> TrainConfig:
    return build_train_config(args.task, args.preset, _overrides(args))


def _data(args) -> DataFiles:
    return DataFiles(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DataFiles)})


def _run_options(args) -> dict:
    return dict(resume=args.resume, overwrite=args.overwrite, device=args.device,
                progress=not args.quiet, accept_config_change=args.accept_config_change)


def cmd_finetune(args) -> dict:
    return finetune(args.task, args.output_dir, args.model, _train_config(args), _data(args),
                    **_run_options(args))


def cmd_prune(args) -> dict:
    return prune(args.task, args.teacher, args.output_dir, _train_config(args), _data(args),
                 **_run_options(args))


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="prune at every point of a hyper-parameter grid "
                       "(the paper's: learning rate x reg. rate x rank-loss weight) on Ray Tune")
    p.add_argument("--task", required=True, help=", ".join(TASKS))
    add_knob_arguments(p, dataclasses.fields(DataFiles))  # --data-dir, --train-file, ...
    p.add_argument("--teacher", required=True, help="output dir of `toplib finetune` (finished)")
    p.add_argument("--output-dir", required=True,
                   help="the sweep's folder: trials/<name>/ runs, trials.md, Tune's state")
    p.add_argument("--grid", default="small",
                   help="paper (72 trials), small (4) or a JSON file {knob: [values, ...]}")
    p.add_argument("--preset", choices=PRESETS, default="quick",
                   help="per-task defaults under the knob flags and the grid")
    p.add_argument("--direction", choices=DIRECTIONS, default="maximize", help="of the score")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="also its torch threads")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="> 0: trials on CUDA")
    p.add_argument("--address", help="a running Ray cluster (default: a local one)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as CPUs allow)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="refuse to continue a sweep already in --output-dir")
    p.add_argument("--quiet", action="store_true", help="no Tune progress report")
    add_knob_arguments(p, KNOB_FIELDS, as_text=LAYER_KNOBS)  # every trial's, under the grid
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args):
    """Run (or resume) the sweep and print its table; an unfinished trial exits 1."""
    best = hyperparameter_search(
        args.task, args.teacher, args.output_dir, grid=args.grid, preset=args.preset,
        data=_data(args), overrides=_overrides(args), direction=args.direction,
        resources_per_trial={"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
        address=args.address, resume=args.resume, max_concurrent_trials=args.max_concurrent,
        progress=not args.quiet)
    rows = best.run_summary if best else read_trials(args.output_dir)
    print(format_trials(rows, args.direction))
    print(f"winner: {best.run_id} (score {best.objective:.4f}); its run: "
          f"{os.path.join(args.output_dir, 'trials', best.run_id)}" if best else
          "no winner: no finished trial met its sparsity target")
    unfinished = [r["trial"] for r in rows if r["status"] != "finished"]
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} of {len(rows)} trials did not finish "
                           f"({', '.join(unfinished)}); rerun the same command to resume them")
    return best


def cmd_evaluate(args) -> dict:
    results = evaluate_checkpoint(args.checkpoint, args.task, _data(args), args.device,
                                  not args.quiet, args.max_eval_samples, args.dtype)
    print(json.dumps(results, indent=2) if args.json else summarize(results))
    return results


def cmd_quickstart(args) -> dict:
    from .train.pipeline import quickstart
    return quickstart(args.output_dir, sparsity=args.sparsity, resume=args.resume,
                      device=args.device, progress=not args.quiet)


def cmd_convert_release(args) -> str:
    task = get_task(args.task).name if args.task else None  # checked before anything loads
    out = convert_release(args.src, args.out, task, overwrite=args.overwrite)
    print(f"wrote {out}; evaluate it with: toplib evaluate {out}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toplib", description=__doc__.split("\n")[0])
    _add_global_flags(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)

    _add_run_parser(sub, "finetune", "fine-tune the dense teacher", cmd_finetune, "--model",
                    help="hub name or local path (default: offline MiniLM-L6)")
    _add_run_parser(sub, "prune", "train ToP from a teacher", cmd_prune, "--teacher",
                    required=True, help="output dir of `toplib finetune`")
    _add_sweep_parser(sub)

    p = sub.add_parser("evaluate", help="metrics, FLOPs (two conventions), kept tokens")
    p.add_argument("checkpoint")
    _add_data_args(p, task_required=False)
    p.add_argument("--max-eval-samples", type=int)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="compute in this dtype (default: float32; float16 on CUDA only)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("quickstart", help="teacher + ToP + evaluation on the offline default")
    p.add_argument("--output-dir", default="runs/rotten_tomatoes")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("convert-release",
                       help="a released ToP checkpoint (microsoft/Moonlit) as a toplib one")
    p.add_argument("src", help="release folder: config.json, weights, zs.pt or l0_module.pt")
    p.add_argument("out", help="toplib checkpoint folder to write")
    p.add_argument("--task", help=f"task (default: config's finetuning_task); {', '.join(TASKS)}")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=cmd_convert_release)

    from .bench import register_cli
    register_cli(sub)
    from .export.cli import register_cli as register_export
    register_export(sub)
    for p in sub.choices.values():  # also after the command: `toplib evaluate x --debug`
        _add_global_flags(p, argparse.SUPPRESS)
    return parser


def _add_global_flags(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug logging")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="print the traceback of an error")


INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
"""Errors of what the user gave (exit 2); other OS errors are the machine's (exit 1)."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RUN_COMMANDS = ("finetune", "prune", "quickstart", "sweep")  # write an --output-dir, resume
RESUME_HINTS = {"sweep": "rerun the same command to continue"}


class _NoTracebackFormatter(logging.Formatter):
    """Log lines without the tracebacks of ``logger.exception`` (``--debug`` keeps them)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None  # also one cached
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _setup_logging(args) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter((logging.Formatter if args.debug else _NoTracebackFormatter)(LOG_FORMAT))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])


def main(argv=None) -> int:
    """Run the command line; exit status 2: bad input, 1: another failure, 130: interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse's own errors (exit 2) and --help (exit 0)
        return int(exit_.code or 0)
    _setup_logging(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # ends as Ctrl-C does
    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()  # "Loading weights" and the like
    try:
        args.func(args)
    except Exception as err:  # noqa: BLE001 - every failure: one clear line, no traceback
        print(f"toplib {args.command}: error: {_explain(err, args.command)}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return 2 if isinstance(err, INPUT_ERRORS) else 1
    except KeyboardInterrupt:
        hint = RESUME_HINTS.get(args.command, "rerun with --resume to continue")
        again = f"; {hint}" if args.command in RUN_COMMANDS else ""
        aside = os.path.join(getattr(args, "output_dir", None) or "", ".replaced")
        if args.command in RUN_COMMANDS and os.path.isdir(aside):
            again += (f"; the run being replaced is kept in {aside}/ until the new run's "
                      "first checkpoint: --resume brings it back, --overwrite replaces it")
        print(f"toplib {args.command}: interrupted{again}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return 130
    return 0


def _explain(err: Exception, command: str = "") -> str:
    """The message of an error; OS errors with their file and what to do."""
    if isinstance(err, KeyError):  # str() of a KeyError is the repr of its key
        return f"{err.args[0] if err.args else err}"
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}; {_os_advice(err, command)}"
    if isinstance(err, (*INPUT_ERRORS, OSError)):
        return str(err) or type(err).__name__
    return f"{type(err).__name__}: {err} (run with --debug for the traceback)"


def _os_advice(err: OSError, command: str) -> str:
    """What to do about an OS error, in the words of the command that met it."""
    elsewhere = {"bench": "another --json / --plot-dir path",
                 "evaluate": "a copy of the checkpoint on another disk"
                 }.get(command, "another --output-dir")
    advice = {errno.ENOSPC: f"free space or choose {elsewhere}",
              errno.EDQUOT: f"free space (disk quota exceeded) or choose {elsewhere}",
              errno.EACCES: f"check the permissions or choose {elsewhere}",
              errno.EPERM: f"check the permissions or choose {elsewhere}",
              errno.EROFS: f"the file system is read-only: choose {elsewhere}",
              errno.EISDIR: "give a file, not a folder",
              errno.ENOTDIR: "a part of the path is a file, not a folder"}
    rerun = " and rerun with --resume" if command in ("finetune", "prune") else ""
    return advice.get(err.errno, f"check the path{rerun}")


if __name__ == "__main__":
    sys.exit(main())
