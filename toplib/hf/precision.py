"""Precision as an option: run a ToPModel in bfloat16 (or float16 on CUDA) for inference.

Users who deploy rarely run float32: on a CPU with bf16 instructions (AVX-512 BF16, AMX)
``model.to(torch.bfloat16)`` alone is 2-3x faster. :func:`inference_copy` gives a copy of a
ToPModel whose Hugging Face weights are in the chosen dtype while its gates stay float32,
so the bins a layer keeps are the float32 model's. Token importance is averaged in float32
(``toplib.core.importance``), so rank ties do not multiply with bf16's 8-bit mantissa; the
remaining differences come from the bf16 hidden states themselves (measured in the README:
labels agree with float32 on >= 99% of real validation examples).
"""
from __future__ import annotations

import copy

import torch

from ..core.config import check
from .attention import fuse_qkv_

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The inference dtypes by name: float16 is for CUDA only (CPU kernels for it are slow)."""


def resolve_dtype(dtype, device: str = "cpu", name: str = "dtype") -> torch.dtype | None:
    """``dtype`` (a name of :data:`DTYPES`, a torch dtype or None) as a torch dtype, after
    checking it suits ``device``; None stays None (the model's own dtype).

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
    """'bfloat16' for torch.bfloat16: the name results record."""
    return str(dtype).removeprefix("torch.")


def model_dtype(top) -> torch.dtype:
    """The dtype a ToPModel computes in: its Hugging Face weights' (gates stay float32)."""
    return top.model.dtype


def _copy_key(top) -> tuple:
    """Changes whenever what a copy holds may have: a weight or buffer replaced or updated
    in place (optimiser steps, ``load_state_dict``: the storage and version of each), the
    pruning structure or the config. Writes through ``.data`` bump no version and are not
    seen: update weights under ``torch.no_grad()`` instead."""
    tensors = (*top.parameters(), *top.buffers())
    return (tuple((t.data_ptr(), t._version) for t in tensors), repr(top.prune),
            top.config.to_json_string())


def cast_model(top, dtype) -> torch.nn.Module:
    """``top`` computing in ``dtype``: ``top`` itself when it already does (or ``dtype`` is
    None), else :func:`inference_copy` in ``dtype``."""
    dtype = resolve_dtype(dtype, str(next(top.parameters()).device))
    if dtype is None or dtype == model_dtype(top):
        return top
    return inference_copy(top, dtype)


def inference_copy(top, dtype=None) -> torch.nn.Module:
    """A copy of ``top`` for inference, in eval mode: its Hugging Face model in ``dtype``
    (None: ``top``'s own), its gates float32, every self-attention with one stacked
    query-key-value projection (:func:`toplib.hf.attention.fuse_qkv_`). The copy is cached
    on ``top`` (one per dtype) until ``top``'s weights change, so calling this per batch
    costs nothing after the first."""
    dtype = resolve_dtype(dtype, str(next(top.parameters()).device)) or model_dtype(top)
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
    """Free the inference copies cached on ``top`` (:func:`inference_copy`)."""
    top.__dict__.pop("_toplib_casts", None)


def cpu_flags() -> dict:
    """Which low-precision instructions this CPU has (from /proc/cpuinfo; {} elsewhere):
    avx512_bf16, amx_bf16, amx_int8, avx512_vnni, avx_vnni. bf16 matmuls are fast only
    with avx512_bf16 or AMX; int8 (onnxruntime's quantized graphs) with VNNI or AMX."""
    wanted = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return {}
    return {name: name in flags for name in wanted}
