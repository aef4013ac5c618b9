"""ToPModel: a patched Hugging Face classifier plus its rank-bin gates, saved and loaded as a
checkpoint directory (:mod:`toplib.hf.checkpoint`); a plain HF checkpoint loads with fresh gates.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from ..core.config import PruneConfig
from ..core.flops import EncoderDims, expected_sparsity
from ..core.gates import RankBinGates, prob_nonzero
from .checkpoint import (  # noqa: F401 - re-exported: the checkpoint directory's API
    GATES_FILE,
    META_FILE,
    CheckpointError,
    atomic_directory,
    check_gates,
    checkpoint_path,
    label_space,
    load_gates,
    read_meta,
    reading,
    saved_prune,
    verify_checkpoint,
    weights_file,
)
from .encoder import TokenRun, apply_patch, encoder_of
from .loading import (  # noqa: F401 - re-exported: callers import them from here
    DEFAULT_MODEL,
    check_model_type,
    check_sequence_length,
    load_classifier,
    load_tokenizer,
    looks_like_path,
    model_config,
    resolve_model_path,
)


# ---- the model --------------------------------------------------------------------------
@dataclass
class ToPOutput:
    """logits (B, C); alive (B, N, n): tokens entering each layer; importance {layer: (B, n)}."""

    logits: torch.Tensor
    alive: torch.Tensor
    importance: dict[int, torch.Tensor]


class ToPModel(nn.Module):
    """Token pruning around a BERT/RoBERTa sequence classifier.

    ``model`` is patched in place; ``prune``'s depth-dependent defaults are resolved here.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> hf = BertForSequenceClassification(BertConfig(num_hidden_layers=4))
        >>> top = ToPModel(hf, PruneConfig(bin_num=10))
        >>> top.prune.prune_location
        (1, 2, 3)
    """

    def __init__(self, model: nn.Module, prune: PruneConfig | None = None):
        super().__init__()
        self.model = apply_patch(model)
        self.dims = EncoderDims.from_config(model.config)
        self.prune = (prune or PruneConfig()).resolve(self.dims.num_layers)
        self.gates = RankBinGates(len(self.prune.prune_location), self.prune.bin_num,
                                  self.prune.droprate_init)
        self.release_forward = False  # train with the release's masked pass (TokenRun)
        self.drop_pruned = False  # training gathers out tokens whose keep is 0 (TokenRun.compact)

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids, attention_mask, token_type_ids=None, *, pruning: bool = True,
                record_layers=(), gates: tuple[torch.Tensor, torch.Tensor] | None = None,
                random_ranking: bool = False) -> ToPOutput:
        """The classifier on (B, n) inputs; ``pruning`` False: dense. ``gates``: (z_bins,
        z_pruner) instead of the model's own; ``random_ranking``: a random-ranking baseline."""
        run = self.token_run(attention_mask, pruning, gates, record_layers, random_ranking)
        with self.attached(run):
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).logits
        return ToPOutput(logits=logits, alive=torch.stack(run.alive_per_layer, dim=1),
                         importance=run.importance)

    def token_run(self, attention_mask, pruning: bool = True, gates=None, record_layers=(),
                  random_ranking: bool = False) -> TokenRun:
        """A masked :class:`~toplib.hf.encoder.TokenRun` under the gates (sampled in training,
        0/1 in evaluation) or ``gates``; ``release_forward`` selects the release's pass."""
        prune_at = {}
        if pruning:  # a dense pass draws no gate samples: the random streams stay put
            z_bins, z_pruner = gates if gates is not None else self.gates()
            prune_at = {loc: (z_bins[p], z_pruner[p])
                        for p, loc in enumerate(self.prune.prune_location)}
        real = attention_mask.to(self.model.dtype)
        all_rows = self.prune.importance_rows == "all"
        return TokenRun(alive=real, prune_at=prune_at, bin_num=self.prune.bin_num,
                        bin_eps=self.prune.bin_eps,
                        record_layers=frozenset(record_layers), random_ranking=random_ranking,
                        importance_rows=self.prune.importance_rows, real=real,
                        release_training=self.release_forward and self.training,
                        zero_pruned=self.training or not all_rows,
                        compact=self.drop_pruned and self.training and bool(prune_at))

    @contextlib.contextmanager
    def attached(self, run: TokenRun):
        """Run the HF model's forward passes under ``run`` inside the block (its outputs,
        e.g. ``output_hidden_states``, pruned)."""
        encoder = encoder_of(self.model)
        encoder._top_run = run
        try:
            yield run
        finally:
            encoder._top_run = None

    def expected_sparsity(self, lengths: torch.Tensor, binned: bool = True,
                          mean_of_ratios: bool = False) -> torch.Tensor:
        """Differentiable expected FLOPs sparsity of (B,) real lengths (the release's:
        ``binned=False, mean_of_ratios=True``)."""
        g = self.gates
        return expected_sparsity(lengths, prob_nonzero(g.bin_log_alpha),
                                 prob_nonzero(g.pruner_log_alpha), self.prune.prune_location,
                                 self.dims, binned, mean_of_ratios)

    # ---- persistence -------------------------------------------------------------------
    def save_pretrained(self, path: str, tokenizer=None, extra: dict | None = None,
                        files: dict | None = None) -> None:
        """Write the checkpoint atomically; ``files``: {name: object} also ``torch.save``-d
        into it; ``extra`` goes into ``toplib.json``."""
        with atomic_directory(path) as tmp:
            for name, obj in (files or {}).items():
                torch.save(obj, os.path.join(tmp, name))
            self.model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            torch.save(self.gates.state_dict(), os.path.join(tmp, GATES_FILE))
            meta = {"prune": self.prune.to_dict(), **(extra or {}),
                    "labels": label_space(self.config)}
            with open(os.path.join(tmp, META_FILE), "w") as f:
                json.dump(meta, f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str, prune: PruneConfig | None = None, name: str = "checkpoint",
                        meta: dict | None = None, **hf_kwargs) -> ToPModel:
        """Load a toplib checkpoint (folder checked first, unless ``meta``: what
        ``verify_checkpoint`` returned for it), or wrap a plain HF one with fresh gates;
        ``prune`` None: the saved structure, its gates loaded too."""
        path = str(path)
        if meta is None and (os.path.isdir(path) or looks_like_path(path)):
            meta = verify_checkpoint(path, name, tokenizer=False)
        elif meta is None:
            check_model_type(path, name)  # a hub name: reachable, of a family toplib patches
            meta = {}
        saved = saved_prune(meta, path, name)
        with reading(weights_file(path) or path, name):
            hf = AutoModelForSequenceClassification.from_pretrained(
                path, attn_implementation="eager", **hf_kwargs)
        top = cls(hf, saved if prune is None else prune)
        gates_file = os.path.join(path, GATES_FILE)
        if saved is not None and (prune is None or prune == saved) and os.path.exists(gates_file):
            top.gates.load_state_dict(load_gates(gates_file, name))  # its shapes verified
        return top


# ---- loading ----------------------------------------------------------------------------
def plain_classifier(top, attn_implementation: str = "sdpa") -> nn.Module:
    """An unpatched copy of a ToPModel's HF classifier, on its device, in eval mode."""
    dense = AutoModelForSequenceClassification.from_config(
        copy.deepcopy(top.config), attn_implementation=attn_implementation)
    dense.load_state_dict(top.model.state_dict())
    return dense.to(next(top.parameters()).device).eval()


def load_checkpoint(checkpoint: str, prune: PruneConfig | None = None, device: str = "cpu",
                    name: str = "checkpoint", meta: dict | None = None, **hf_kwargs):
    """(ToPModel in eval mode, tokenizer, meta with ``labels``) of a checkpoint or a run
    directory (its ``best/``), every file checked first (``meta``: already checked, what
    ``verify_checkpoint`` returned); raises CheckpointError."""
    path = checkpoint_path(str(checkpoint))
    meta = verify_checkpoint(path, name) if meta is None else meta
    top = ToPModel.from_pretrained(path, prune, name, meta, **hf_kwargs).to(device).eval()
    return top, load_tokenizer(path, name, top.config), meta
