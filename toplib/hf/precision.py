"""Inference in bfloat16 (or float16 on CUDA): HF weights in that dtype, gates float32, so the
bins kept are the float32 model's (benchmarks/results/README.md)."""
from __future__ import annotations

import copy

import torch

from ..core.config import check
from .attention import fuse_qkv_

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Inference dtypes by name; float16 is for CUDA only (its CPU kernels are slow)."""


def resolve_dtype(dtype, device: str = "cpu", name: str = "dtype") -> torch.dtype | None:
    """A name of :data:`DTYPES` or a torch dtype, checked for ``device``; None: the model's own.

    Example:
        >>> resolve_dtype("bfloat16")
        torch.bfloat16
    """
    if dtype is None:
        return None
    by_dtype = {v: k for k, v in DTYPES.items()}
    resolved = DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    check(name, dtype, resolved in by_dtype, f"one of {', '.join(DTYPES)} (or None)")
    check(name, dtype, resolved != torch.float16 or torch.device(device).type == "cuda",
          f"float16 is for CUDA devices (device={device!r}); on a CPU use bfloat16")
    return resolved


def dtype_name(dtype: torch.dtype) -> str:
    """'bfloat16' for torch.bfloat16."""
    return str(dtype).removeprefix("torch.")


def _copy_key(top) -> tuple:
    """Changes when a weight or buffer is replaced or updated in place, or the pruning structure
    or config changes. Writes through ``.data`` bump no version: they are not seen."""
    tensors = (*top.parameters(), *top.buffers())
    return (tuple((t.data_ptr(), t._version) for t in tensors), repr(top.prune),
            top.config.to_json_string())


def cast_model(top, dtype) -> torch.nn.Module:
    """``top`` itself if it computes in ``dtype`` (or ``dtype`` is None), else an inference copy."""
    dtype = resolve_dtype(dtype, str(next(top.parameters()).device))
    if dtype is None or dtype == top.model.dtype:  # the HF weights' (gates stay float32)
        return top
    return inference_copy(top, dtype)


def inference_copy(top, dtype=None) -> torch.nn.Module:
    """An eval-mode copy of ``top`` in ``dtype`` (None: its own), query-key-value stacked,
    cached on ``top`` per dtype until its weights change."""
    dtype = resolve_dtype(dtype, str(next(top.parameters()).device)) or top.model.dtype
    key = _copy_key(top)
    cache = {d: entry for d, entry in top.__dict__.pop("_toplib_casts", {}).items()
             if entry[0] == key}  # stale copies are freed before a new one is made
    if dtype not in cache:
        inference = copy.deepcopy(top)  # the cache is off ``top`` meanwhile: not copied
        fuse_qkv_(inference.model.to(dtype))
        cache[dtype] = (key, inference.eval())
    top.__dict__["_toplib_casts"] = cache
    return cache[dtype][1]


def clear_copies(top) -> None:
    """Free the inference copies cached on ``top``."""
    top.__dict__.pop("_toplib_casts", None)


def cpu_flags() -> dict:
    """Low-precision instructions of this CPU, from /proc/cpuinfo ({} elsewhere). bf16 matmuls
    are fast only with avx512_bf16 or AMX; int8 with VNNI or AMX."""
    wanted = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return {}
    return {name: name in flags for name in wanted}
