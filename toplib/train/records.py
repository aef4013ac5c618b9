"""A run's records: ``history.jsonl`` (appended as training goes) and ``results.json``."""
from __future__ import annotations

import contextlib
import json
import logging
import os

from .identity import run_differences

logger = logging.getLogger(__name__)
HISTORY_FILE = "history.jsonl"
RESULTS_FILE = "results.json"


def _records(path: str) -> list[dict]:
    """The readable lines of a history file; a torn line is dropped."""
    records, torn = [], 0
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                torn += 1
    if torn:
        logger.warning("%s: dropped %d unreadable line(s), cut short by an interruption",
                       path, torn)
    return records


def trim_history(output_dir: str, step: int | None) -> None:
    """Keep the history lines up to the saved ``step`` (all of them when None)."""
    path = os.path.join(output_dir, HISTORY_FILE)
    if os.path.exists(path):
        kept = [r for r in _records(path) if step is None or r["step"] <= step]
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def read_results(run_dir: str) -> dict:
    """The ``results.json`` of a finished run, its input paths absolute again."""
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"run_dir={run_dir!r} holds no {RESULTS_FILE}: the run has not "
                                "finished (resume it with resume=True)")
    with open(path) as f:
        return absolute_inputs(json.load(f), run_dir)


def write_results(run_dir: str, results: dict) -> None:
    write_atomic(os.path.join(run_dir, RESULTS_FILE),
                 json.dumps(relative_inputs(results, run_dir), indent=2))


def relative_inputs(record: dict, folder: str) -> dict:
    """``record`` with its input paths relative to ``folder`` (so each starts with ``..``),
    so that a committed record names no machine's folders; hub names stay."""
    return _map_inputs(record, lambda p: os.path.relpath(os.path.abspath(p), folder)
                       if os.path.isabs(p) or os.path.exists(p) else p)


def absolute_inputs(record: dict, folder: str) -> dict:
    """The inverse of :func:`relative_inputs`."""
    return _map_inputs(record, lambda p: os.path.normpath(os.path.join(
        os.path.abspath(folder), p)) if p.startswith(os.pardir + os.sep) else p)


def _map_inputs(record: dict, fn) -> dict:
    out = {k: fn(v) if k in ("teacher", "model") and isinstance(v, str) else v
           for k, v in record.items()}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: fn(v) if k.endswith(("_dir", "_file")) and isinstance(v, str) else v
                       for k, v in out["data"].items()}
    return out


def read_history(run_dir: str) -> list[dict]:
    """The records of a training run's ``history.jsonl``."""
    return _records(os.path.join(run_dir, HISTORY_FILE))


def finished_run(output_dir: str, overwrite: bool = False, config=None) -> dict | None:
    """The results of a finished run in ``output_dir``, or None (always with ``overwrite``);
    given the ``config`` (TrainConfig) a reuse stands for, a ValueError where the run was
    trained with other settings (a changed preset would otherwise report the old run); the
    teacher's knobs (``finetune_*``) do not count against a pruning run."""
    if overwrite or not os.path.exists(os.path.join(output_dir, RESULTS_FILE)):
        return None
    results = read_results(output_dir)
    differ = [] if config is None else run_differences(results, {"config": config.to_dict()})
    if differ := [d for d in differ if not (results.get("stage") == "prune"
                                            and d.startswith("finetune_"))]:
        raise ValueError(f"output_dir={output_dir!r} holds a finished run of other settings "
                         f"({'; '.join(differ)}); choose another output directory or overwrite it")
    logger.info("reusing the finished run in %s", output_dir)
    return results
