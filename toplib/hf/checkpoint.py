"""Checkpoint directories (HF model and tokenizer, ``toplib.json``, ``gates.pt``): written
whole, checked file by file before anything large loads."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import torch
from safetensors import safe_open  # a dependency of transformers
from transformers import AutoConfig, AutoModelForSequenceClassification

from ..core.config import PruneConfig
from ..core.gates import RankBinGates
from .encoder import check_supported


class CheckpointError(ValueError):
    """A checkpoint folder misses a file or holds a corrupt one."""


META_FILE = "toplib.json"
GATES_FILE = "gates.pt"
CONFIG_FILE = "config.json"
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
WEIGHTS = (SAFETENSORS, SAFETENSORS_INDEX, "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"),
             ("sentencepiece.bpe.model",), ("spiece.model",))
"""A tokenizer needs one of these; without, ``AutoTokenizer`` silently maps every word to [UNK]."""
HINT = "pass the output_dir of `toplib finetune`/`prune` or a saved classifier"


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yield a temporary directory that replaces ``path`` only if the block succeeds."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
        os.replace(path, os.path.join(old, "ckpt"))
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_path(path: str) -> str:
    """A run's output directory resolves to its ``best/`` checkpoint."""
    best = os.path.join(path, "best")
    return best if os.path.isdir(best) else path


@contextlib.contextmanager
def reading(file: str, name: str = "checkpoint",
            advice: str = "restore it or retrain the checkpoint"):
    """Turn any failure inside the block into a :class:`CheckpointError` naming ``file``."""
    try:
        yield
    except (CheckpointError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - loaders raise many kinds for a damaged file
        if "mismatched_sizes" in str(err) and (sizes := size_mismatches(file)):
            raise CheckpointError(
                f"{name}: config.json beside {file!r} does not describe its weights: "
                f"{'; '.join(sizes[:3])}{' ...' if len(sizes) > 3 else ''} (was config.json "
                "edited or copied from another model?): restore it") from err
        raise CheckpointError(f"{name}: {file!r} could not be loaded ({type(err).__name__}: "
                              f"{str(err)[:300]}); it is damaged, incomplete or of another "
                              f"model: {advice}") from err


def size_mismatches(weights: str) -> list[str]:
    """One line per tensor of a ``.safetensors`` file whose shape its config.json contradicts."""
    if not weights.endswith(".safetensors"):
        return []
    with torch.device("meta"):  # shapes only, nothing allocated
        model = AutoModelForSequenceClassification.from_config(
            AutoConfig.from_pretrained(os.path.dirname(weights)))
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(weights, "pt") as f:
        have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    return [f"{k}: {list(have[k])} in the weights, {list(want[k])} by config.json"
            for k in have if k in want and have[k] != want[k]]


def read_json(path: str, name: str = "checkpoint") -> dict:
    """A JSON object file, or a CheckpointError."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{name}: {path!r} is corrupt (not JSON: {err}); restore it or "
                              "retrain the checkpoint") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{name}: {path!r} is corrupt: expected a JSON object, found "
                              f"{type(value).__name__}")
    return value


def read_meta(path: str, name: str = "checkpoint") -> dict:
    """The ``toplib.json`` of a checkpoint directory ({} for a plain HF checkpoint)."""
    meta_path = os.path.join(path, META_FILE)
    return read_json(meta_path, name) if os.path.exists(meta_path) else {}


def verify_checkpoint(path: str, name: str = "checkpoint", tokenizer: bool = True) -> dict:
    """Check that ``path`` holds every file a checkpoint needs, whole, without loading weights.

    Returns:
        its ``toplib.json`` meta ({} for a plain HF checkpoint) with ``labels`` filled in.
    Raises:
        CheckpointError: naming the missing or corrupt file.
    """
    config = read_config(path, name)
    _check_weights(path, name)
    if tokenizer:
        check_tokenizer_files(path, name)
    meta = read_meta(path, name)
    gates_file = os.path.join(path, GATES_FILE)
    saved = saved_prune(meta, path, name)
    if not os.path.exists(gates_file):
        if meta.get("stage") == "prune":
            raise CheckpointError(f"{name}={path!r} is a pruned checkpoint ({META_FILE}: stage "
                                  f"'prune') without its {GATES_FILE}: its trained gates are "
                                  "lost, so it cannot prune; restore the file or prune again")
    elif saved is not None:
        with reading(os.path.join(path, META_FILE), name):
            resolved = saved.resolve(config.num_hidden_layers)
        expected = RankBinGates(len(resolved.prune_location), resolved.bin_num)
        check_gates(load_gates(gates_file, name), expected, gates_file, name)
    return dict(meta, labels=label_space(config))


def read_config(path: str, name: str = "checkpoint"):
    """The Hugging Face config of a model folder, checked to exist and be of a supported family."""
    if not os.path.exists(path):
        raise CheckpointError(f"{name}={path!r} does not exist; {HINT}")
    if not os.path.isdir(path):
        raise CheckpointError(f"{name}={path!r} is a file, not a checkpoint directory; {HINT}")
    files = sorted(os.listdir(path))
    if CONFIG_FILE not in files:
        hint = (" (a run directory without best/: pass its last/ or resume the run)"
                if "last" in files else "")
        raise CheckpointError(f"{name}={path!r} is not a checkpoint: it holds no {CONFIG_FILE} "
                              f"(found {files[:8]}){hint}; {HINT}")
    config_file = os.path.join(path, CONFIG_FILE)
    model_type = read_json(config_file, name).get("model_type")
    check_supported(model_type, f"{name}={path!r} ({CONFIG_FILE})")
    with reading(config_file, name):
        return AutoConfig.from_pretrained(path)


def weights_file(path: str, names: tuple[str, ...] = WEIGHTS) -> str | None:
    """The first of ``names`` (:data:`WEIGHTS`) in a folder, or None."""
    return next((os.path.join(path, f) for f in names if os.path.isfile(os.path.join(path, f))),
                None)


def _check_weights(path: str, name: str) -> None:
    """A weights file is there; safetensors headers cover their files."""
    found = weights_file(path)
    if found is None:
        raise CheckpointError(f"{name}={path!r} holds no weights file ({' or '.join(WEIGHTS)}); "
                              f"found {sorted(os.listdir(path))[:8]}")
    shards = [SAFETENSORS] if found.endswith(SAFETENSORS) else []
    if found.endswith(SAFETENSORS_INDEX):
        index = read_json(os.path.join(path, SAFETENSORS_INDEX), name)
        shards = sorted(set(index.get("weight_map", {}).values()))
    for shard in shards:
        file = os.path.join(path, shard)
        if not os.path.isfile(file):
            raise CheckpointError(f"{name}: {file!r}, a weights shard named in "
                                  f"{SAFETENSORS_INDEX}, is missing")
        with reading(file, name), safe_open(file, framework="pt") as f:
            f.keys()  # the header parsed and its tensors end where the file ends


def check_tokenizer_files(path: str, name: str = "checkpoint") -> None:
    """``path`` holds a tokenizer's vocabulary (one of :data:`TOKENIZER`)."""
    files = set(os.listdir(path))
    if not any(files.issuperset(group) for group in TOKENIZER):
        wanted = " or ".join("+".join(g) for g in TOKENIZER)
        raise CheckpointError(f"{name}={path!r} holds no tokenizer ({wanted}); save one into it "
                              "with tokenizer.save_pretrained, or copy the base model's")


def saved_prune(meta: dict, path: str, name: str = "checkpoint") -> PruneConfig | None:
    """The pruning structure recorded in a checkpoint's meta (None: none recorded)."""
    if "prune" not in meta:
        return None
    with reading(os.path.join(path, META_FILE), name):
        return PruneConfig(**meta["prune"])


def load_torch_file(path: str, name: str, advice: str, weights_only: bool = True):
    """``torch.load`` on the CPU; a damaged file becomes a CheckpointError (giving only the
    error's type: torch's text suggests weights_only=False, which would not help)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (OSError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{name}: {path!r} could not be loaded ({type(err).__name__}): "
                              f"it is not a whole torch.save file; {advice}") from err


def load_gates(path: str, name: str = "checkpoint") -> dict:
    """The state dict in a ``gates.pt``."""
    state = load_torch_file(path, name, "restore it or retrain the checkpoint")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{name}: {path!r} is corrupt: not a state dict of tensors")
    return state


def check_gates(state: dict, gates: torch.nn.Module, path: str, name: str = "checkpoint") -> None:
    """``state`` (from ``path``) has the tensors of ``gates``, in their shapes."""
    want = {k: tuple(v.shape) for k, v in gates.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if have != want:
        raise CheckpointError(f"{name}: {path!r} does not fit the pruning structure of its "
                              f"{META_FILE}: it holds {have}, the structure needs {want}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{name}: {path!r} holds non-finite gates ({', '.join(bad)} has "
                              "NaN or inf): its sparsity and predictions would be meaningless; "
                              "restore the file or retrain the checkpoint")


def label_space(hf_config) -> dict:
    """Problem type, number of labels and their names (None for HF's placeholders LABEL_0, ...).

    Example:
        >>> from transformers import BertConfig
        >>> label_space(BertConfig(id2label={0: "rotten", 1: "fresh"}))["label_names"]
        ['rotten', 'fresh']
    """
    num = hf_config.num_labels
    regression = hf_config.problem_type == "regression" or num == 1
    names = None if regression else [hf_config.id2label[i] for i in range(num)]
    if names == [f"LABEL_{i}" for i in range(num)]:
        names = None
    return {"problem_type": "regression" if regression else "classification",
            "num_labels": num, "label_names": names}
