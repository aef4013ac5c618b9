"""ToPModel and the encoder patch against the unpatched Hugging Face model."""
from __future__ import annotations

import copy
import os

import pytest
import torch
from conftest import REAL_LENGTHS, padded_batch, tiny_classifier
from transformers import (
    AutoModelForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from toplib import PruneConfig, ToPModel
from toplib.core.gates import LOG_ALPHA_MAX, LOG_ALPHA_MIN
from toplib.hf.encoder import ToPEncoderMixin, apply_patch, encoder_of
from toplib.hf.model import atomic_directory

BIN_NUM = 4
# Deterministic gates of a 4-layer model (prune locations 1, 2, 3): location 1 closes bins
# 2 and 3, location 2 has its pruner off, location 3 closes bin 3.
OPEN, SHUT = LOG_ALPHA_MAX, LOG_ALPHA_MIN
MIXED_BINS = [[OPEN, OPEN, SHUT, SHUT], [OPEN, SHUT, OPEN, OPEN], [OPEN, OPEN, OPEN, SHUT]]
MIXED_PRUNERS = [OPEN, SHUT, OPEN]


def reference_and_top(family: str, **prune):
    """(unpatched deep copy, ToPModel around the original), both in eval mode."""
    hf = tiny_classifier(family)
    reference = copy.deepcopy(hf)
    return reference, ToPModel(hf, PruneConfig(bin_num=BIN_NUM, **prune)).eval()


def set_gates(top: ToPModel, bins, pruners) -> None:
    with torch.no_grad():
        top.gates.bin_log_alpha.copy_(torch.as_tensor(bins, dtype=torch.float32))
        top.gates.pruner_log_alpha.copy_(torch.as_tensor(pruners, dtype=torch.float32))


def hand_importance(probs: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """(B, A, n, n), (B, n) -> (B, n): mean over heads and alive queries; 0 where dead."""
    out = torch.zeros(alive.shape)
    for b in range(alive.shape[0]):
        rows = alive[b].bool()
        out[b] = probs[b][:, rows, :].mean(dim=(0, 1)) * alive[b]
    return out


# ---- every gate open: exactly the Hugging Face model -----------------------------------
def test_open_gates_give_the_unpatched_logits(family):
    reference, top = reference_and_top(family)
    ids, mask = padded_batch(top.config)
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask).logits
        pruned = top(ids, mask)
        dense = top(ids, mask, pruning=False)
        plain = top.model(input_ids=ids, attention_mask=mask).logits  # patched, no state
    for got in (pruned.logits, dense.logits, plain):
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert torch.equal(pruned.alive, mask[:, None, :].float().expand(-1, 4, -1))


def test_patch_keeps_parameter_names_and_is_idempotent(family):
    reference, top = reference_and_top(family)
    assert list(top.model.state_dict()) == list(reference.state_dict())
    encoder_class = type(encoder_of(top.model))
    assert issubclass(encoder_class, ToPEncoderMixin)
    assert type(encoder_of(apply_patch(top.model))) is encoder_class


def test_recorded_importance_matches_hf_attentions(family):
    reference, top = reference_and_top(family)
    reference.set_attn_implementation("eager")
    ids, mask = padded_batch(top.config)
    with torch.no_grad():
        attentions = reference(input_ids=ids, attention_mask=mask,
                               output_attentions=True).attentions
        out = top(ids, mask, record_layers=(0, 1, 2, 3))
    assert sorted(out.importance) == [0, 1, 2, 3]
    for layer, probs in enumerate(attentions):
        want = hand_importance(probs, mask.float())
        assert torch.allclose(out.importance[layer], want, atol=1e-6), layer


# ---- [CLS] and padding ----------------------------------------------------------------
def test_cls_survives_and_padding_never_does_eval(family):
    _, top = reference_and_top(family)
    set_gates(top, torch.full((3, BIN_NUM), SHUT), torch.full((3,), OPEN))
    ids, mask = padded_batch(top.config)
    with torch.no_grad():
        out = top(ids, mask)
    only_cls = torch.zeros_like(mask, dtype=torch.float32)
    only_cls[:, 0] = 1
    assert torch.equal(out.alive[:, 0], mask.float())  # layer 0 sees every real token
    for layer in (1, 2, 3):
        assert torch.equal(out.alive[:, layer], only_cls), layer
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("bins, pruner", [(SHUT, OPEN), (-30.0, 30.0), (-30.0, 0.0)],
                         ids=["release bounds", "saturated", "bins shut, pruner sampled"])
def test_cls_survives_and_padding_never_does_training(family, bins, pruner):
    _, top = reference_and_top(family)
    top.train()
    set_gates(top, torch.full((3, BIN_NUM), bins), torch.full((3,), pruner))
    ids, mask = padded_batch(top.config)
    for seed in range(5):
        torch.manual_seed(seed)
        out = top(ids, mask)
        assert (out.alive[:, :, 0] == 1).all()
        assert (out.alive[mask[:, None, :].expand_as(out.alive) == 0] == 0).all()
        assert torch.isfinite(out.logits).all()
        if bins == -30.0:  # z_bins are exactly 0, so keep = 1 - z_pruner must be exactly 0/1
            assert set(out.alive.unique().tolist()) <= {0.0, 1.0}
        if pruner == 30.0:  # gates saturate: every sample closes every bin, pruner on
            assert (out.alive[:, 1:, 1:] == 0).all()


# ---- pruning decisions -----------------------------------------------------------------
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_pruned_tokens_stay_pruned(family, training):
    _, top = reference_and_top(family)
    set_gates(top, MIXED_BINS, MIXED_PRUNERS)
    top.train(training)
    ids, mask = padded_batch(top.config)
    with torch.set_grad_enabled(training):
        out = top(ids, mask)
    alive = out.alive.detach()
    assert (alive[:, 1:] <= alive[:, :-1]).all()  # non-increasing over layers
    dead = alive[:, :-1] == 0
    assert (alive[:, 1:][dead] == 0).all()  # once pruned, pruned for good
    if not training:
        assert (alive[:, -1].sum(-1) < alive[:, 0].sum(-1)).all()  # pruning happened


def hand_pruned_forward(reference, ids, n, z_bins, z_pruner, locations):
    """Run one example's real tokens through the unpatched layers, physically dropping the
    tokens each prune location discards; importance from Q K^T computed by hand."""
    base = reference.base_model
    hidden = base.embeddings(input_ids=ids[None, :n])
    kept_per_layer, probs = [], None
    positions = torch.arange(n)
    for layer_index, layer in enumerate(base.encoder.layer):
        if layer_index in locations:
            p = locations.index(layer_index)
            importance = probs.mean(dim=(0, 1, 2))  # (t,) over heads and queries
            order = sorted(range(1, len(positions)), key=lambda j: -float(importance[j]))
            m = len(order)
            keep = [0] + sorted(j for r, j in enumerate(order)
                                if not (z_pruner[p] == 1 and z_bins[p][r * BIN_NUM // m] == 0))
            hidden, positions = hidden[:, keep], positions[keep]
        kept_per_layer.append(positions)
        attn = layer.attention.self
        heads, size = attn.num_attention_heads, attn.attention_head_size
        q = attn.query(hidden).view(1, -1, heads, size).transpose(1, 2)
        k = attn.key(hidden).view(1, -1, heads, size).transpose(1, 2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / size ** 0.5, dim=-1)
        hidden = layer(hidden)
    if reference.config.model_type == "bert":
        return reference.classifier(base.pooler(hidden)), kept_per_layer
    return reference.classifier(hidden), kept_per_layer


def test_masked_pruning_equals_physically_dropping_tokens(family):
    reference, top = reference_and_top(family)
    set_gates(top, MIXED_BINS, MIXED_PRUNERS)
    ids, mask = padded_batch(top.config)
    with torch.no_grad():
        out = top(ids, mask)
        z_bins, z_pruner = top.gates()
        for b, n in enumerate(REAL_LENGTHS):
            logits, kept = hand_pruned_forward(reference, ids[b], n, z_bins, z_pruner,
                                               list(top.prune.prune_location))
            for layer, positions in enumerate(kept):
                assert out.alive[b, layer].nonzero().flatten().tolist() == positions.tolist()
            assert torch.allclose(out.logits[b], logits[0], atol=1e-5), b
    assert out.alive[:, -1].sum() < mask.sum()  # the example really prunes


def test_training_gradients_reach_gates_from_task_loss(family):
    _, top = reference_and_top(family)
    set_gates(top, torch.zeros(3, BIN_NUM), torch.ones(3))  # soft bins, pruner mostly on
    top.train()
    ids, mask = padded_batch(top.config)
    labels = torch.tensor([0, 1, 2])
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(top(ids, mask).logits, labels)
        loss.backward()
    assert top.gates.bin_log_alpha.grad is not None and top.gates.bin_log_alpha.grad.abs().sum() > 0
    assert top.gates.pruner_log_alpha.grad is not None
    assert top.gates.pruner_log_alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in top.model.classifier.parameters())


# ---- persistence -----------------------------------------------------------------------
def test_save_and_load_round_trip(family, tmp_path):
    reference, top = reference_and_top(family)
    set_gates(top, MIXED_BINS, MIXED_PRUNERS)
    ids, mask = padded_batch(top.config)
    path = str(tmp_path / "ckpt")
    top.save_pretrained(path, extra={"task": "cola"})
    loaded = ToPModel.from_pretrained(path).eval()
    with torch.no_grad():
        before, after = top(ids, mask), loaded(ids, mask)
        dense = top(ids, mask, pruning=False).logits
    assert (before.alive[:, -1].sum(-1) < torch.tensor(REAL_LENGTHS)).all()  # gates prune
    assert torch.equal(before.alive, after.alive)
    assert torch.equal(before.logits, after.logits)
    assert loaded.prune == top.prune
    assert torch.equal(loaded.gates.bin_log_alpha, top.gates.bin_log_alpha)

    plain, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert list(plain.state_dict()) == list(reference.state_dict())
    with torch.no_grad():
        plain_logits = plain.eval()(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(plain_logits, dense, atol=1e-5)


def test_plain_hf_checkpoint_loads_with_fresh_gates(tmp_path):
    reference = tiny_classifier("bert")
    reference.save_pretrained(tmp_path / "teacher")
    top = ToPModel.from_pretrained(str(tmp_path / "teacher"), PruneConfig(bin_num=BIN_NUM)).eval()
    ids, mask = padded_batch(top.config)
    with torch.no_grad():
        assert torch.allclose(top(ids, mask).logits,
                              reference(input_ids=ids, attention_mask=mask).logits, atol=1e-5)
    assert top.gates()[1].eq(0).all()  # fresh gates: pruners off


class _FailingTokenizer:
    def save_pretrained(self, path):
        raise OSError("disk full")


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    _, top = reference_and_top("bert")
    path = tmp_path / "ckpt"
    top.save_pretrained(str(path))
    before = {f: (path / f).read_bytes() for f in os.listdir(path)}
    set_gates(top, MIXED_BINS, MIXED_PRUNERS)
    with pytest.raises(OSError, match="disk full"):
        top.save_pretrained(str(path), tokenizer=_FailingTokenizer())
    assert {f: (path / f).read_bytes() for f in os.listdir(path)} == before
    assert os.listdir(tmp_path) == ["ckpt"]


def test_atomic_directory_is_all_or_nothing(tmp_path):
    path = tmp_path / "ckpt"
    with atomic_directory(str(path)) as tmp:
        (tmp_path / tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(str(path)) as tmp:
            (tmp_path / tmp / "new.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert os.listdir(path) == ["old.txt"] and (path / "old.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["ckpt"]  # no temp directories left behind
    with atomic_directory(str(path)) as tmp:
        (tmp_path / tmp / "new.txt").write_text("new")
    assert os.listdir(path) == ["new.txt"]  # a success replaces the whole directory
    assert os.listdir(tmp_path) == ["ckpt"]


# ---- errors ----------------------------------------------------------------------------
UNSUPPORTED = {
    "gpt2": lambda: GPT2ForSequenceClassification(
        GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32)),
    "distilbert": lambda: DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)),
}


@pytest.mark.parametrize("model_type", sorted(UNSUPPORTED))
def test_unsupported_model_type_is_rejected(model_type):
    with pytest.raises(ValueError, match=rf"'{model_type}'.*bert, roberta"):
        ToPModel(UNSUPPORTED[model_type]())


@pytest.mark.parametrize("location", [(0, 2), (2, 4), (-1,)])
def test_prune_location_outside_the_model_is_rejected(location):
    with pytest.raises(ValueError, match=r"prune_location=.*1\.\.3"):
        ToPModel(tiny_classifier("bert"), PruneConfig(prune_location=location))


# ---- token counts under the evaluation gates, from lengths alone -----------------------
@pytest.mark.parametrize("bin_num", [4, 7])
def test_kept_counts_from_lengths_equal_the_model_forward(family, bin_num):
    """Scattered closed bins and a switched-off pruner: the counts the constraint holds
    (``kept_counts``) are the ones a real forward pass keeps, whatever the attention."""
    from toplib.core.importance import kept_counts
    _, top = reference_and_top(family)
    top = ToPModel(top.model, PruneConfig(bin_num=bin_num)).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        top.gates.bin_log_alpha.copy_(torch.where(torch.rand(3, bin_num, generator=gen) < 0.4,
                                                  SHUT, OPEN))
        top.gates.pruner_log_alpha.copy_(torch.tensor([OPEN, SHUT, OPEN]))
    lengths = (12, 11, 9, 7, 5, 2)
    ids, mask = padded_batch(top.config, lengths=lengths)
    with torch.no_grad():
        forward = (top(ids, mask).alive > 0).sum(-1)
        z_bins, z_pruner = top.gates()
    keep = 1 - (1 - z_bins) * z_pruner[:, None]
    counted = kept_counts(torch.tensor(lengths), keep, top.prune.prune_location, 4, bin_num)
    assert torch.equal(counted, forward)
    assert (forward[:, -1] < torch.tensor(lengths)).any(), "the gates should prune something"


# ---- what Hugging Face returns, served by the patched encoder ---------------------------
def test_hidden_states_and_attentions_are_forwarded(family):
    reference, top = reference_and_top(family)
    reference.set_attn_implementation("eager")
    ids, mask = padded_batch(top.config)
    kwargs = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                  output_attentions=True)
    with torch.no_grad():
        want = reference(**kwargs)
        with top.attached(top.token_run(mask)):  # every gate open: the unpatched model
            got = top.model(**kwargs)
        set_gates(top, MIXED_BINS, MIXED_PRUNERS)
        run = top.token_run(mask)
        with top.attached(run):
            pruned = top.model(**kwargs)
    assert len(got.hidden_states) == len(want.hidden_states) == 5
    real = mask.bool()  # padded positions are zeroed by ToP (masked) but not by HF
    for a, b in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=0)
    for a, b in zip(got.attentions, want.attentions):  # (B, A, n, n): real query rows
        torch.testing.assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], atol=1e-5,
                                   rtol=0)
    alive = torch.stack(run.alive_per_layer, dim=1)  # (B, N, n) entering each layer
    assert (alive[:, -1].sum(-1) < mask.sum(-1)).all()  # the gates prune
    for layer in range(1, 4):  # layer l's input: layer l-1's output, pruned tokens zeroed
        dead = alive[:, layer] == 0
        assert (pruned.hidden_states[layer][dead] == 0).all(), layer
    assert [a.shape for a in pruned.attentions] == [a.shape for a in want.attentions]


def test_training_gradients_equal_hugging_face_bitwise(family):
    """The masked path computes attention in Hugging Face's operation order: a dense
    training step gives the unpatched eager model's logits and gradients exactly."""
    reference, top = reference_and_top(family)
    reference.set_attn_implementation("eager")
    reference.train(), top.train()
    ids, mask = padded_batch(top.config)
    want = reference(input_ids=ids, attention_mask=mask).logits
    got = top(ids, mask, pruning=False).logits
    (want ** 2).sum().backward()
    (got ** 2).sum().backward()
    assert torch.equal(got, want)
    grads = dict(top.model.named_parameters())
    for name, param in reference.named_parameters():
        if param.grad is not None:
            assert torch.equal(grads[name].grad, param.grad), name
