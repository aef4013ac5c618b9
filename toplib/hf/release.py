"""Convert the authors' released ToP checkpoints (microsoft/Moonlit, ``ToP/``) to toplib ones.
Their pickled ``l0_module.pt`` is read through an allow-list (:data:`ALLOWED_GLOBALS`)."""
from __future__ import annotations

import _compat_pickle
import collections
import logging
import math
import os
import pickle
import types

import torch
from safetensors.torch import load_file  # a dependency of transformers
from transformers import AutoConfig, BertForSequenceClassification

from ..core.config import PruneConfig, is_finite
from ..core.gates import BETA, GAMMA, GATE_CLOSED, GATE_OPEN, ZETA, deterministic_gates
from .checkpoint import CheckpointError, read_json, reading, verify_checkpoint, weights_file
from .loading import load_tokenizer
from .model import ToPModel

logger = logging.getLogger(__name__)

ZS_FILE, L0_FILE = "zs.pt", "l0_module.pt"
WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")
RELEASE_SEQ_LENGTH = 256  # the release evaluates every task padded to 256 (run_Evaluation.sh)
HINT = "pass the folder of a released ToP checkpoint (config.json, weights, zs.pt/l0_module.pt)"


class _Record:
    """Inert stand-in for the L0 module's ``BertConfig``; ``BUILD`` hands it the pickled state."""

    state = None

    def __setstate__(self, state):
        self.state = state


class _L0Record(_Record):
    """Stands in for ``models.l0_module.L0ModuleForMAC`` (the release's ``--use_mac_l0``)."""


_REBUILD = ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")
ALLOWED_GLOBALS = {
    **{("torch._utils", name): getattr(torch._utils, name) for name in _REBUILD},  # tensors
    ("collections", "OrderedDict"): collections.OrderedDict,  # nn.Module hook dicts
    ("builtins", "set"): set,  # nn.Module._non_persistent_buffers_set (protocol 2)
    ("models.l0_module", "L0ModuleForMAC"): _L0Record,
    ("transformers.models.bert.configuration_bert", "BertConfig"): _Record,
}
"""(module, name) -> what a global of the release's pickle resolves to; torch dtypes pass too."""


def _release_pickle(path: str) -> types.ModuleType:
    """A pickle module for ``torch.load`` resolving only :data:`ALLOWED_GLOBALS`."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            # Protocol 2 writes Python 2's names (__builtin__.eval): map them as pickle does.
            key = (_compat_pickle.NAME_MAPPING.get((module, name))
                   or (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
            if key in ALLOWED_GLOBALS:
                return ALLOWED_GLOBALS[key]
            found = vars(torch).get(key[1]) if key[0] == "torch" else None  # no lazy import
            if isinstance(found, torch.dtype):
                return found
            raise CheckpointError(
                f"src: {path!r} references the global {'.'.join(key)}, which no ToP release "
                "pickles; refusing to load it (a pickle's globals can run code). Allowed: "
                f"{', '.join('.'.join(k) for k in ALLOWED_GLOBALS)} and torch dtypes")

    module = types.ModuleType("toplib_release_pickle")
    module.Unpickler = Unpickler
    module.load = lambda file, **kwargs: Unpickler(file, **kwargs).load()
    return module


def _reading(path: str):
    """:func:`~toplib.hf.checkpoint.reading` for a release file."""
    return reading(path, "src", advice="download the release again")


def _check_folder(src: str) -> None:
    if not os.path.isdir(src):
        what = "is a file" if os.path.exists(src) else "does not exist"
        raise CheckpointError(f"src={src!r} {what}; {HINT}")


def _gates_file(src: str) -> str:
    """``zs.pt`` when present, else ``l0_module.pt``."""
    found = weights_file(src, (ZS_FILE, L0_FILE))
    if found is None:
        raise CheckpointError(f"src={src!r} holds no gates: neither {ZS_FILE} nor {L0_FILE} "
                              f"(found {sorted(os.listdir(src))[:8]}); {HINT}")
    return found


def _log_alpha(state: dict, kind: str, path: str) -> torch.Tensor:
    """The 'token' or 'pruner' log-alphas, ``z_logas[kind]``."""
    found = (state.get("z_logas") or {}).get(kind)
    if not isinstance(found, torch.Tensor):
        raise CheckpointError(f"src: {path!r} holds no {kind} log-alphas (z_logas[{kind!r}]): "
                              "not a token-pruning L0ModuleForMAC")
    return found.detach().float()


def _temperature_shift(temperature, path: str) -> float:
    """Log-alpha shift giving at BETA the P(z > 0) = 1 - sigmoid(T c - a), c = log(x / (1 - x)),
    of the module's temperature T; a shift keeps the order in which gates close."""
    if not (is_finite(temperature) and temperature > 0):
        raise CheckpointError(f"src: {path!r} holds temperature={temperature!r}; expected > 0")
    x = -GAMMA / (ZETA - GAMMA)
    return (BETA - float(temperature)) * math.log(x / (1 - x))


def _gates_from_l0(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's ``forward(training=False)``: per row, k = round(size - sum P(z > 0))
    gates with the smallest sigmoid(a / T * 0.8) close; a token row is one prune layer's
    bins, and each pruner gate is a row of its own (size 1, open iff P(z > 0) >= 0.5)."""
    with _reading(path):
        obj = torch.load(path, map_location="cpu", weights_only=False,
                         pickle_module=_release_pickle(path))
    if not isinstance(obj, _L0Record) or not isinstance(obj.state, dict):
        raise CheckpointError(f"src: {path!r} holds a {type(obj).__name__}, not the "
                              "release's pickled L0ModuleForMAC")
    state = obj.state
    token, pruner = _log_alpha(state, "token", path), _log_alpha(state, "pruner", path)
    bin_num = state.get("bin_num", token.shape[-1])
    if token.ndim != 2 or bin_num != token.shape[-1] or pruner.ndim != 1:
        raise CheckpointError(f"src: {path!r}: log-alphas of shapes {tuple(token.shape)} and "
                              f"{tuple(pruner.shape)} do not fit bin_num={bin_num!r}")
    shift = _temperature_shift(state.get("temperature", BETA), path)
    if any(len(row.unique()) < len(row) for row in token):  # e.g. several at a clamp bound
        logger.warning("%s: tied log-alphas; the release's topk may close other tied gates "
                       "than toplib's order does (zs.pt, when present, is exact)", path)
    return deterministic_gates(token + shift), deterministic_gates((pruner + shift)[:, None])[:, 0]


def _gates_from_zs(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``zs.pt``: {"token_z": (n, BIN_NUM), "pruner_z": (n,)}."""
    with _reading(path):
        zs = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(zs, dict) and all(isinstance(zs.get(k), torch.Tensor)
                                         for k in ("token_z", "pruner_z"))):
        raise CheckpointError(f"src: {path!r} is not the release's {ZS_FILE}: expected a dict "
                              "of tensors token_z and pruner_z")
    return zs["token_z"].float(), zs["pruner_z"].float()


def read_release_gates(src: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation gates of a release folder: ``zs.pt``, else rebuilt from ``l0_module.pt``.

    Returns (token_z (n, bin_num), pruner_z (n,)) of 0/1 floats; raises CheckpointError.
    """
    _check_folder(str(src))
    path = _gates_file(str(src))
    token_z, pruner_z = (_gates_from_zs if path.endswith(ZS_FILE) else _gates_from_l0)(path)
    if not (token_z.ndim == 2 and pruner_z.ndim == 1 and token_z.numel() > 0
            and token_z.shape[0] == pruner_z.shape[0]):
        raise CheckpointError(f"src: {path!r}: token gates {tuple(token_z.shape)} and pruner "
                              f"gates {tuple(pruner_z.shape)} disagree; expected (n, BIN_NUM) "
                              "and (n,), n >= 1")
    if not all(bool(((z == 0) | (z == 1)).all()) for z in (token_z, pruner_z)):
        raise CheckpointError(f"src: {path!r}: the gates are not all 0 or 1")
    return token_z, pruner_z


def _read_config(src: str):
    """The release's BERT config."""
    _check_folder(src)
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"src={src!r} holds no config.json; {HINT}")
    model_type = read_json(path, "src").get("model_type")
    if model_type != "bert":
        raise CheckpointError(f"src: {path!r} has model_type {model_type!r}; the ToP release "
                              "prunes BERT (model_type 'bert') only")
    with _reading(path):
        config = AutoConfig.from_pretrained(src)
    # The release's distillation switched these on: every pass would keep all attentions.
    config.output_attentions = config.output_hidden_states = False
    return config


def _load_weights(src: str, config) -> BertForSequenceClassification:
    """The classifier with the release's weights; extra keys are ignored, missing ones raise."""
    path = weights_file(src, WEIGHT_FILES)
    if path is None:
        raise CheckpointError(f"src={src!r} holds no weights ({' or '.join(WEIGHT_FILES)}); "
                              f"found {sorted(os.listdir(src))[:8]}")
    with _reading(path):
        if path.endswith(".safetensors"):
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model = BertForSequenceClassification(config).eval()
        missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise CheckpointError(f"src: {path!r} lacks {len(missing)} weight(s) the model needs, "
                              f"e.g. {missing[:3]}")
    if unexpected:
        logger.info("ignoring %d extra weight(s) of the release: %s", len(unexpected),
                    unexpected[:3])
    return model


def _wrap(model: BertForSequenceClassification, token_z: torch.Tensor,
          pruner_z: torch.Tensor) -> ToPModel:
    """A ToPModel pruning at the last n layers, ranking as the release, with its exact gates."""
    layers, n = model.config.num_hidden_layers, token_z.shape[0]
    prune = PruneConfig(prune_location=tuple(range(layers - n, layers)),
                        bin_num=int(token_z.shape[1]), importance_rows="all",
                        bin_rounding="release")
    top = ToPModel(model, prune).eval()
    with torch.no_grad():  # +-10: far enough out that toplib's rule gives exactly these
        top.gates.bin_log_alpha.copy_(torch.where(token_z > 0, GATE_OPEN, GATE_CLOSED))
        top.gates.pruner_log_alpha.copy_(torch.where(pruner_z > 0, GATE_OPEN, GATE_CLOSED))
    z_bins, z_pruner = top.gates(training=False)
    if not (torch.equal(z_bins, token_z) and torch.equal(z_pruner, pruner_z)):
        raise CheckpointError(f"the release's {n} x {token_z.shape[1]} gates cannot be set "
                              "as toplib gates")
    return top


def convert_release(src: str, out: str, task: str | None = None,
                    overwrite: bool = False) -> str:
    """Write a released ToP checkpoint as a toplib one (stage 'prune', evaluated padded to
    256 as the release); returns the absolute path of ``out``.

    ``task``: default the config's ``finetuning_task``, needed under transformers >= 5.
    Raises CheckpointError for a missing, damaged or inconsistent file of ``src``.
    """
    src, out = str(src), str(out)
    config = _read_config(src)
    task = task or getattr(config, "finetuning_task", None)
    if not task:
        raise CheckpointError(f"src: {os.path.join(src, 'config.json')!r} names no "
                              "finetuning_task (transformers >= 5 does not keep it); pass the "
                              "task: task=... (--task), e.g. --task sst2")
    token_z, pruner_z = read_release_gates(src)
    n, layers = token_z.shape[0], config.num_hidden_layers
    if n > layers - 1:  # layer 0's input is never pruned
        raise CheckpointError(f"src={src!r}: its gates prune {n} layers of {layers}; ToP "
                              f"prunes the inputs of layers 1..{layers - 1} at most")
    empty = os.path.isdir(out) and not os.listdir(out)
    if os.path.abspath(out) == os.path.abspath(src) or (os.path.exists(out) and not empty
                                                        and not overwrite):
        raise CheckpointError(f"out={out!r} exists (or is src); choose another folder or "
                              "pass overwrite (--overwrite)")
    tokenizer = load_tokenizer(src, "src")
    top = _wrap(_load_weights(src, config), token_z, pruner_z)
    run = {"max_seq_length": RELEASE_SEQ_LENGTH, "pad_to_max_length": True,
           "prune": top.prune.to_dict()}  # TrainConfig fields; the others take defaults
    top.save_pretrained(out, tokenizer, {
        "stage": "prune", "task": task, "config": run,
        "max_seq_length": RELEASE_SEQ_LENGTH, "converted_from": os.path.abspath(src),
        "release_gates": os.path.basename(_gates_file(src))})
    verify_checkpoint(out, "out")
    return os.path.abspath(out)
