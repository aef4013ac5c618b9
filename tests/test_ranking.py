"""LambdaLoss ARP-2 ranking distillation (METHOD Sec. 5), against hand double loops."""
from __future__ import annotations

import math

import pytest
import torch

from toplib.core.ranking import lambda_arp2_loss, rank_distillation_loss


def arp2_by_hand(scores, relevance, valid=None, sigma=1.0) -> list[float]:
    """sum over pairs with rel_i > rel_j of (rel_i - rel_j) * log2(1 + exp(-sigma (s_i - s_j)))."""
    out = []
    for b in range(scores.shape[0]):
        total = 0.0
        k = scores.shape[1]
        for i in range(k):
            for j in range(k):
                if valid is not None and not (valid[b, i] and valid[b, j]):
                    continue
                gap = float(relevance[b, i] - relevance[b, j])
                if gap > 0:
                    diff = float(scores[b, i] - scores[b, j])
                    total += gap * math.log2(1 + math.exp(-sigma * diff))
        out.append(total)
    return out


ARP2_CASES = {
    "graded": dict(k=5, valid=False, sigma=1.0, ties=False),
    "with ties": dict(k=6, valid=False, sigma=1.0, ties=True),
    "masked entries": dict(k=6, valid=True, sigma=1.0, ties=False),
    "sigma 2": dict(k=4, valid=True, sigma=2.0, ties=True),
}


@pytest.mark.parametrize("case", ARP2_CASES.values(), ids=ARP2_CASES.keys())
def test_lambda_arp2_loss_equals_hand_double_loop(case):
    gen = torch.Generator().manual_seed(case["k"])
    scores = torch.randn(3, case["k"], generator=gen, dtype=torch.float64)
    if case["ties"]:
        relevance = torch.randint(0, 3, (3, case["k"]), generator=gen).double()
    else:
        perms = [torch.randperm(case["k"], generator=gen) for _ in range(3)]
        relevance = torch.stack(perms).double()
    valid = (torch.rand(3, case["k"], generator=gen) > 0.3).double() if case["valid"] else None
    got = lambda_arp2_loss(scores, relevance, valid, sigma=case["sigma"])
    want = arp2_by_hand(scores, relevance, valid, sigma=case["sigma"])
    assert got.shape == (3,)
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10)


def rank_distill_by_hand(student, teacher, real, topk) -> float:
    """Per example: teacher's top-min(topk, m) real non-[CLS] tokens, relevance k_b - position,
    ARP-2 on the student's scores of those tokens, divided by k_b^2; mean over the batch."""
    losses = []
    for b in range(student.shape[0]):
        tokens = [j for j in range(1, student.shape[1]) if real[b, j]]
        tokens.sort(key=lambda j: -float(teacher[b, j]))
        top = tokens[: min(topk, len(tokens))]
        k_b = max(1, len(top))
        scores = torch.tensor([[float(student[b, j]) for j in top]], dtype=torch.float64)
        relevance = torch.tensor([[float(k_b - p) for p in range(len(top))]], dtype=torch.float64)
        losses.append(arp2_by_hand(scores, relevance)[0] / k_b ** 2 if top else 0.0)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("topk", [1, 3, 5, 20])
def test_rank_distillation_loss_equals_hand_computation(topk):
    gen = torch.Generator().manual_seed(topk)
    student = torch.rand(3, 9, generator=gen, dtype=torch.float64)
    teacher = torch.rand(3, 9, generator=gen, dtype=torch.float64)
    real = torch.tensor([[1] * 9, [1] * 6 + [0] * 3, [1] * 3 + [0] * 6])  # 8, 5, 2 real tokens
    got = rank_distillation_loss(student, teacher, real, topk)
    assert got.item() == pytest.approx(rank_distill_by_hand(student, teacher, real, topk), rel=1e-9)


def test_student_ranking_like_teacher_has_lower_loss():
    teacher = torch.tensor([[0.5, 0.30, 0.05, 0.20, 0.10, 0.25, 0.0, 0.0]])
    real = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]])
    order = torch.tensor([[0.0, 5.0, 1.0, 3.0, 2.0, 4.0, 0.0, 0.0]])  # same order as teacher
    reversed_order = torch.tensor([[0.0, 1.0, 5.0, 3.0, 4.0, 2.0, 0.0, 0.0]])
    for topk in (2, 3, 5):
        agree = rank_distillation_loss(order, teacher, real, topk)
        disagree = rank_distillation_loss(reversed_order, teacher, real, topk)
        assert agree < disagree, topk
    # the teacher's own (tiny) scores rank correctly too: still lower than reversed
    same = rank_distillation_loss(teacher, teacher, real, 5)
    assert same < rank_distillation_loss(-teacher, teacher, real, 5)


def test_short_examples_and_padding_do_not_count():
    """Fewer real tokens than TOPK: the list shrinks; padding scores change nothing."""
    teacher = torch.tensor([[0.9, 0.3, 0.2, 0.9, 0.9], [0.9, 0.1, 0.4, 0.3, 0.2]])
    real = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    student = torch.tensor([[0.0, 0.1, 0.3, 7.0, -7.0], [0.0, 0.2, 0.1, 0.4, 0.3]])
    base = rank_distillation_loss(student, teacher, real, topk=20)
    assert torch.isfinite(base)
    changed = student.clone()
    changed[0, 3:] = torch.tensor([-3.0, 5.0])  # padding scores
    changed[:, 0] = 100.0  # [CLS] score
    assert torch.equal(rank_distillation_loss(changed, teacher, real, topk=20), base)
    assert base.item() == pytest.approx(rank_distill_by_hand(student, teacher, real, 20))


def test_only_cls_gives_zero_loss():
    student, teacher = torch.rand(2, 4), torch.rand(2, 4)
    real = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0]])
    assert rank_distillation_loss(student, teacher, real, topk=3).item() == 0.0


def test_gradient_reaches_student_top_tokens_only():
    teacher = torch.tensor([[0.9, 0.3, 0.1, 0.4, 0.2, 0.5, 0.0]])
    real = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    student = torch.rand(1, 7, requires_grad=True)
    rank_distillation_loss(student, teacher, real, topk=3).backward()
    top3 = {5, 3, 1}
    nonzero = set(student.grad[0].nonzero().flatten().tolist())
    assert nonzero == top3  # [CLS], padding and tokens outside the teacher's top-k get none
