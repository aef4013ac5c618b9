"""Where the time goes: per-section timings of the dense loop and the dropping path."""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from ..core.flops import layer_macs
from ..infer import prune_forward

PROFILE_REPEATS = 5  # forward passes per path in a section profile


def synchronizer(device: torch.device):
    """A no-op on the CPU; on CUDA, wait for the queued kernels (timings need it)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


class SectionTimer:
    """Time per named section of :func:`prune_forward` (its ``timer``); sections given ``rows``
    (tokens computed) also keep (rows, seconds) samples, to fit time against work.

    >>> timer = SectionTimer()
    >>> with timer("ffn", rows=8):
    ...     pass
    >>> sorted(timer.totals), timer.samples["ffn"][0][0]
    (['ffn'], 8)
    """

    def __init__(self, clock=time.perf_counter):
        self.clock = clock  # time.process_time: CPU time, robust to other processes' load
        self.totals: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[tuple[int, float]]] = defaultdict(list)

    @contextmanager
    def __call__(self, name: str, rows: int | None = None):
        start = self.clock()
        try:
            yield
        finally:
            elapsed = self.clock() - start
            self.totals[name] += elapsed
            if rows is not None:
                self.samples[name].append((rows, elapsed))


@torch.inference_mode()
def profile_sections(top, batch: dict, repeats: int = PROFILE_REPEATS) -> dict:
    """Median ms per section of the dense loop (``prune_forward(pruning=False)``, the kernels
    of dense_dynamic) and the dropping path, passes alternating; process CPU time with one
    thread. ``ffn_fit``: FFN time per layer as ``fixed + per_row * rows``, ``fixed`` what
    pruning tokens cannot remove."""
    passes, kept, samples = {"dense": [], "drop": []}, {}, []
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    device = next(top.parameters()).device
    if device.type == "cuda":  # sections end when their kernels do
        sync = synchronizer(device)
        clock = lambda: (sync(), time.perf_counter())[1]  # noqa: E731
    for _ in range(repeats):
        for name in passes:
            timer = SectionTimer(clock)
            kept[name] = prune_forward(top, batch["input_ids"], batch["attention_mask"],
                                       batch.get("token_type_ids"), pruning=name == "drop",
                                       timer=timer).kept.cpu().double()
            passes[name].append(timer.totals)
            samples += timer.samples["ffn"]
    out = {name: {k: 1e3 * statistics.median(t.get(k, 0.0) for t in totals)
                  for k in set().union(*totals)} for name, totals in passes.items()}
    out["flops_reduction"] = _section_flops_reduction(top.dims, kept["dense"], kept["drop"])
    rows, secs = torch.tensor(samples, dtype=torch.float64).T  # each FFN call's (rows, s)
    design = torch.stack([torch.ones_like(rows), rows], dim=1)
    fixed, per_row = torch.linalg.lstsq(design, 1e3 * secs[:, None]).solution[:, 0].tolist()
    out["ffn_fit"] = {"fixed_ms": fixed, "per_row_ms": per_row,
                      "dense_layer_ms": fixed + per_row * float(rows.max())}
    return out


def _section_flops_reduction(dims, dense_t: torch.Tensor, drop_t: torch.Tensor) -> dict:
    """FLOPs reduction of each section (linear, attention core, FFN) from (B, N) token counts."""
    def parts(t):
        ffn_t = torch.cat([t[:, 1:], t[:, -1:]], dim=1)  # layer l's FFN runs on layer l+1's tokens
        linear = 4 * t * dims.hidden ** 2
        return {"attn_linear": float(linear.sum()),
                "attn_core": float((layer_macs(t, torch.zeros_like(t), dims) - linear).sum()),
                "ffn": float(layer_macs(torch.zeros_like(ffn_t), ffn_t, dims).sum())}

    dense_p, drop_p = parts(dense_t), parts(drop_t)
    return {k: dense_p[k] / drop_p[k] for k in dense_p}
