"""The run folder: one writer, whole checkpoints, nothing clobbered, resumes that match.

``output_dir`` holds::

    .toplib.lock    the PID of the run writing here (a dead holder's lock is taken over)
    best/ last/     whole checkpoints; last/ also holds trainer_state.pt
    history.jsonl, results.json, teacher_targets.pt
    .replaced/      the run ``overwrite`` replaces, kept until the new run's first checkpoint
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator

import torch

from ..hf.model import read_meta
from .identity import check_same_run
from .records import HISTORY_FILE, RESULTS_FILE, trim_history
from .teacher import TARGETS_FILE

logger = logging.getLogger(__name__)
LOCK_FILE = ".toplib.lock"
REPLACED = ".replaced"
STATE_FILE = "trainer_state.pt"
CHECKPOINTS = ("best", "last")
RUN_ENTRIES = (*CHECKPOINTS, HISTORY_FILE, RESULTS_FILE, TARGETS_FILE)
"""What a run writes in its folder (beside the lock and ``.replaced/``): all toplib touches."""


class RunFolderBusy(RuntimeError):
    """Another live process writes to the run folder."""


@contextlib.contextmanager
def open_run(output_dir: str, options, identity: dict,
             checkpoint_bytes: int | None = None) -> Iterator[bool]:
    """Check, lock and tidy ``output_dir`` before any model loads; yields True when it resumes
    (``identity`` must then match the saved run's)."""
    check_output_dir(output_dir, checkpoint_bytes)
    check_inputs_outside(output_dir, identity)
    with _locked(output_dir):
        _recover_swaps(output_dir)
        remove_temporaries(output_dir)
        yield _prepare(output_dir, options, identity)


def check_output_dir(output_dir: str, checkpoint_bytes: int | None = None) -> None:
    """A ValueError unless ``output_dir`` is a writable folder (or none yet) with room."""
    path = os.path.abspath(output_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"output_dir={output_dir!r} is a file; pass a folder (new or a run's)")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir={output_dir!r} cannot be written: {existing!r} is not "
                         "writable by this user; choose another --output-dir")
    free = shutil.disk_usage(existing).free
    if checkpoint_bytes is not None and free < checkpoint_bytes:
        raise ValueError(f"output_dir={output_dir!r}: {free / 2**20:.0f} MiB free on its file "
                         f"system, a checkpoint needs about {checkpoint_bytes / 2**20:.0f} MiB; "
                         "free space or choose another --output-dir")


def check_inputs_outside(output_dir: str, identity: dict) -> None:
    """A ValueError when an input of the run lies inside ``output_dir``, which it may replace."""
    out = os.path.realpath(output_dir)
    inputs = {k: identity.get(k) for k in ("model", "teacher")}
    inputs.update((k, v) for k, v in identity.get("data", {}).items() if isinstance(v, str))
    for name, path in inputs.items():
        if isinstance(path, str) and os.path.exists(path):
            real = os.path.realpath(path)
            if real == out or real.startswith(out + os.sep):
                raise ValueError(f"{name}={path!r} lies inside output_dir={output_dir!r}, "
                                 "which this run would replace; move it out or choose "
                                 "another --output-dir")


def checkpoint_bytes(model_dir: str | None) -> int | None:
    """About one ``last/`` checkpoint's bytes: weights, two optimiser moments (None: no folder)."""
    if model_dir is None or not os.path.isdir(model_dir):
        return None
    weights = sum(os.path.getsize(p) for pattern in ("*.safetensors", "*.bin")
                  for p in glob.glob(os.path.join(model_dir, pattern)))
    return 3 * weights + 2**24


@contextlib.contextmanager
def _locked(output_dir: str) -> Iterator[None]:
    """Hold ``output_dir/.toplib.lock`` inside the block."""
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(output_dir, exist_ok=True)
        _take_lock(path, output_dir)
    except OSError as err:
        raise ValueError(f"output_dir={output_dir!r} cannot be written ({err.strerror}: "
                         f"{err.filename}); choose another --output-dir") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if _lock_holder(path).get("pid") == os.getpid():
                os.remove(path)


def _take_lock(path: str, output_dir: str) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            old = _lock_holder(path)
            if old.get("host") == holder["host"] and _alive(old.get("pid")):
                raise RunFolderBusy(
                    f"output_dir={output_dir!r} is in use by another toplib run (PID "
                    f"{old['pid']}); wait for it to finish or choose another --output-dir"
                ) from None
            logger.warning("taking over the stale lock of %s (PID %s is not running)",
                           output_dir, old.get("pid"))
            os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
        return


def _lock_holder(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}  # unreadable: torn by a kill, so its writer is gone


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False  # this process holds no lock outside a run: one left here is stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover_swaps(output_dir: str) -> None:
    """Put back a checkpoint a kill left in ``.<name>.old-*/ckpt`` mid-swap."""
    for name in CHECKPOINTS:
        target = os.path.join(output_dir, name)
        for old in sorted(glob.glob(os.path.join(output_dir, f".{name}.old-*", "ckpt"))):
            if not os.path.exists(target):
                os.replace(old, target)
                logger.warning("%s: restored %s/ from an interrupted checkpoint swap",
                               output_dir, name)


def remove_temporaries(output_dir: str) -> None:
    """Remove the ``.tmp-`` and ``.old-`` entries interrupted writes left."""
    for entry in os.listdir(output_dir):
        if ".tmp-" in entry or ".old-" in entry:
            path = os.path.join(output_dir, entry)
            logger.info("removing %s, left by an interrupted write", path)
            (shutil.rmtree if os.path.isdir(path) else os.remove)(path)


def _prepare(output_dir: str, options, identity: dict) -> bool:
    """True: resume the saved run; False: start afresh in a folder emptied of old runs.

    Only :data:`RUN_ENTRIES` are moved or deleted; ``resume`` deletes only an attempt that
    never saved a checkpoint, and restores a run an interrupted ``overwrite`` put aside."""
    saved = os.path.join(output_dir, "last")
    if options.resume and os.path.exists(os.path.join(saved, STATE_FILE)):
        meta = read_meta(saved)
        check_same_run(meta, identity, options.accept_config_change, saved)
        trim_history(output_dir, saved_step(output_dir))
        return True
    # the teacher's cached targets stay: keyed, they are reused or recomputed (train.teacher)
    entries = [e for e in os.listdir(output_dir) if e not in (LOCK_FILE, REPLACED, TARGETS_FILE)]
    _refuse_foreign(output_dir, entries)
    if options.resume and os.path.isdir(os.path.join(output_dir, REPLACED)):
        _restore_replaced(output_dir, entries)
        return _prepare(output_dir, options, identity)
    if options.resume:
        finished = sorted(set(entries) & {RESULTS_FILE, "last"})
        if finished:
            raise ValueError(f"resume: output_dir={output_dir!r} holds a run with no resumable "
                             f"state (no last/{STATE_FILE}) but with {finished}; nothing was "
                             "deleted: pass overwrite=True (--overwrite) to replace it, or "
                             "choose another --output-dir")
        logger.warning("resume: no saved state in %s, starting afresh", output_dir)
        _discard(output_dir, entries)  # an attempt that never completed a checkpoint
    elif entries and not options.overwrite:
        raise ValueError(f"output_dir={output_dir!r} already holds a run ({sorted(entries)}); "
                         "pass resume=True (--resume) to continue it or overwrite=True "
                         "(--overwrite) to replace it")
    elif entries:
        _move_aside(output_dir, entries)
    return False


def _refuse_foreign(output_dir: str, entries: list[str]) -> None:
    """A ValueError when ``output_dir`` holds entries no toplib run writes."""
    foreign = sorted(e for e in entries if e not in RUN_ENTRIES)
    if foreign:
        raise ValueError(f"output_dir={output_dir!r} holds files that no toplib run writes "
                         f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
                         "toplib never moves or deletes them: choose another --output-dir")


def _restore_replaced(output_dir: str, entries: list[str]) -> None:
    """Undo an ``overwrite`` interrupted before its first checkpoint."""
    aside = os.path.join(output_dir, REPLACED)
    _discard(output_dir, entries)
    for entry in os.listdir(aside):
        os.replace(os.path.join(aside, entry), os.path.join(output_dir, entry))
    os.rmdir(aside)
    logger.warning("resume: %s held the run an interrupted --overwrite had put aside in %s/; "
                   "it is back in place", output_dir, REPLACED)


def _discard(output_dir: str, entries: list[str]) -> None:
    for entry in entries:
        path = os.path.join(output_dir, entry)
        (shutil.rmtree if os.path.isdir(path) else os.remove)(path)


def _move_aside(output_dir: str, entries: list[str]) -> None:
    """Move the run being replaced into ``.replaced/`` (on a name clash the older one stays)."""
    aside = os.path.join(output_dir, REPLACED)
    os.makedirs(aside, exist_ok=True)
    for entry in entries:
        if os.path.exists(os.path.join(aside, entry)):
            _discard(output_dir, [entry])
        else:
            os.replace(os.path.join(output_dir, entry), os.path.join(aside, entry))
    logger.info("overwrite: the previous run in %s is kept in %s/ until the new run's first "
                "checkpoint", output_dir, REPLACED)


def discard_replaced(output_dir: str) -> None:
    """Delete the replaced run once the new one has a checkpoint."""
    aside = os.path.join(output_dir, REPLACED)
    if os.path.isdir(aside):
        shutil.rmtree(aside)
        logger.info("overwrite: removed the previous run of %s", output_dir)


def saved_step(output_dir: str) -> int | None:
    """The step of the state saved in ``output_dir/last`` (None: nothing to resume)."""
    last = os.path.join(output_dir, "last")
    if not os.path.exists(os.path.join(last, STATE_FILE)):
        return None
    if "step" in (meta := read_meta(last)):
        return meta["step"]
    return torch.load(os.path.join(last, STATE_FILE), map_location="cpu",
                      weights_only=False)["step"]
