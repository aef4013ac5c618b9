"""The teacher's outputs computed once (``toplib.train.teacher``): equal to the live
teacher's, kept with the run, recomputed when what they depend on changes."""
from __future__ import annotations

import os

import pytest
import torch
from conftest import RUN

from toplib.core.ranking import rank_distillation_loss, top_tokens
from toplib.data import prepare_data
from toplib.hf.model import ToPModel, load_checkpoint
from toplib.train import prune
from toplib.train import teacher as teacher_mod
from toplib.train.config import build_train_config


@pytest.fixture
def setting(teacher_dir):
    config = build_train_config("rotten_tomatoes", None, RUN)
    teacher, tokenizer, _ = load_checkpoint(teacher_dir, name="teacher")
    data = prepare_data("rotten_tomatoes", tokenizer, config)
    return config, tokenizer, data, teacher


def test_cached_targets_equal_the_live_teachers(setting, tmp_path):
    config, tokenizer, data, teacher = setting
    cache = teacher_mod.teacher_targets(teacher, data.train, tokenizer, config, str(tmp_path),
                                        progress=False)
    assert cache.top.dtype == torch.int16 and cache.top.shape == (len(data.train), config.topk)
    last = teacher.dims.num_layers - 1
    for batch in data.train_loader(config, tokenizer, epoch=0):
        mask = batch["attention_mask"]
        with torch.no_grad():
            live = teacher(batch["input_ids"], mask, batch.get("token_type_ids"),
                           pruning=False, record_layers=(last,))
        logits, top = cache.batch(batch["index"], "cpu")
        torch.testing.assert_close(logits, live.logits, atol=1e-5, rtol=1e-5)
        want = top_tokens(live.importance[last], mask, config.topk)
        assert torch.equal(top[:, :want.shape[1]], want)
        student = torch.rand(mask.shape)
        for pad_lists in (False, True):
            torch.testing.assert_close(
                rank_distillation_loss(student, top, mask, config.topk, pad_lists=pad_lists),
                rank_distillation_loss(student, live.importance[last], mask, config.topk,
                                       pad_lists=pad_lists))


def test_targets_are_kept_and_recomputed_when_their_inputs_change(setting, tmp_path,
                                                                  monkeypatch):
    config, tokenizer, data, teacher = setting
    first = teacher_mod.teacher_targets(teacher, data.train, tokenizer, config, str(tmp_path),
                                        progress=False)
    assert os.path.exists(tmp_path / teacher_mod.TARGETS_FILE)
    computed = []
    real = teacher_mod.compute_targets
    monkeypatch.setattr(teacher_mod, "compute_targets",
                        lambda *a, **k: computed.append(1) or real(*a, **k))
    again = teacher_mod.teacher_targets(teacher, data.train, tokenizer, config, str(tmp_path),
                                        progress=False)
    assert not computed and torch.equal(again.top, first.top)  # read back
    shorter = [dict(e, input_ids=e["input_ids"][:5], attention_mask=e["attention_mask"][:5],
                    token_type_ids=e["token_type_ids"][:5]) for e in data.train]
    other_topk = build_train_config("rotten_tomatoes", None, dict(RUN, topk=5))
    with torch.no_grad():
        teacher.model.classifier.bias.add_(1.0)
    for examples, cfg in ((data.train, config), (shorter, config), (data.train, other_topk)):
        teacher_mod.teacher_targets(teacher, examples, tokenizer, cfg, str(tmp_path),
                                    progress=False)
    assert len(computed) == 3  # another teacher, max length, TOPK: each recomputed


def test_pruning_with_the_cache_trains_as_with_the_live_teacher(teacher_dir, tmp_path):
    runs = {}
    for cache in (True, False):
        config = build_train_config("rotten_tomatoes", None,
                                    dict(RUN, sparsity=0.3, cache_teacher=cache))
        out = tmp_path / str(cache)
        runs[cache] = prune("rotten_tomatoes", teacher_dir, str(out), config, progress=False)
        assert os.path.exists(out / teacher_mod.TARGETS_FILE) == cache
        runs[cache] = ToPModel.from_pretrained(str(out / "last")).state_dict()
    for name, value in runs[True].items():
        torch.testing.assert_close(value, runs[False][name], atol=1e-4, rtol=1e-4, msg=name)
