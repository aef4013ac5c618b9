"""``toplib.viz.gradients``: the weights' gradient from each term of the ToP loss, taken from
the stage's own loss, against the same gradients computed here term by term."""
from __future__ import annotations

import pytest
import torch
from conftest import padded_batch, tiny_classifier

from toplib.core.config import PruneConfig
from toplib.core.ranking import rank_distillation_loss
from toplib.hf.model import ToPModel
from toplib.train.config import TrainConfig
from toplib.train.objectives import PruneStage, distillation_loss
from toplib.viz.gradients import term_gradient_norms

PRUNE = dict(prune_location=(2, 3), rank_distill_layers=(1,), bin_num=4)


def _stage(alpha: float = 1e-3):
    torch.manual_seed(0)
    teacher = ToPModel(tiny_classifier("bert", seed=0), PruneConfig(**PRUNE)).eval()
    student = ToPModel(tiny_classifier("bert", seed=0), PruneConfig(**PRUNE))
    with torch.no_grad():  # a student that differs from its teacher, and gates that prune
        for p in student.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        student.gates.bin_log_alpha.copy_(torch.tensor([[5.0, 5.0, -5.0, -5.0]] * 2))
        student.gates.pruner_log_alpha.fill_(5.0)
    config = TrainConfig(distill_rank_loss_alpha=alpha, topk=4, prune=PruneConfig(**PRUNE),
                         drop_tokens=False)
    ids, mask = padded_batch(student.config)
    batch = dict(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 2]))
    return PruneStage(student, teacher, config, steps_per_epoch=4), batch


def _by_hand(stage, batch):
    """|grad fit| and |grad rank| w.r.t. the student's weights, each loss written out here."""
    top, teacher, cfg = stage.top, stage.teacher, stage.config
    ids, mask = batch["input_ids"], batch["attention_mask"]
    last = teacher.dims.num_layers - 1
    with torch.no_grad():
        ref = teacher(ids, mask, pruning=False, record_layers=(last,))
    out = top(ids, mask, record_layers=top.prune.rank_distill_layers)
    fit = distillation_loss(out.logits, ref.logits, cfg.distill_temperature)
    rank = rank_distillation_loss(out.importance[1], ref.importance[last], mask, cfg.topk)
    weights = [p for p in top.model.parameters() if p.requires_grad]
    norms = []
    for loss in (fit, rank):
        grads = torch.autograd.grad(loss, weights, retain_graph=True, allow_unused=True)
        norms.append(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None))))
    return norms


def test_term_gradients_are_those_of_each_loss_term():
    stage, batch = _stage()
    got = term_gradient_norms(stage, batch, training=False)  # evaluation gates: deterministic
    fit, rank = _by_hand(stage, batch)
    assert fit > 0 and rank > 0
    assert got["fit"] == pytest.approx(fit, rel=1e-4) and got["rank"] == pytest.approx(rank, rel=1e-3)
    assert stage.config.distill_rank_loss_alpha == 1e-3  # the stage is left as it was


def test_training_mode_draws_the_same_samples_in_both_passes_and_keeps_the_rng():
    stage, batch = _stage()
    state = torch.get_rng_state()
    first = term_gradient_norms(stage, batch, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert term_gradient_norms(stage, batch, seed=3) == first  # one seed, one measurement
    assert first["fit"] > 0 and first["rank"] > 0
