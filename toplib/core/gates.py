"""Hard-concrete L0 gates over rank bins (Louizos et al., 2018; ToP Sec. 3.2): each prune
layer owns ``bin_num`` bin gates and one pruner gate (:func:`keep_rule`); :class:`RankBinGates`
holds the log-alphas.
"""
from __future__ import annotations

import math

import torch
from torch import nn

BETA = 2.0 / 3.0  # hard-concrete temperature
GAMMA = -0.1  # left stretch limit
ZETA = 1.1  # right stretch limit
EPS = 1e-6
LOG_ALPHA_MIN = math.log(0.01)  # release: log-alphas clamped to [log 0.01, log 100]
LOG_ALPHA_MAX = math.log(100.0)
EVAL_SCORE_SCALE = 0.8  # release: deterministic ranking score sigmoid(a / beta * 0.8)
FIXED_LOG_ALPHA = 30.0  # a fixed gate: P(z > 0) is 1 or 0 to float precision, samples too
GATE_OPEN, GATE_CLOSED = 10.0, -10.0
"""Log-alphas of a set schedule (at the release bounds +-log 100, ``deterministic_gates``
would round 25 closed bins to 24)."""


def sample_hard_concrete(log_alpha: torch.Tensor) -> torch.Tensor:
    """One stretched-and-clamped hard-concrete sample in [0, 1] per log-alpha, differentiable."""
    u = torch.rand_like(log_alpha).clamp(EPS, 1 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def hard_concrete_cdf(x, log_alpha: torch.Tensor) -> torch.Tensor:
    """Q(x) = P(stretched concrete <= x) (Louizos et al., 2018, Eq. 12), x in (gamma, zeta).

    >>> round(float(hard_concrete_cdf(0.0, torch.tensor(0.0))), 4)  # P(z = 0) at a = 0
    0.1682
    """
    y = (x - GAMMA) / (ZETA - GAMMA)
    logit = torch.logit(y) if torch.is_tensor(y) else math.log(y / (1 - y))
    return torch.sigmoid(BETA * logit - log_alpha)


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z > 0) = 1 - Q(0), with Q the CDF of the stretched concrete."""
    return 1.0 - hard_concrete_cdf(0.0, log_alpha)


def hard_concrete_density(z: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """Density dQ/dz on 0 < z < 1 (beside it the point masses Q(0) at 0, 1 - Q(1) at 1), by
    autograd of :func:`hard_concrete_cdf`; ``log_alpha`` broadcasts to ``z``.

    >>> z, a = torch.linspace(0.001, 0.999, 999), torch.tensor(0.0)
    >>> mass = torch.trapezoid(hard_concrete_density(z, a), z)
    >>> round(float(mass + hard_concrete_cdf(0.0, a) + 1 - hard_concrete_cdf(1.0, a)), 2)
    1.0
    """
    z, log_alpha = torch.broadcast_tensors(z, log_alpha.detach())
    with torch.enable_grad():
        z = z.detach().clone().requires_grad_(True)
        return torch.autograd.grad(hard_concrete_cdf(z, log_alpha).sum(), z)[0]


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """(G, size) 0/1 evaluation gates of (G, size) log-alphas (the release's rule): in each row
    the ``round(size - sum P(z > 0))`` gates of smallest ``sigmoid(a / beta * 0.8)`` close."""
    size = log_alpha.shape[-1]
    n_zero = torch.round(size - prob_nonzero(log_alpha).sum(-1)).long()  # (G,)
    order = torch.sigmoid(log_alpha / BETA * EVAL_SCORE_SCALE).argsort(dim=-1)
    ranks = order.argsort(dim=-1)  # rank of each gate, 0 = smallest score
    return (ranks >= n_zero[:, None]).to(log_alpha.dtype)


PRUNER_ON_ABOVE = 0.0
"""A sampled pruner switches pruning on when z > 0 (the release's ``pruner_mask > 0.0``): at
the rate P(z > 0) the expected FLOPs count."""


def straight_through(z: torch.Tensor, threshold: float = PRUNER_ON_ABOVE) -> torch.Tensor:
    """1 where ``z > threshold`` in the forward pass, ``z``'s gradient in the backward pass."""
    hard = (z > threshold).to(z.dtype)
    return hard + (z - z.detach())  # exactly 0/1 forward: hard + z - z would round off


def keep_rule(z_bins: torch.Tensor, z_pruner: torch.Tensor) -> torch.Tensor:
    """Keep of bin b, ``1 - (1 - z_b) * z_pruner`` (ToP Eq. 4), for (..., bin_num) ``z_bins``
    and (...) ``z_pruner``: training's soft keep on samples, evaluation's on 0/1 gates, the
    expected keep ratio on P(z > 0).

    >>> keep_rule(torch.tensor([[1.0, 0.0]]), torch.tensor([1.0])).tolist()
    [[1.0, 0.0]]
    """
    return 1.0 - (1.0 - z_bins) * z_pruner[..., None]


def expected_keep_ratio(bin_log_alpha: torch.Tensor,
                        pruner_log_alpha: torch.Tensor) -> torch.Tensor:
    """(P,) expected share of alive tokens each prune layer keeps, for (P, bin_num) and (P,)
    log-alphas: :func:`keep_rule` on the mean P(z_b > 0), exact as the rule is linear."""
    p_bins = prob_nonzero(bin_log_alpha).mean(-1, keepdim=True)
    return keep_rule(p_bins, prob_nonzero(pruner_log_alpha))[:, 0]


def schedule_gates(closed, bin_num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_bins (P, bin_num), z_pruner (P,)) 0/1 gates of a schedule: at location p the
    ``closed[p]`` lowest-ranked bins are 0, and the pruner is on iff any is."""
    z_bins = torch.ones(len(closed), bin_num)
    for p, c in enumerate(closed):
        z_bins[p, bin_num - c:] = 0.0  # c = 0: an empty slice
    return z_bins, (z_bins == 0).any(-1).to(z_bins.dtype)


def _init_log_alpha(droprate: float) -> float:
    return math.log(1.0 - droprate) - math.log(droprate)


class RankBinGates(nn.Module):
    """The learnable gates of ``num_layers`` (P) prune locations. Bin gates start closed, and
    pruner gates on, with probability ``droprate_init``: pruning starts switched off.

    >>> z_bins, z_pruner = RankBinGates(num_layers=5, bin_num=25)(training=True)
    >>> z_bins.shape, z_pruner.shape
    (torch.Size([5, 25]), torch.Size([5]))
    """

    def __init__(self, num_layers: int, bin_num: int, droprate_init: float = 0.01):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers={num_layers!r}: need at least one prune location")
        if bin_num < 1:
            raise ValueError(f"bin_num={bin_num!r}: BIN_NUM must be an integer >= 1")
        if not 0.0 < droprate_init < 1.0:
            raise ValueError(f"droprate_init={droprate_init!r}: must lie in (0, 1)")
        a = _init_log_alpha(droprate_init)
        self.bin_log_alpha = nn.Parameter(torch.full((num_layers, bin_num), a))
        self.pruner_log_alpha = nn.Parameter(torch.full((num_layers,), -a))
        # Pruners fixed on by fix_pruners_ (not saved: a saved fixed gate sits at FIXED_LOG_ALPHA).
        self.register_buffer("_pruner_fixed_on", torch.zeros(num_layers, dtype=torch.bool),
                             persistent=False)

    def forward(self, training: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (z_bins (P, bin_num), z_pruner (P,)): sampled in training, 0/1 otherwise."""
        training = self.training if training is None else training
        if training:
            z_bins = sample_hard_concrete(self.bin_log_alpha)  # drawn before the pruners'
            return z_bins, straight_through(sample_hard_concrete(self.pruner_log_alpha))
        z_pruner = deterministic_gates(self.pruner_log_alpha[:, None])[:, 0]  # a row per pruner
        return deterministic_gates(self.bin_log_alpha), z_pruner

    def expected_keep_ratio(self) -> torch.Tensor:
        """(P,) expected keep ratio of each prune layer, differentiable."""
        return expected_keep_ratio(self.bin_log_alpha, self.pruner_log_alpha)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp log-alphas after an optimiser step, as the release does (fixed gates stay)."""
        if self.bin_log_alpha.requires_grad:
            self.bin_log_alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)
        if self.pruner_log_alpha.requires_grad:
            self.pruner_log_alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)
            self.pruner_log_alpha.masked_fill_(self._pruner_fixed_on, FIXED_LOG_ALPHA)

    @property
    def bins_fixed(self) -> bool:
        return not self.bin_log_alpha.requires_grad

    @torch.no_grad()
    def fix_pruners_(self) -> torch.Tensor:
        """Fix every pruner that is on at evaluation on, for good; returns the (P,) bool fixed.

        Training, expected FLOPs and evaluation then all see that layer pruning. A pruner
        still off keeps learning (fixed off, the target could fall out of reach). Idempotent;
        a gate at ``FIXED_LOG_ALPHA`` (as saved) counts as fixed, so a resumed run keeps it.
        """
        on = self(training=False)[1] > 0
        fixed = self._pruner_fixed_on | on | (self.pruner_log_alpha >= FIXED_LOG_ALPHA)
        self._pruner_fixed_on.copy_(fixed)
        self.pruner_log_alpha.masked_fill_(fixed, FIXED_LOG_ALPHA)
        return fixed

    @torch.no_grad()
    def fix_all_(self) -> None:
        """Fix every gate at its evaluation value, so only the weights learn. Idempotent."""
        z_bins, z_pruner = self(training=False)
        for param, on in ((self.pruner_log_alpha, z_pruner), (self.bin_log_alpha, z_bins)):
            param.copy_(torch.where(on > 0, FIXED_LOG_ALPHA, -FIXED_LOG_ALPHA))
            param.requires_grad_(False)

    @torch.no_grad()
    def kept_bins(self) -> torch.Tensor:
        """(P, bin_num) bool: the bins evaluation keeps at each prune location."""
        z_bins, z_pruner = self(training=False)
        return keep_rule(z_bins, z_pruner) > 0

    def closed_counts(self) -> list[int]:
        """Closed bins per prune location at evaluation (a top-k baseline's schedule)."""
        return (~self.kept_bins()).sum(-1).tolist()

    @torch.no_grad()
    def close_lowest_bins_(self, closed) -> None:
        """Set the log-alphas whose evaluation gates are :func:`schedule_gates`."""
        for param, z in zip((self.bin_log_alpha, self.pruner_log_alpha),
                            schedule_gates(closed, self.bin_log_alpha.shape[1])):
            param.copy_(torch.where(z > 0, GATE_OPEN, GATE_CLOSED))

    @torch.no_grad()
    def set_all_open(self) -> None:
        """Open every bin and switch every pruner off (a dense model)."""
        self.bin_log_alpha.fill_(LOG_ALPHA_MAX)
        self.pruner_log_alpha.fill_(LOG_ALPHA_MIN)
