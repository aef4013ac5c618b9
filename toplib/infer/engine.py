"""Inference that removes pruned tokens, so later layers compute on fewer tokens.

The encoder loop training uses (:func:`toplib.hf.encoder.run_layers`) gathers pruned tokens
out under the evaluation gates, and padding is never computed: the batch is trimmed to its
longest input and re-padded to its longest survivor after each prune; ``predict`` batches
by length. Results are within float rounding of the masked path.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..core.config import check
from ..core.flops import schedule_for_sparsity
from ..core.gates import schedule_gates
from ..core.importance import kept_counts, score_dtype
from ..data import pad_examples, real_lengths
from ..hf.encoder import TokenRun, classify, encoder_of, no_section, run_layers
from ..hf.model import check_sequence_length
from ..hf.precision import cast_model

logger = logging.getLogger(__name__)


@dataclass
class DropOutput:
    """Result of :func:`prune_forward`: logits (B, C) in the model's dtype; kept (B, N) long
    (on the host), the real tokens entering each layer's attention."""

    logits: torch.Tensor
    kept: torch.Tensor


def eval_keep_table(top, pruning: bool = True) -> dict[int, torch.Tensor]:
    """{layer: (bin_num,) bool bins kept} under the eval gates, leaving out locations that keep
    every token; ``pruning=False``: {}."""
    return _keep_tables(top, pruning)[0]


def keep_plan(top, pruning: bool = True) -> tuple:
    """:func:`eval_keep_table` on the host, hashable: ((layer, (bool,) * bin_num), ...)."""
    return _keep_tables(top, pruning)[1]


def _keep_tables(top, pruning: bool):
    if not pruning:
        return {}, ()
    gates = top.gates
    # The tables only change when the gates do; in-place updates (optimiser steps,
    # load_state_dict, fill_) bump a tensor's version, so (pointer, version) keys them.
    key = tuple((t.data_ptr(), t._version) for t in (gates.bin_log_alpha, gates.pruner_log_alpha))
    cached = getattr(gates, "_toplib_keep_table", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    kept = gates.kept_bins()
    table = {layer: kept[p] for p, layer in enumerate(top.prune.prune_location)
             if not bool(kept[p].all())}
    plan = tuple((layer, tuple(bins.tolist())) for layer, bins in table.items())
    gates._toplib_keep_table = (key, (table, plan))
    return table, plan


@functools.lru_cache(maxsize=8192)
def _planned_counts(length: int, plan: tuple, num_layers: int, bin_num: int,
                    eps: float, dtype: torch.dtype) -> tuple[int, ...]:
    """Tokens entering each layer for one input of ``length`` tokens under ``plan``."""
    if not plan:
        return (length,) * num_layers
    keep = torch.tensor([bins for _, bins in plan])
    return tuple(kept_counts(torch.tensor([length]), keep, [layer for layer, _ in plan],
                             num_layers, bin_num, eps, dtype)[0].tolist())


def plan_counts(top, lengths: torch.Tensor, pruning: bool = True) -> torch.Tensor:
    """(B, N) host tensor of the tokens each input keeps per layer under the eval gates, from
    the (B,) ``lengths`` alone: a dropping pass knows every shape before it starts."""
    plan, n = keep_plan(top, pruning), top.dims.num_layers
    dtype = score_dtype(top.model.dtype)  # what the pass ranks in: bins round alike
    return torch.tensor([_planned_counts(length, plan, n, top.prune.bin_num, top.prune.bin_eps,
                                         dtype) for length in lengths.tolist()], dtype=torch.long)


def check_right_padded(mask: torch.Tensor) -> None:
    """Raise unless the (B, n) ``attention_mask`` is right-padded with [CLS] at position 0."""
    mask = mask.bool()
    if not bool(mask[:, 0].all()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("attention_mask must be right-padded with [CLS] at position 0")


@torch.inference_mode()
def prune_forward(top, input_ids, attention_mask, token_type_ids=None, *, pruning: bool = True,
                  fast_attention: bool = True, timer=None) -> DropOutput:
    """Classify with pruned tokens removed (eval gates), in the model's dtype; inputs (B, n),
    right-padded, [CLS] first. The mask is the one read-back: later shapes are planned on the
    host. ``pruning=False``: dense on real lengths; ``fast_attention=False``: eager attention
    everywhere; ``timer``: a ``section(name, rows=None)`` context factory (``SectionTimer``).
    Raises RuntimeError in training mode.
    """
    if top.model.training:
        raise RuntimeError("prune_forward is inference only: call top.eval() first")
    section = timer or no_section
    mask = attention_mask.cpu()  # the one read-back of the pass
    check_right_padded(mask)
    with section("gates"):
        lengths = mask.sum(-1)
        counts = plan_counts(top, lengths, pruning)
        table = dict(keep_plan(top, pruning))
    width = int(lengths.max())  # never compute on padding
    input_ids, attention_mask = input_ids[:, :width], attention_mask[:, :width]
    if token_type_ids is not None:
        token_type_ids = token_type_ids[:, :width]
    with section("embeddings"):
        hidden = top.model.base_model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    # importance over "all" rows (the release) averages the rows still here: dropped tokens
    # and padding are gone, unlike the release's masked evaluation (docs/departures.md)
    run = TokenRun(alive=attention_mask.bool(), prune_at=table, bin_num=top.prune.bin_num,
                   drop=True, fast_attention=fast_attention, section=section, counts=counts,
                   importance_rows=top.prune.importance_rows, bin_eps=top.prune.bin_eps)
    hidden = run_layers(encoder_of(top.model).layer, hidden, run)
    with section("head"):
        logits = classify(top.model, hidden[:, :1])
    return DropOutput(logits=logits, kept=counts)


@dataclass
class Predictions:
    """Result of :func:`predict`, in the input order: logits (E, C), kept (E, N), lengths (E,)."""

    logits: torch.Tensor
    kept: torch.Tensor
    lengths: torch.Tensor


def length_batches(examples: list[dict], batch_size: int, pad_id: int):
    """(generator of padded batches, longest first; the permutation back to input order)."""
    check("examples", f"{len(examples)} examples", len(examples) > 0, "give at least one")
    check("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1,
          "an integer >= 1")
    order = torch.argsort(real_lengths(examples), descending=True, stable=True)
    ranked = [examples[j] for j in order.tolist()]
    batches = (pad_examples(ranked[start:start + batch_size], pad_id)
               for start in range(0, len(ranked), batch_size))
    return batches, torch.argsort(order)


def predict(top, examples: list[dict], batch_size: int = 64, progress: bool = False,
            dtype=None, **kwargs) -> Predictions:
    """:func:`prune_forward` over encoded examples in batches of similar length, in input
    order. ``dtype`` ("bfloat16", "float16" on CUDA; None: the model's) runs on a cached
    inference copy (:func:`toplib.hf.precision.cast_model`), float32 logits back; for the
    float32 copy (stacked query-key-value), pass ``inference_copy(top)`` as ``top``."""
    batches, inverse = length_batches(examples, batch_size, top.config.pad_token_id or 0)
    lengths = real_lengths(examples)
    check_sequence_length(int(lengths.max()), top.config, "the longest example's length")
    top = cast_model(top.eval(), dtype)
    outs = [prune_forward(top, b["input_ids"], b["attention_mask"], b.get("token_type_ids"),
                          **kwargs)
            for b in tqdm(batches, desc="predict", leave=False, disable=not progress,
                          total=-(-len(examples) // batch_size))]
    return Predictions(logits=torch.cat([o.logits for o in outs]).float()[inverse],
                       kept=torch.cat([o.kept for o in outs])[inverse], lengths=lengths)


# ---- gates for a target FLOPs sparsity (benchmarks, baselines, the explorer) ---------
def set_eval_sparsity(top, lengths: torch.Tensor, target: float) -> float:
    """Set the gates so the real-length FLOPs sparsity on (E,) ``lengths`` is closest to
    ``target`` in [0, 1); returns the sparsity achieved."""
    closed, achieved = schedule_for_sparsity(lengths, top.dims, top.prune.prune_location,
                                             top.prune.bin_num, target)
    top.gates.close_lowest_bins_(closed)
    logger.info("gates set: closed bins per location %s, sparsity %.3f (target %.3f)",
                closed, achieved, target)
    return achieved


def gates_for_sparsity(top, lengths: torch.Tensor, target: float):
    """((z_bins, z_pruner) evaluation gates at ``target`` on ``lengths``, sparsity achieved);
    the model's own gates are left as they are."""
    closed, achieved = schedule_for_sparsity(lengths, top.dims, top.prune.prune_location,
                                             top.prune.bin_num, target)
    device = top.gates.bin_log_alpha.device
    return tuple(z.to(device) for z in schedule_gates(closed, top.prune.bin_num)), achieved
