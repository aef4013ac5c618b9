"""The analytic MACs model (METHOD Sec. 3) against torch.utils.flop_counter and hand sums."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_classifier
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel

from toplib.core.flops import (
    EncoderDims,
    bin_occupancy,
    binned_expected_lengths,
    dense_macs,
    encoder_macs,
    expected_lengths,
    layer_macs,
    sparsity,
)
from toplib.core.gates import prob_nonzero, sample_hard_concrete
from toplib.core.importance import kept_counts

DIMS = {  # (layers, hidden, heads, intermediate)
    "small": EncoderDims(4, 64, 4, 128),
    "bert-base": EncoderDims(12, 768, 12, 3072),
}
# FlopCounterMode counts from shapes alone, so bert-base runs on the meta device (same counts,
# no 85M random weights to initialise, no CPU matmuls); the small model runs on real CPU tensors.
DEVICE = {"small": "cpu", "bert-base": "meta"}
LENGTHS = (16, 64, 128, 256)


def softmax_macs(t, dims: EncoderDims) -> float:
    """The A t^2 softmax term of one layer, which FlopCounterMode does not count."""
    return dims.heads * t * t


def bert_encoder(dims: EncoderDims, device: str = "cpu") -> BertModel:
    config = BertConfig(num_hidden_layers=dims.num_layers, hidden_size=dims.hidden,
                        num_attention_heads=dims.heads, intermediate_size=dims.intermediate)
    with torch.device(device):
        model = BertModel(config, add_pooling_layer=False).eval()
    model.set_attn_implementation("eager")  # plain matmuls, which FlopCounterMode counts
    return model


def counted_macs(fn) -> float:
    """MACs of ``fn()`` as FlopCounterMode sees them (it reports 2 FLOPs per MAC)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2


@pytest.fixture(scope="module", params=sorted(DIMS))
def encoder_and_dims(request):
    torch.manual_seed(0)
    dims, device = DIMS[request.param], DEVICE[request.param]
    return bert_encoder(dims, device), dims, device


def test_dense_macs_match_flop_counter(encoder_and_dims):
    model, dims, device = encoder_and_dims
    for n in LENGTHS:
        # the encoder alone: no embeddings, pooler or classifier
        hidden = torch.randn(1, n, dims.hidden, device=device)
        counted = counted_macs(lambda: model.encoder(hidden))  # noqa: B023 (called at once)
        analytic = float(dense_macs(torch.tensor([n]), dims)[0])
        without_softmax = analytic - dims.num_layers * softmax_macs(n, dims)
        assert without_softmax == pytest.approx(counted, rel=1e-9), n
        if dims.hidden >= 768:  # METHOD: within 0.1% on bert-base, softmax included
            assert analytic == pytest.approx(counted, rel=0.02), n


def test_pruned_encoder_macs_match_flop_counter():
    """Layer l's attention sees lengths[l] tokens, its FFN lengths[l + 1] (the last its own)."""
    model, dims = bert_encoder(DIMS["small"]), DIMS["small"]
    lengths = [40, 40, 25, 9]
    ffn_lengths = lengths[1:] + lengths[-1:]

    def run_pruned():
        hidden = torch.randn(1, lengths[0], dims.hidden)
        for layer, t, t_ffn in zip(model.encoder.layer, lengths, ffn_lengths):
            attention_out = layer.attention(hidden[:, :t])[0]
            hidden = layer.feed_forward_chunk(attention_out[:, :t_ffn])

    analytic = float(encoder_macs(torch.tensor([lengths], dtype=torch.float64), dims)[0])
    softmax = sum(softmax_macs(t, dims) for t in lengths)
    assert analytic - softmax == pytest.approx(counted_macs(run_pruned), rel=1e-9)


def test_layer_macs_hand_worked():
    dims = EncoderDims(1, hidden=4, heads=2, intermediate=8)
    # 3*3*16 (QKV) + 2*3^2*2 (scores) + 2*3^2 (softmax) + 2*3^2*2 (context) + 3*16 (out)
    # + 2*2*4*8 (FFN on 2 tokens) = 144 + 36 + 18 + 36 + 48 + 128
    assert float(layer_macs(torch.tensor(3.0), torch.tensor(2.0), dims)) == 410.0


def test_dense_macs_per_example_and_dtype():
    dims = DIMS["small"]
    per_example = dense_macs(torch.tensor([16, 64]), dims)
    one_by_one = torch.cat([dense_macs(torch.tensor([n]), dims) for n in (16, 64)])
    assert torch.equal(per_example, one_by_one)
    assert per_example.dtype == torch.float64  # bert-base MACs overflow float32 precision


def test_expected_lengths_all_ones_give_n():
    n = torch.tensor([5.0, 17.0, 128.0])
    got = expected_lengths(n, torch.ones(3), prune_location=(1, 2, 3), num_layers=4)
    assert torch.equal(got, n[:, None].expand(-1, 4))


def test_expected_lengths_hand_worked_product():
    # prune at layers 1 and 3 with keep ratios 0.5 and 0.8: factors [1, .5, .5, .4]
    got = expected_lengths(torch.tensor([11.0, 1.0]), torch.tensor([0.5, 0.8]), (1, 3), 4)
    assert torch.allclose(got, torch.tensor([[11.0, 6.0, 6.0, 5.0], [1.0, 1.0, 1.0, 1.0]]))


def test_expected_lengths_are_differentiable():
    rho = torch.tensor([0.5, 0.8], requires_grad=True)
    expected_lengths(torch.tensor([11.0]), rho, (1, 3), 4).sum().backward()
    # d/d rho1 of 10*(.5 + .5 + .5*.8) = 10*(1 + 1 + .8); d/d rho2 = 10*.5
    assert torch.allclose(rho.grad, torch.tensor([28.0, 5.0]))


SPARSITY_CASES = {
    # pruned, dense, expected: 1 - sum(pruned) / sum(dense), i.e. dense-MACs weighted
    "no pruning": ([4.0, 6.0], [4.0, 6.0], 0.0),
    "half": ([1.0, 3.0], [2.0, 6.0], 0.5),
    "unequal lengths": ([1.0, 3.0], [2.0, 12.0], 1 - 4 / 14),
    "all pruned": ([0.0], [5.0], 1.0),
}


@pytest.mark.parametrize("pruned, dense, expected", SPARSITY_CASES.values(),
                         ids=SPARSITY_CASES.keys())
def test_sparsity_hand_numbers(pruned, dense, expected):
    assert float(sparsity(torch.tensor(pruned), torch.tensor(dense))) == pytest.approx(expected)


def hand_expected_sparsity(lengths, rho, locations, dims: EncoderDims) -> float:
    """Python-float restatement of METHOD Sec. 3 for a batch of real lengths."""
    h, a, i = dims.hidden, dims.heads, dims.intermediate

    def layer(t, t_ffn):
        return 3 * t * h * h + a * t * t * (h / a) * 2 + a * t * t + t * h * h + 2 * t_ffn * h * i

    pruned = dense = 0.0
    for n in lengths:
        factor, tokens = 1.0, []
        for l in range(dims.num_layers):
            if l in locations:
                factor *= rho[locations.index(l)]
            tokens.append((n - 1) * factor + 1)
        ffn = tokens[1:] + tokens[-1:]
        pruned += sum(layer(t, f) for t, f in zip(tokens, ffn))
        dense += dims.num_layers * layer(n, n)
    return 1 - pruned / dense


def test_model_expected_sparsity_matches_hand_formula():
    from toplib import PruneConfig, ToPModel

    top = ToPModel(tiny_classifier("bert"), PruneConfig(bin_num=4))
    with torch.no_grad():
        top.gates.bin_log_alpha.copy_(torch.tensor([[2.0, 0.0, -1.0, -3.0]]).expand(3, -1))
        top.gates.pruner_log_alpha.copy_(torch.tensor([1.0, 3.0, -2.0]))
    lengths = torch.tensor([12, 30, 7])
    got = top.expected_sparsity(lengths, binned=False)
    rho = top.gates.expected_keep_ratio().tolist()
    dims = EncoderDims.from_config(top.config)
    want = hand_expected_sparsity(lengths.tolist(), rho, list(top.prune.prune_location), dims)
    assert float(got.detach()) == pytest.approx(want, rel=1e-5)
    assert 0.05 < want < 0.95  # the gates chosen really prune
    got.backward()  # the constraint needs gradients into the gates
    assert top.gates.bin_log_alpha.grad.abs().sum() > 0
    assert top.gates.pruner_log_alpha.grad.abs().sum() > 0


def test_real_length_speedup_is_one_over_one_minus_sparsity():
    """METHOD Sec. 3: CoLA at sparsity 0.43 is 1.75x fewer MACs than its real length."""
    dims = DIMS["bert-base"]
    n = torch.tensor([11.0, 20.0])
    dense = dense_macs(n, dims)
    pruned = dense * (1 - 0.43)
    assert float(dense.sum() / pruned.sum()) == pytest.approx(1.75, abs=0.01)
    assert float(sparsity(pruned, dense)) == pytest.approx(0.43)


def test_bin_occupancy_counts_empty_bins():
    table = bin_occupancy(60, 25)
    torch.testing.assert_close(table.sum(-1), torch.ones(61, dtype=torch.float64))
    torch.testing.assert_close(table[50], torch.full((25,), 1 / 25, dtype=torch.float64))
    empty = (table[20] == 0).nonzero().flatten().tolist()
    assert empty == [4, 9, 14, 19, 24]  # r -> floor(r * 25 / 20) skips these
    assert table[1].tolist() == [1.0] + [0.0] * 24  # one token: the top bin


def test_binned_lengths_with_01_gates_equal_the_real_kept_counts():
    torch.manual_seed(0)
    locations, layers, bins = (1, 2, 4), 6, 10
    lengths = torch.randint(1, 70, (40,))
    for _ in range(5):
        z_bins = (torch.rand(3, bins) > 0.4).double()
        z_pruner = (torch.rand(3) > 0.3).double()
        keep = 1 - (1 - z_bins) * z_pruner[:, None]
        want = kept_counts(lengths, keep, locations, layers, bins).double()
        got = binned_expected_lengths(lengths, z_bins, z_pruner, locations, layers)
        torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


def test_binned_expectation_matches_monte_carlo_at_the_first_prune_layer():
    torch.manual_seed(0)
    bins, draws = 25, 4000
    lengths = torch.tensor([5, 13, 21, 27, 40, 77])
    bin_alpha, pruner_alpha = torch.randn(1, bins) * 2, torch.tensor([0.5])
    z_bins = sample_hard_concrete(bin_alpha.expand(draws, -1)) > 0  # (draws, bins)
    z_pruner = sample_hard_concrete(pruner_alpha.expand(draws)) > 0
    keep = (z_bins | ~z_pruner[:, None]).double()
    sampled = torch.stack([kept_counts(lengths, k[None], (1,), 2, bins)[:, 1] for k in keep])
    got = binned_expected_lengths(lengths, prob_nonzero(bin_alpha).double(),
                                  prob_nonzero(pruner_alpha).double(), (1,), 2)[:, 1]
    torch.testing.assert_close(got, sampled.double().mean(0), rtol=0.01, atol=0)
    uniform = expected_lengths(lengths, (1 - (1 - prob_nonzero(bin_alpha).mean())
                                         * prob_nonzero(pruner_alpha)).double(), (1,), 2)[:, 1]
    assert (uniform - got).abs().max() > 0.05, "short lengths should differ from the uniform formula"


def test_binned_expectation_is_differentiable_and_the_model_default():
    from toplib import PruneConfig, ToPModel

    top = ToPModel(tiny_classifier("bert"), PruneConfig(bin_num=8))
    with torch.no_grad():
        top.gates.bin_log_alpha.uniform_(-2, 2)
        top.gates.pruner_log_alpha.fill_(1.0)
    lengths = torch.tensor([6, 9, 30])
    got = top.expected_sparsity(lengths)
    bins, pruner = prob_nonzero(top.gates.bin_log_alpha), prob_nonzero(top.gates.pruner_log_alpha)
    tokens = binned_expected_lengths(lengths, bins, pruner, top.prune.prune_location,
                                     top.dims.num_layers)
    dims = EncoderDims.from_config(top.config)
    want = sparsity(encoder_macs(tokens, dims), dense_macs(lengths.float(), dims))
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    got.backward()
    assert top.gates.bin_log_alpha.grad.abs().sum() > 0
    assert top.gates.pruner_log_alpha.grad.abs().sum() > 0
