"""Exact token dropping in training (``TokenRun.compact``): the same loss and gradients as
the masked path, with fewer tokens through the layers.

Why a tolerance at all: the compacted pass sums over fewer (zero) terms in attention, the
importance means and the GEMMs, so results differ by summation order only, a few ulps of
the values summed: ~1e-15 relative in float64 (asserted at 1e-10), ~1e-7 in float32
(asserted at 1e-5). Dropout is off: its draws depend on the tensor shapes, so with dropout
the two paths are equal in distribution, not per draw.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import padded_batch, tiny_classifier

from toplib.core.config import PruneConfig
from toplib.core.ranking import rank_distillation_loss
from toplib.hf.encoder import TokenRun
from toplib.hf.model import ToPModel
from toplib.train.config import TrainConfig

LENGTHS = (16, 11, 6, 16)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _model(family: str, dtype: torch.dtype) -> ToPModel:
    prune = PruneConfig(prune_location=(1, 2, 3), bin_num=4, rank_distill_layers=(0, 1, 2))
    top = ToPModel(tiny_classifier(family), prune).to(dtype).train()
    with torch.no_grad():  # bin 0 open, bins 1-2 sampled around the clamp, bin 3 shut
        top.gates.bin_log_alpha.copy_(torch.tensor([4.0, 0.0, -1.5, -8.0]).expand(3, 4))
        top.gates.pruner_log_alpha.fill_(4.0)
    return top


def _step(top: ToPModel, drop: bool, ids, mask, teacher_logits, teacher_importance,
          seed: int = 3):
    """Loss of one ToP step (distillation + ranking; every gate in the graph) and the
    gradients of every weight and gate; the FFN widths the pass ran."""
    top.drop_pruned = drop
    top.zero_grad()
    widths = []
    hooks = [layer.intermediate.register_forward_pre_hook(
        lambda _m, args: widths.append(args[0].shape[1]))
        for layer in top.model.base_model.encoder.layer]
    torch.manual_seed(seed)  # the same gate samples for both paths
    out = top(ids, mask, record_layers=top.prune.rank_distill_layers)
    for h in hooks:
        h.remove()
    loss = F.kl_div(F.log_softmax(out.logits, -1), F.softmax(teacher_logits, -1),
                    reduction="batchmean")
    loss = loss + sum(rank_distillation_loss(out.importance[layer], teacher_importance, mask, 5)
                      for layer in top.prune.rank_distill_layers)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in top.named_parameters() if p.grad is not None}
    return loss.detach(), grads, out, widths


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dropping_equals_masking(family, dtype):
    top = _model(family, dtype)
    ids, mask = padded_batch(top.config, LENGTHS, max(LENGTHS))
    gen = torch.Generator().manual_seed(7)
    teacher_logits = torch.randn(len(LENGTHS), 3, generator=gen, dtype=dtype)
    teacher_importance = torch.rand(ids.shape, generator=gen, dtype=dtype)
    tol = TOLERANCE[dtype]
    loss_m, grads_m, out_m, widths_m = _step(top, False, ids, mask, teacher_logits,
                                             teacher_importance)
    loss_d, grads_d, out_d, widths_d = _step(top, True, ids, mask, teacher_logits,
                                             teacher_importance)
    # the case is not trivial: real tokens had keep exactly 0, and the FFNs ran on fewer
    pruned = (out_m.alive[:, -1] == 0) & (mask > 0)
    assert pruned.sum() >= 4
    # (layer l-1's FFN runs after the gathering for prune location l)
    assert widths_m == [max(LENGTHS)] * 4
    assert widths_d == sorted(widths_d, reverse=True) and widths_d[0] < max(LENGTHS)
    torch.testing.assert_close(loss_d, loss_m, rtol=tol, atol=tol)
    torch.testing.assert_close(out_d.alive, out_m.alive, rtol=0, atol=0)  # same masks
    for layer, imp in out_m.importance.items():
        torch.testing.assert_close(out_d.importance[layer], imp, rtol=tol, atol=tol)
    assert grads_d.keys() == grads_m.keys()
    assert {"gates.bin_log_alpha", "gates.pruner_log_alpha"} <= grads_m.keys()
    assert grads_m["gates.bin_log_alpha"].abs().sum() > 0
    for name, g in grads_m.items():
        torch.testing.assert_close(grads_d[name], g, rtol=tol, atol=tol, msg=name)


def test_dropping_only_in_training_with_gates():
    top = _model("bert", torch.float32)
    top.drop_pruned = True
    ids, mask = padded_batch(top.config, LENGTHS, max(LENGTHS))
    assert top.token_run(mask).compact
    assert not top.token_run(mask, pruning=False).compact  # dense: nothing to drop
    top.eval()
    assert not top.token_run(mask).compact  # evaluation keeps its own (0/1 masked) pass


def test_dropping_refuses_what_it_would_change():
    alive = torch.ones(2, 5)
    for bad in (dict(release_training=True), dict(importance_rows="all"), dict(drop=True)):
        with pytest.raises(ValueError, match="compact=True"):
            TokenRun(alive=alive, compact=True, **bad)
    for bad in (dict(training_forward="release"), dict(prune=dict(importance_rows="all"))):
        with pytest.raises(ValueError, match="--no-drop-tokens"):
            TrainConfig(**bad)
        TrainConfig(drop_tokens=False, cache_teacher=False, **bad)  # the masked path serves
