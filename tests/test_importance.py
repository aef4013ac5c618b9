"""Token importance, rank bins and the keep mask (METHOD Sec. 1-2), against hand loops."""
from __future__ import annotations

import pytest
import torch

from toplib.core.importance import keep_mask, rank_bins, token_importance


def importance_by_hand(probs: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """s_j = mean over heads a and alive queries i of P[a, i, j]; 0 for dead tokens."""
    batch, heads, n, _ = probs.shape
    out = torch.zeros(batch, n, dtype=torch.float64)
    for b in range(batch):
        queries = [i for i in range(n) if alive[b, i] > 0]
        for j in range(n):
            if alive[b, j] == 0:
                continue
            total = sum(float(probs[b, a, i, j]) for a in range(heads) for i in queries)
            out[b, j] = total / (heads * len(queries))
    return out


def test_token_importance_equals_hand_loop():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 4, 7, 7, generator=gen), dim=-1)
    alive = torch.tensor([[1, 1, 1, 1, 1, 1, 1],
                          [1, 1, 1, 1, 0, 0, 0],  # padding at the end
                          [1, 0, 1, 1, 0, 1, 0]], dtype=torch.float32)  # pruned in the middle
    got = token_importance(probs, alive)
    assert torch.allclose(got.double(), importance_by_hand(probs, alive), atol=1e-6)
    assert (got[alive == 0] == 0).all() and (got[alive == 1] > 0).all()


def test_token_importance_of_uniform_attention_is_one_over_n_alive():
    probs = torch.full((1, 2, 5, 5), 1 / 5)
    alive = torch.ones(1, 5)
    assert torch.allclose(token_importance(probs, alive), torch.full((1, 5), 0.2))


# 1 [CLS] + 8 alive tokens + 2 dead ones; the dead ones and [CLS] score highest on purpose.
HAND_IMPORTANCE = [0.9, 0.10, 0.30, 0.05, 0.20, 0.40, 0.15, 0.01, 0.25, 0.50, 0.60]
HAND_ALIVE = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
# ranks among the 8: pos5 0, pos2 1, pos8 2, pos4 3, pos6 4, pos1 5, pos3 6, pos7 7 -> bin r // 2
HAND_BINS = [0, 2, 0, 3, 1, 0, 2, 3, 1, 0, 0]


def test_rank_bins_hand_worked_example():
    alive = torch.tensor([HAND_ALIVE], dtype=torch.float32)
    bins = rank_bins(torch.tensor([HAND_IMPORTANCE]), alive, 4)
    assert bins.tolist() == [HAND_BINS]
    assert bins.dtype == torch.long
    # two tokens per bin among the alive non-[CLS] tokens
    counts = torch.bincount(bins[0, 1:9], minlength=4)
    assert counts.tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("m, bin_num", [(8, 4), (5, 4), (3, 5), (4, 1), (2, 10), (10, 10), (7, 3),
                                        (25, 25), (50, 20)])
def test_rank_bins_follow_floor_of_rank_over_m(m, bin_num):
    gen = torch.Generator().manual_seed(m * 100 + bin_num)
    n = m + 3  # [CLS], m alive tokens, 2 padding
    importance = torch.rand(1, n, generator=gen)
    alive = torch.zeros(1, n)
    alive[0, : m + 1] = 1
    bins = rank_bins(importance, alive, bin_num)[0]
    tokens = sorted(range(1, m + 1), key=lambda j: -float(importance[0, j]))
    for rank, j in enumerate(tokens):
        assert bins[j] == rank * bin_num // m, (rank, j)
    assert bins[0] == 0 and (bins[m + 1:] == 0).all()


def test_rank_bins_ignore_dead_tokens_in_m():
    importance = torch.tensor([[0.0, 4.0, 3.0, 2.0, 1.0, 9.0, 8.0]])
    all_alive = rank_bins(importance, torch.ones(1, 7), 2)
    two_dead = rank_bins(importance, torch.tensor([[1.0, 1, 1, 1, 1, 0, 0]]), 2)
    assert two_dead.tolist() == [[0, 0, 0, 1, 1, 0, 0]]  # m = 4: two tokens per bin
    assert all_alive.tolist() == [[0, 0, 1, 1, 1, 0, 0]]  # m = 6: 9, 8, 4 in bin 0


KEEP_CASES = {
    # z_bins, z_pruner, expected keep of tokens in bins [0, 1, 2, 3]
    "pruner off": ([0.0, 0.0, 0.0, 0.0], 0.0, [1.0, 1.0, 1.0, 1.0]),
    "pruner on, bins 1 and 3 closed": ([1.0, 0.0, 1.0, 0.0], 1.0, [1.0, 0.0, 1.0, 0.0]),
    "pruner on, every bin closed": ([0.0, 0.0, 0.0, 0.0], 1.0, [0.0, 0.0, 0.0, 0.0]),
    "soft": ([0.3, 1.0, 0.0, 0.5], 0.5, [0.65, 1.0, 0.5, 0.75]),
}


@pytest.mark.parametrize("z_bins, z_pruner, expected", KEEP_CASES.values(), ids=KEEP_CASES.keys())
def test_keep_mask_formula_cls_always_kept_dead_stay_dead(z_bins, z_pruner, expected):
    # [CLS] sits in bin 0 by convention; tokens 1..4 in bins 0..3; token 5 is padding in bin 1
    bins = torch.tensor([[0, 0, 1, 2, 3, 1]])
    alive = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    keep = keep_mask(bins, alive, torch.tensor(z_bins), torch.tensor(z_pruner))
    assert torch.allclose(keep, torch.tensor([[1.0, *expected, 0.0]]))


def test_keep_mask_scales_soft_alive_values():
    bins = torch.tensor([[0, 0, 1]])
    alive = torch.tensor([[1.0, 0.5, 0.5]])
    keep = keep_mask(bins, alive, torch.tensor([1.0, 0.0]), torch.tensor(1.0))
    assert keep.tolist() == [[1.0, 0.5, 0.0]]


KEPT_CASES = [
    # lengths (with [CLS]), keep mask per location, locations, layers, bin_num, expected
    ([9], [[1, 1, 0, 0]], (1,), 2, 4, [[9, 5]]),  # 8 ranked tokens, 2 per bin: half go
    ([9], [[0, 1, 1, 1]], (1,), 2, 4, [[9, 7]]),  # the top bin closed: ranks 0, 1 go
    ([5], [[1, 1, 0, 1, 1, 1, 0, 1]], (1,), 2, 8, [[5, 3]]),  # 4 tokens in bins 0, 2, 4, 6
    ([3], [[1, 1, 1, 0]], (1,), 2, 4, [[3, 3]]),  # 2 tokens sit in bins 0 and 2: none in 3
    ([1], [[0, 0, 0, 0]], (1,), 2, 4, [[1, 1]]),  # [CLS] alone stays
    ([9, 5], [[1, 1, 0, 0], [1, 1, 0, 0]], (1, 2), 3, 4, [[9, 5, 3], [5, 3, 2]]),  # compounding
]


@pytest.mark.parametrize("lengths, keep, locations, layers, bin_num, expected", KEPT_CASES)
def test_kept_counts_hand_worked(lengths, keep, locations, layers, bin_num, expected):
    from toplib.core.importance import kept_counts
    got = kept_counts(torch.tensor(lengths), torch.tensor(keep, dtype=torch.float32), locations,
                      layers, bin_num)
    assert got.tolist() == expected
