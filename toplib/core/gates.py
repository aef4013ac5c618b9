"""Hard-concrete L0 gates over rank bins (Louizos et al., 2018; ToP Sec. 3.2).

Each prune layer owns ``bin_num`` bin gates and one *pruner* gate. A token whose
importance rank falls in bin ``b`` is kept iff ``1 - (1 - z_b) * z_pruner`` is non-zero
(:func:`keep_rule`), so a layer prunes only where its pruner gate is on *and* the token's
bin gate is off.

The functions here are pure tensor maps; :class:`RankBinGates` holds the log-alphas.
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
"""Log-alphas of a set schedule: ``deterministic_gates`` opens/closes exactly these gates
(at the release bounds +-log 100 it would round 25 closed bins to 24)."""


def sample_hard_concrete(log_alpha: torch.Tensor) -> torch.Tensor:
    """Draw one stretched-and-clamped hard-concrete sample per log-alpha.

    Args:
        log_alpha: any shape.
    Returns:
        z of the same shape, in [0, 1], differentiable in ``log_alpha``.
    """
    u = torch.rand_like(log_alpha).clamp(EPS, 1 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def hard_concrete_cdf(x, log_alpha: torch.Tensor) -> torch.Tensor:
    """Q(x) = P(stretched concrete <= x) = sigmoid(beta * logit((x - gamma) / (zeta - gamma))
    - a) (Louizos et al., 2018, Eq. 12), for a float or tensor ``x`` in (gamma, zeta).

    Example:
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
    """Density dQ/dz of a gate on the open interval 0 < z < 1 (beside it: the point masses
    Q(0) at 0 and 1 - Q(1) at 1), the derivative of :func:`hard_concrete_cdf` by autograd.

    Args:
        z: values in (0, 1); log_alpha: broadcastable to ``z``.
    Returns:
        density, of the broadcast shape.
    Example:
        >>> z = torch.linspace(0.001, 0.999, 999)
        >>> a = torch.tensor(0.0)
        >>> mass = torch.trapezoid(hard_concrete_density(z, a), z)
        >>> round(float(mass + hard_concrete_cdf(0.0, a) + 1 - hard_concrete_cdf(1.0, a)), 2)
        1.0
    """
    z, log_alpha = torch.broadcast_tensors(z, log_alpha.detach())
    with torch.enable_grad():
        z = z.detach().clone().requires_grad_(True)
        return torch.autograd.grad(hard_concrete_cdf(z, log_alpha).sum(), z)[0]


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """Evaluation-time 0/1 gates, row by row (release convention).

    With ``k = round(size - sum P(z > 0))`` expected zeros in a row, the ``k`` gates with
    the smallest ``sigmoid(a / beta * 0.8)`` close and the rest open.

    Args:
        log_alpha: (G, size) one row per group of gates.
    Returns:
        (G, size) float tensor of 0/1.
    """
    size = log_alpha.shape[-1]
    n_zero = torch.round(size - prob_nonzero(log_alpha).sum(-1)).long()  # (G,)
    order = torch.sigmoid(log_alpha / BETA * EVAL_SCORE_SCALE).argsort(dim=-1)
    ranks = order.argsort(dim=-1)  # rank of each gate, 0 = smallest score
    return (ranks >= n_zero[:, None]).to(log_alpha.dtype)


PRUNER_ON_ABOVE = 0.0
"""A sampled pruner gate switches its layer's pruning on when z > 0 (the release's
``pruner_mask > 0.0``): the rate P(z > 0) = 1 - Q(0) that the expected FLOPs assume, so
training prunes as often as the constraint counts."""


def straight_through(z: torch.Tensor, threshold: float = PRUNER_ON_ABOVE) -> torch.Tensor:
    """Binarise ``z`` (1 where ``z > threshold``) in the forward pass, keep its gradient in
    the backward pass."""
    hard = (z > threshold).to(z.dtype)
    return hard + (z - z.detach())  # exactly 0/1 forward: hard + z - z would round off


def keep_rule(z_bins: torch.Tensor, z_pruner: torch.Tensor) -> torch.Tensor:
    """How much of bin b a prune layer keeps: ``1 - (1 - z_b) * z_pruner`` (ToP Eq. 4), for
    (..., bin_num) ``z_bins`` and (...) ``z_pruner``. The one home of the rule: on samples it
    gives training's soft keep mask, on 0/1 gates the bins evaluation keeps, on P(z > 0) the
    expected keep ratios.

    Example:
        >>> keep_rule(torch.tensor([[1.0, 0.0]]), torch.tensor([1.0])).tolist()
        [[1.0, 0.0]]
    """
    return 1.0 - (1.0 - z_bins) * z_pruner[..., None]


def expected_keep_ratio(bin_log_alpha: torch.Tensor,
                        pruner_log_alpha: torch.Tensor) -> torch.Tensor:
    """Expected fraction of alive tokens a prune layer keeps (METHOD Sec. 3).

    ``rho = 1 - (1 - mean_b P(z_b > 0)) * P(z_pruner > 0)``: the rule is linear in
    ``z_b``, so this is :func:`keep_rule` on the mean bin probability.

    Args:
        bin_log_alpha: (P, bin_num); pruner_log_alpha: (P,).
    Returns:
        (P,) keep ratios in [0, 1].
    """
    p_bins = prob_nonzero(bin_log_alpha).mean(-1, keepdim=True)
    return keep_rule(p_bins, prob_nonzero(pruner_log_alpha))[:, 0]


def schedule_gates(closed, bin_num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation gates of a schedule (benchmarks, baselines): at location p the
    ``closed[p]`` last (lowest-ranked) bins are 0 and the pruner is on iff any is closed.

    Returns:
        (z_bins (P, bin_num), z_pruner (P,)) of 0/1.
    """
    z_bins = torch.ones(len(closed), bin_num)
    for p, c in enumerate(closed):
        z_bins[p, bin_num - c:] = 0.0  # c = 0: an empty slice
    return z_bins, (z_bins == 0).any(-1).to(z_bins.dtype)


def _init_log_alpha(droprate: float) -> float:
    return math.log(1.0 - droprate) - math.log(droprate)


class RankBinGates(nn.Module):
    """The learnable gates of every prune layer.

    Args:
        num_layers: number of prune locations P.
        bin_num: BIN_NUM, gates per prune location.
        droprate_init: initial probability that a bin gate is closed; pruner gates start
            with the mirror probability of being *on*, so pruning starts switched off.
    Example:
        >>> g = RankBinGates(num_layers=5, bin_num=25)
        >>> z_bins, z_pruner = g(training=True)
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
            z_bins = sample_hard_concrete(self.bin_log_alpha)
            z_pruner = straight_through(sample_hard_concrete(self.pruner_log_alpha))
            return z_bins, z_pruner
        z_bins = deterministic_gates(self.bin_log_alpha)
        z_pruner = deterministic_gates(self.pruner_log_alpha[:, None])[:, 0]
        return z_bins, z_pruner

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
        """Fix every pruner gate that is on at evaluation (P(z > 0) > 0.5) on, for good.

        Afterwards training samples, the expected FLOPs and evaluation all see that layer
        pruning, so the constraint no longer holds a mixture that evaluation never runs.
        A pruner still off keeps learning (fixing it off could leave the target out of
        reach) and is fixed once it turns on. Idempotent; a gate at ``FIXED_LOG_ALPHA``
        (as saved) counts as fixed, so a resumed run keeps its fixed gates.

        Returns:
            (P,) bool, the fixed pruners.
        """
        on = deterministic_gates(self.pruner_log_alpha[:, None])[:, 0] > 0
        fixed = self._pruner_fixed_on | on | (self.pruner_log_alpha >= FIXED_LOG_ALPHA)
        self._pruner_fixed_on.copy_(fixed)
        self.pruner_log_alpha.masked_fill_(fixed, FIXED_LOG_ALPHA)
        return fixed

    @torch.no_grad()
    def fix_all_(self) -> None:
        """Fix every gate, bins and pruners, on or off, at its evaluation value: training
        then runs the exact masks evaluation runs, and only the weights learn. Idempotent."""
        pruners_on = deterministic_gates(self.pruner_log_alpha[:, None])[:, 0]
        for param, on in ((self.pruner_log_alpha, pruners_on),
                          (self.bin_log_alpha, deterministic_gates(self.bin_log_alpha))):
            param.copy_(torch.where(on > 0, FIXED_LOG_ALPHA, -FIXED_LOG_ALPHA))
            param.requires_grad_(False)

    @torch.no_grad()
    def kept_bins(self) -> torch.Tensor:
        """(P, bin_num) bool: the bins evaluation keeps at each prune location."""
        z_bins, z_pruner = self(training=False)
        return keep_rule(z_bins, z_pruner) > 0

    def closed_counts(self) -> list[int]:
        """Closed bins per prune location at evaluation: as ``fixed_schedule``, a top-k
        baseline that keeps this model's token counts layer by layer."""
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
