"""Token importance, rank bins and removing pruned tokens (ToP Sec. 3.1; METHOD Sec. 1-2).

A layer's kept count depends only on how many tokens are alive, so examples of similar
length stay similar: survivors are gathered to the front and the batch re-padded to its
longest, so every linear stays one batched GEMM (packing them into one sequence would need a
variable-length attention kernel, which PyTorch lacks on CPU).

``alive``: (B, n) 0/1 mask of tokens still in the sequence; position 0 is [CLS], never
ranked or pruned.
"""
from __future__ import annotations

import functools

import torch

from .gates import keep_rule


def token_importance(probs: torch.Tensor, alive: torch.Tensor,
                     rows: torch.Tensor | None = None) -> torch.Tensor:
    """(B, n) attention each token receives, averaged over heads and query rows; 0 where not
    ``alive`` (B, n). ``probs``: (B, A, n, n), rows are queries; ``rows``: (B, n) query rows
    to average, default ``alive`` (the release's every row: ones).

    >>> p = torch.softmax(torch.randn(2, 4, 6, 6), -1)
    >>> token_importance(p, torch.ones(2, 6)).shape
    torch.Size([2, 6])
    """
    dtype = score_dtype(probs.dtype)  # bf16 scores would tie where float32 ones rank
    alive = alive.to(dtype)
    rows = alive if rows is None else rows.to(dtype)
    received = probs.mean(dim=1, dtype=dtype)  # (B, n_query, n_key), head mean
    per_query = rows / rows.sum(-1, keepdim=True).clamp_min(1.0)  # (B, n) query weights
    if _autocasting(probs.device.type):  # there an einsum is a bf16 bmm: a weighted sum
        scores = (per_query[..., None] * received).sum(1)
    else:
        scores = torch.einsum("bq,bqk->bk", per_query, received)
    return scores * alive


def _autocasting(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (the meta device has none)."""
    return device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)


def score_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype importance is computed in: at least float32, whatever the model's."""
    return torch.promote_types(dtype, torch.float32)


RELEASE_BIN_EPS = 1e-6
"""The release bins ranks by ``floor(r / (m + 1e-6) * BIN_NUM)`` in float32
(``modeling_bert.py``): below 32 tokens ``m + 1e-6`` rounds above ``m``, so some ranks fall
one bin lower (``bin_rounding="release"``)."""


def rank_bins(importance: torch.Tensor, alive: torch.Tensor, bin_num: int,
              eps: float = 0.0) -> torch.Tensor:
    """(B, n) long bin of each alive non-[CLS] token, ``floor(r / (m + eps) * bin_num)``, r its
    0-based descending rank among the m candidates (bin 0: most important; [CLS] and dead
    tokens get 0), for (B, n) ``importance`` and ``alive``."""
    candidates = alive.bool().clone()
    candidates[:, 0] = False
    masked = importance.masked_fill(~candidates, float("-inf"))
    order = masked.argsort(dim=-1, descending=True, stable=True)
    ranks = order.argsort(dim=-1).to(importance.dtype)  # (B, n) 0 = most important
    m = candidates.sum(-1, keepdim=True).clamp_min(1).to(importance.dtype)
    bins = torch.floor(ranks / (m + eps) * bin_num).long().clamp_(0, bin_num - 1)
    return bins.masked_fill(~candidates, 0)


def keep_mask(
    bins: torch.Tensor, alive: torch.Tensor, z_bins: torch.Tensor, z_pruner: torch.Tensor
) -> torch.Tensor:
    """(B, n) alive mask after one prune layer, ``alive * keep_rule(z_bins[bins], z_pruner)``
    ([CLS] kept), for (B, n) ``bins`` and ``alive``, (bin_num,) ``z_bins``, () ``z_pruner``."""
    keep = keep_rule(z_bins[bins], z_pruner)
    keep = torch.cat([torch.ones_like(keep[:, :1]), keep[:, 1:]], dim=1)  # CLS always kept
    return alive * keep


def table_size(max_candidates: int) -> int:
    """A power of two >= ``max_candidates``: the cached tables come in few sizes."""
    return 1 << max(max_candidates, 1).bit_length()


@functools.lru_cache(maxsize=16)
def rank_bin_table(max_candidates: int, bin_num: int, dtype: torch.dtype = torch.float32,
                   device: str = "cpu", eps: float = 0.0) -> torch.Tensor:
    """(max_candidates + 1, max_candidates) long: row m holds the bins of ranks 0..m-1, then
    ``bin_num`` (no bin: a (bin_num + 1,) lookup ending in False ignores it). Built with
    :func:`rank_bins` in ``dtype``, so boundaries round as in the model."""
    m = torch.arange(max_candidates + 1)
    width = max_candidates + 1  # [CLS] + candidates
    alive = (torch.arange(width)[None, :] <= m[:, None]).to(dtype)
    scores = -torch.arange(width, dtype=dtype).expand(len(m), -1)
    bins = rank_bins(scores, alive, bin_num, eps)[:, 1:]
    return bins.masked_fill(alive[:, 1:] == 0, bin_num).to(device)


def kept_counts(lengths: torch.Tensor, keep_bins: torch.Tensor, prune_location, num_layers: int,
                bin_num: int, eps: float = 0.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(E, N) long tokens entering each layer under (P, bin_num) 0/1 ``keep_bins``, from the
    (E,) real lengths ([CLS] included) alone. ``dtype``: what ranks are binned in
    (:func:`score_dtype` of the model's; float32 and float64 round boundaries differently).

    >>> keep = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # the lower half of the ranks closes
    >>> kept_counts(torch.tensor([9]), keep, (1,), 2, 4).tolist()
    [[9, 5]]
    """
    locations = {loc: p for p, loc in enumerate(prune_location)}
    table = rank_bin_table(table_size(int(lengths.max()) - 1), bin_num, dtype, eps=eps)
    keep = torch.cat([keep_bins.bool().cpu(), torch.zeros(len(keep_bins), 1, dtype=torch.bool)], 1)
    alive_n = lengths.long().cpu().clone()
    rows = []
    for layer in range(num_layers):
        if layer in locations:
            values, inverse = torch.unique(alive_n, return_inverse=True)
            kept = keep[locations[layer]][table[values - 1]].sum(-1) + 1  # [CLS] always stays
            alive_n = kept[inverse]
        rows.append(alive_n.clone())
    return torch.stack(rows, dim=1)


# ---- removing pruned tokens (inference; training's exact zeros) -------------------------
def drop_tokens(hidden, alive, scores, open_bins, bin_num: int, eps: float = 0.0,
                counts: torch.Tensor | None = None):
    """Prune by rank bins, survivors gathered to the front in their order and re-padded:
    (hidden (B, m', H), alive (B, m') bool), m' the longest survivor.

    ``hidden``: (B, m, H); ``alive``: (B, m) bool, None when all are real tokens; ``scores``:
    (B, m); ``open_bins``: (bin_num,) bool tensor or tuple. Given ``counts``, the (B,) host
    tensor of tokens each example keeps ([CLS] included), nothing is read back from the device.
    """
    if alive is None or (counts is None and bool(alive.all())):
        return _drop_unpadded(hidden, scores, open_bins, bin_num, eps)
    bins = rank_bins(scores, alive.to(scores.dtype), bin_num, eps)
    keep = alive & _on(open_bins, bins.device)[bins]
    keep[:, 0] = True  # [CLS] is never pruned
    if counts is None:
        counts = keep.sum(-1)
    order = survivors_first(keep, int(counts.max()))  # a host tensor when planned: no wait
    hidden = take_rows(hidden, order)
    width = order.shape[1]
    counts = counts.to(hidden.device, non_blocking=True)
    alive = torch.arange(width, device=hidden.device)[None, :] < counts[:, None]
    return hidden, alive


def survivors_first(keep: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) positions of the (B, m) bool ``keep`` tokens first, in order, then dropped ones."""
    return torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :width]


def take_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows ``order`` (B, m') of ``x`` (B, m, ...), by one ``index_select`` on the flat batch."""
    batch, m = x.shape[:2]
    if batch == 1:  # no row offsets to add: one kernel fewer per prune layer
        return x[0].index_select(0, order[0])[None]
    rows = (order + torch.arange(batch, device=order.device)[:, None] * m).reshape(-1)
    return x.reshape(batch * m, *x.shape[2:]).index_select(0, rows).view(*order.shape,
                                                                         *x.shape[2:])


def drop_zero_keeps(hidden: torch.Tensor, alive: torch.Tensor, positions: torch.Tensor):
    """Training's exact token dropping: tokens whose (B, m) soft ``alive`` is exactly 0 leave
    ``hidden`` (B, m, H), ``alive`` and ``positions`` (B, m), survivors to the front,
    re-padded (alive 0). Exact: nothing downstream reads such a token, and the masked path
    sends it no gradient. Differentiable; one read-back (the longest survivor)."""
    kept = alive > 0
    order = survivors_first(kept, int(kept.sum(-1).max()))
    return take_rows(hidden, order), alive.gather(1, order), positions.gather(1, order)


def _on(open_bins, device) -> torch.Tensor:
    """``open_bins`` (a tensor or a tuple of bools) as a bool tensor on ``device``."""
    if isinstance(open_bins, torch.Tensor):
        return open_bins.to(device)
    return _cached_bins(tuple(open_bins), str(device))


@functools.lru_cache(maxsize=256)
def _cached_bins(open_bins: tuple, device: str) -> torch.Tensor:
    return torch.tensor(open_bins, dtype=torch.bool, device=device)


@functools.lru_cache(maxsize=1024)
def _ranks_kept(m: int, open_bins: tuple, bin_num: int, eps: float, dtype: torch.dtype,
                device: str) -> torch.Tensor:
    """Ranks (0 = most important) in open bins among ``m`` candidates, on ``device``, cached:
    found on the host, copied there once."""
    bins = rank_bin_table(table_size(m), bin_num, dtype, "cpu", eps)[m, :m]
    return torch.tensor(open_bins, dtype=torch.bool)[bins].nonzero().flatten().to(device)


def _drop_unpadded(hidden, scores, open_bins, bin_num: int, eps: float = 0.0):
    """:func:`drop_tokens` for rows of real tokens only: every row keeps the same ranks (known
    on the host), so no masks are needed; survivors stay in position order."""
    batch, n = hidden.shape[:2]
    if isinstance(open_bins, torch.Tensor):
        open_bins = tuple(open_bins.tolist())
    ranks = _ranks_kept(n - 1, open_bins, bin_num, eps, scores.dtype, str(scores.device))
    order = scores[:, 1:].argsort(dim=1, descending=True, stable=True)
    kept = order[:, ranks].sort(dim=1).values + 1
    rows = torch.cat([kept.new_zeros(batch, 1), kept], dim=1)  # [CLS] first
    hidden = take_rows(hidden, rows)
    return hidden, torch.ones(batch, rows.shape[1], dtype=torch.bool, device=hidden.device)
