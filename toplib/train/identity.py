"""What a run is (saved with every checkpoint), and whether a resume continues the same run."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os

from ..data import DataFiles, get_task, task_files
from .config import TrainConfig, config_differences

logger = logging.getLogger(__name__)
STRUCTURE = ("stage", "task", "model", "teacher", "prune.bin_num", "prune.prune_location")
"""What a resumed run can never change: the saved tensors would not fit the rest."""


def run_identity(stage: str, task: str, source: dict, config: TrainConfig, data) -> dict:
    """Stage, task, model or teacher, data (paths and fingerprints) and configuration."""
    files = {k: os.path.abspath(v) if k.endswith(("_dir", "_file")) and v else v
             for k, v in dataclasses.asdict(DataFiles.of(data)).items()}
    read = {k: v for k, v in files.items() if k.endswith("_file") and v and os.path.isfile(v)}
    if files["data_dir"] and not (files["train_file"] or files["validation_file"]):
        read = {f"data_dir_{s}": v for s, v in task_files(task, files["data_dir"]).items()}
    files.update({f"{k}_fingerprint": file_fingerprint(v) for k, v in read.items()})
    return {"stage": stage, "task": get_task(task).name, **source, "data": files,
            "config": config.to_dict()}


FINGERPRINT_CHUNK = 2**20  # bytes hashed at each end of a large file


def file_fingerprint(path: str) -> str:
    """``size:hash`` of a file's content (up to 2 MiB, else its first and last MiB).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile("w", delete=False) as f:
        ...     _ = f.write("text,label")
        >>> file_fingerprint(f.name)
        '10:537ef3eac87e91f31ac2c65a08bb6da7'
    """
    size = os.path.getsize(path)
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size <= 2 * FINGERPRINT_CHUNK:
            digest.update(f.read())
        else:
            digest.update(f.read(FINGERPRINT_CHUNK))
            f.seek(-FINGERPRINT_CHUNK, os.SEEK_END)
            digest.update(f.read())
    return f"{size}:{digest.hexdigest()}"


def _flat(values: dict, prefix: str = "") -> dict:
    """One level of names; config fields unprefixed, taking precedence over a derived entry
    of the same name (the meta's resolved ``max_seq_length``)."""
    nested = ("config", "prune", "data")
    out = {prefix + key: value for key, value in values.items()
           if not (isinstance(value, dict) and key in nested)}
    for key, value in values.items():
        if isinstance(value, dict) and key in nested:
            out.update(_flat(value, "" if key == "config" else f"{key}."))
    return out


def run_differences(saved: dict, identity: dict) -> list[str]:
    """``'name: saved -> now'`` for each entry both hold with different values."""
    differ = config_differences(_flat(saved), _flat(identity), shared_only=True)
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in differ.items()]


def check_same_run(saved: dict, identity: dict, accept: bool, where: str) -> None:
    """Refuse to resume with another configuration (``accept``: only log it, never for
    :data:`STRUCTURE`)."""
    diffs = run_differences(saved, identity)
    if not diffs:
        return
    fixed = [d for d in diffs if d.split(":")[0] in STRUCTURE]
    listed = "; ".join(diffs)
    if fixed or not accept:
        hint = ("these cannot change within a run" if fixed else
                "pass accept_config_change=True (--accept-config-change) to resume anyway")
        raise ValueError(f"resume: the run saved in {where!r} differs from this call: {listed}"
                         f"; {hint}, or use --overwrite / another --output-dir")
    logger.warning("resume: continuing %s with a changed configuration: %s", where, listed)


