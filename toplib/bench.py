"""Latency benchmark: dense vs. masked ToP vs. token-dropping ToP, on real sentences.

Four variants, timed in one process, interleaved round-robin (drift in clock speed or
machine load hits all of them alike), median of ``runs`` rounds after ``warmup`` rounds:

* ``dense_padded``: the Hugging Face model as users run it (SDPA), padded to max_seq_length.
* ``dense_dynamic``: the same with padding removed (each batch padded to its longest).
* ``top_masked``: ``ToPModel.forward`` on max_seq_length-padded inputs, as the release runs.
* ``top_drop``: :func:`toplib.infer.prune_forward`, pruned tokens removed.

FLOPs reductions come from ``toplib.flops`` on the tokens ``top_drop`` kept, against the
dense model at real length and at max_seq_length; ``ratio`` = measured speedup / FLOPs
reduction. :func:`profile_sections` says where the time goes. ``toplib bench`` (see
:func:`register_cli`) prints :func:`format_report` tables and writes JSON.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from .config import PruneConfig, parse_layers
from .data import encode, get_task, load_task_data
from .flops import dense_macs, encoder_macs, layer_macs
from .infer import SectionTimer, pad_batch, prune_forward, set_eval_sparsity
from .model import ToPModel

logger = logging.getLogger(__name__)

VARIANTS = ("dense_padded", "dense_dynamic", "top_masked", "top_drop")
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072)  # Devlin et al. 2019, BERT-base
PROFILE_REPEATS = 5  # forward passes per path in a section profile


@dataclass
class BenchSettings:
    """What to time and on which inputs."""

    task: str = "rotten_tomatoes"
    """Task whose validation texts are the inputs."""
    data_dir: str | None = None
    """Data folder of the task (GLUE root, 20news folder); None for rotten_tomatoes."""
    length: int | None = None
    """Real tokens per input: longer texts truncated, shorter ones skipped (None: as is)."""
    batch_sizes: tuple[int, ...] = (1, 32)
    """Batch sizes to time."""
    runs: int = 20
    """Timed rounds per batch size (the median is reported)."""
    warmup: int = 3
    """Untimed rounds before timing."""
    max_seq_length: int | None = None
    """Padded length of dense_padded/top_masked (None: the task's, at least ``length``)."""
    sparsity: float | None = None
    """Set the gates to this real-length FLOPs sparsity on the inputs (None: keep them)."""
    onednn: bool | None = None
    """Run every Linear of every variant on prepacked oneDNN weights (see ``use_onednn``);
    None: when this PyTorch build has them. The model passed in is never modified."""
    seed: int = 0
    """Seed of the random weights of --config models."""
    device: str = "cpu"
    """Where to time: "cpu" or a CUDA device (timings synchronise the device)."""

    def __post_init__(self):
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        sizes_ok = bool(self.batch_sizes) and min(self.batch_sizes) >= 1
        for name, ok, allowed in (
                ("batch_sizes", sizes_ok, "sizes >= 1"),
                ("runs", self.runs >= 1, "must be >= 1"),
                ("warmup", self.warmup >= 0, "must be >= 0"),
                ("length", self.length is None or self.length >= 2, "must be >= 2 or None"),
                ("sparsity", self.sparsity is None or 0 <= self.sparsity < 1, "in [0, 1)")):
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: {allowed}")


# ---- models -----------------------------------------------------------------------------
def build_model(checkpoint: str | None = None, config: str | None = None,
                tokenizer: str | None = None, prune: PruneConfig | None = None,
                num_labels: int = 2, seed: int = 0):
    """A ToPModel and tokenizer: from a checkpoint, or random weights from a config.

    Args:
        checkpoint: toplib or plain Hugging Face checkpoint, or a run directory (its
            ``best/``); default: the offline MiniLM.
        config: "bert-base" or a Hugging Face config name/path: random weights.
        tokenizer: tokenizer of ``config`` models (default: the offline MiniLM's).
        prune: pruning structure (None: the checkpoint's, or the defaults).
    Returns:
        (top in eval mode, tokenizer).
    """
    from .loading import resolve_model_path
    if config is None:
        from .checkpoint import checkpoint_path
        path = resolve_model_path(checkpoint)
        path = checkpoint_path(path) if os.path.isdir(path) else path  # a run dir -> its best/
        top = ToPModel.from_pretrained(path, prune=prune, num_labels=num_labels)
        return top.eval(), AutoTokenizer.from_pretrained(path)
    if config == "bert-base":
        hf_config = BertConfig(num_labels=num_labels, **BERT_BASE)
    else:
        hf_config = AutoConfig.from_pretrained(resolve_model_path(config), num_labels=num_labels)
    torch.manual_seed(seed)
    hf = AutoModelForSequenceClassification.from_config(hf_config, attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer))
    return ToPModel(hf, prune).eval(), tok


def dense_copy(top) -> torch.nn.Module:
    """The unpatched Hugging Face classifier with SDPA attention, sharing no state with ``top``
    (on ``top``'s device)."""
    dense = AutoModelForSequenceClassification.from_config(copy.deepcopy(top.config),
                                                           attn_implementation="sdpa")
    dense.load_state_dict(top.model.state_dict())
    return dense.to(next(top.parameters()).device).eval()


class OneDNNLinear(torch.nn.Module):
    """``nn.Linear`` on oneDNN with a prepacked weight (the kernel of PyTorch's inductor on CPU).

    PyTorch's default fp32 GEMM (MKL) has a large fixed cost per call on AMD CPUs when a
    matrix has few rows, which is what pruning produces; prepacked oneDNN weights cut it.
    Same maths, float rounding aside.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, None))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x):
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def onednn_available() -> bool:
    """Whether this PyTorch build has the prepacked oneDNN linear ops."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def use_onednn(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every ``nn.Linear`` of ``model`` for :class:`OneDNNLinear`, in place.

    Inference only: the swapped model has no trainable linear weights and its state dict
    holds packed buffers, so benchmark a copy (:func:`run_benchmark` does).
    """
    if not onednn_available():
        raise ValueError("onednn=True needs a PyTorch build with oneDNN (mkldnn) linear ops")
    for name, child in model.named_children():
        setattr(model, name, OneDNNLinear(child) if isinstance(child, torch.nn.Linear)
                else use_onednn(child))
    return model


# ---- inputs -----------------------------------------------------------------------------
def max_seq_length(settings: BenchSettings) -> int:
    """Padded length of the padded variants: the task's, raised to ``length``."""
    padded = settings.max_seq_length or get_task(settings.task).max_seq_length
    return max(padded, settings.length or 0)


def benchmark_inputs(settings: BenchSettings, tokenizer, count: int) -> list[dict]:
    """Up to ``count`` encoded validation examples (exactly ``settings.length`` tokens if set)."""
    spec = get_task(settings.task)
    data = load_task_data(spec.name, data_dir=settings.data_dir)[spec.validation_splits[0]]
    encoded = encode(data, tokenizer, settings.length or max_seq_length(settings))
    if settings.length:
        encoded = [e for e in encoded if len(e["input_ids"]) == settings.length]
    if not encoded:
        raise ValueError(f"length={settings.length}: no {spec.name} validation text is that long")
    if len(encoded) < count:
        logger.info("only %d inputs of this length (wanted %d): batches repeat",
                    len(encoded), count)
    return encoded[:count]


def make_batches(encoded: list[dict], batch_size: int, rounds: int, pad_id: int, pad_to: int,
                 device: str = "cpu"):
    """Distinct batches (at most ``rounds``), each as (padded to ``pad_to``, dynamic) pair."""
    batches = []
    for i in range(max(1, min(rounds, len(encoded) // batch_size))):
        dynamic = pad_batch([encoded[(i * batch_size + j) % len(encoded)]
                             for j in range(batch_size)], pad_id)
        extra = pad_to - dynamic["input_ids"].shape[1]
        padded = {k: torch.nn.functional.pad(v, (0, extra), value=pad_id if k == "input_ids" else 0)
                  for k, v in dynamic.items()}
        batches.append(({k: v.to(device) for k, v in padded.items()},
                        {k: v.to(device) for k, v in dynamic.items()}))
    return batches


# ---- timing -----------------------------------------------------------------------------
def variant_fns(top, dense, padded: dict, dynamic: dict) -> dict:
    """The four variants as zero-argument callables on one batch."""
    args = (padded["input_ids"], padded["attention_mask"], padded.get("token_type_ids"))
    return {"dense_padded": lambda: dense(**padded), "dense_dynamic": lambda: dense(**dynamic),
            "top_masked": lambda: top(*args), "top_drop": lambda: prune_forward(top, *args)}


def _synchronizer(device: torch.device):
    """A no-op on the CPU; on CUDA, wait for the queued kernels (timings need it)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@torch.inference_mode()
def time_round_robin(batches, top, dense, runs: int, warmup: int) -> dict[str, dict]:
    """Seconds per forward pass of each variant; round r uses batch r mod len(batches).

    Returns:
        {"wall": {variant: [seconds]}, "cpu": {variant: [seconds]}}. CPU time (of the
        process) leaves out time spent descheduled, so with one thread it shows what the
        wall clock would on a quiet machine; with more it also counts threads spinning.
    """
    times = {"wall": {name: [] for name in VARIANTS}, "cpu": {name: [] for name in VARIANTS}}
    sync = _synchronizer(next(top.parameters()).device)
    for r in tqdm(range(warmup + runs), desc="rounds", leave=False):
        fns = variant_fns(top, dense, *batches[r % len(batches)])
        for name in VARIANTS:
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            fns[name]()
            sync()
            if r >= warmup:
                times["wall"][name].append(time.perf_counter() - wall)
                times["cpu"][name].append(time.process_time() - cpu)
    return times


@torch.inference_mode()
def flops_figures(top, batches) -> dict:
    """MACs of what top_drop computed vs. dense at real length and at padded length."""
    kept = torch.cat([prune_forward(top, p["input_ids"], p["attention_mask"],
                                    p.get("token_type_ids")).kept.cpu() for p, _ in batches]).double()
    lengths = torch.cat([p["attention_mask"].sum(-1).cpu() for p, _ in batches]).double()
    pad_to = batches[0][0]["input_ids"].shape[1]
    pruned = encoder_macs(kept, top.dims).sum()
    real = dense_macs(lengths, top.dims).sum()
    padded = dense_macs(torch.full_like(lengths, pad_to), top.dims).sum()
    return {"sparsity_real": float(1 - pruned / real), "reduction_real": float(real / pruned),
            "reduction_padded": float(padded / pruned), "mean_length": float(lengths.mean()),
            "max_seq_length": int(pad_to), "kept_per_layer": kept.mean(0).tolist()}


@torch.inference_mode()
def profile_sections(top, batch: dict, repeats: int = PROFILE_REPEATS) -> dict:
    """Milliseconds per section of toplib's dense loop and of the dropping path.

    ``dense`` is :func:`prune_forward` with ``pruning=False`` (SDPA, real length): the
    kernels of dense_dynamic. Passes alternate; each section reports its median. Sections
    outside the FLOPs model (embeddings, importance, gather, gates, head) are overhead.
    With one thread, sections are timed in process CPU time (robust to other jobs).
    ``ffn_fit`` fits FFN time per layer as ``fixed + per_row * rows`` over every layer of
    both paths: ``fixed`` is the cost that pruning tokens cannot remove (weights streamed
    from memory, per-call overhead).
    """
    passes, kept, samples = {"dense": [], "drop": []}, {}, []
    # One thread: CPU time equals wall time on a quiet machine and ignores other jobs' load.
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    device = next(top.parameters()).device
    if device.type == "cuda":  # sections end when their kernels do
        sync = _synchronizer(device)
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
    rows = torch.tensor([float(r) for r, _ in samples])
    secs = torch.tensor([1e3 * s for _, s in samples])
    design = torch.stack([torch.ones_like(rows), rows], dim=1)
    fixed, per_row = torch.linalg.lstsq(design, secs[:, None]).solution[:, 0].tolist()
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


def resolve_onednn(onednn: bool | None, device: str = "cpu") -> bool:
    """``None`` -> whether the build has oneDNN linears (CPU only); True without them is an error."""
    if torch.device(device).type != "cpu":
        if onednn:
            raise ValueError(f"onednn=True is for the CPU, not device={device!r}")
        return False
    if onednn is None:
        return onednn_available()
    if onednn and not onednn_available():
        raise ValueError("onednn=True needs a PyTorch build with oneDNN (mkldnn) linear ops")
    return bool(onednn)


def prepare_dense(top, onednn: bool | None = None) -> torch.nn.Module:
    """The dense baseline of ``top`` (a copy), on oneDNN linears when ``onednn`` resolves True."""
    dense = dense_copy(top)
    device = str(next(top.parameters()).device)
    return use_onednn(dense) if resolve_onednn(onednn, device) else dense


def timed_copy(top, onednn: bool | None = None):
    """What the ToP variants time: ``top`` itself, or a copy on oneDNN linears."""
    if not resolve_onednn(onednn, str(next(top.parameters()).device)):
        return top
    timed = copy.deepcopy(top)
    use_onednn(timed.model)
    return timed.eval()


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({os.cpu_count()} cores)"


def run_benchmark(settings: BenchSettings, top, tokenizer, dense=None) -> dict:
    """Time the four variants at every batch size; returns a JSON-ready dict.

    Args:
        settings: what to time; top: a ToPModel; tokenizer: its tokenizer.
        dense: the dense baseline (default: ``prepare_dense(top, settings.onednn)``; pass
            one to reuse it across calls). ``top`` itself is never modified beyond its
            gates (``settings.sparsity``): oneDNN timings run on a copy.
    Example:
        >>> top, tok = build_model(config="bert-base")  # doctest: +SKIP
        >>> settings = BenchSettings("20news", "data/20news", length=128, sparsity=0.6)
        >>> run_benchmark(settings, top, tok)  # doctest: +SKIP
    """
    pad_to = max_seq_length(settings)
    pad_id = top.config.pad_token_id if top.config.pad_token_id is not None else 0
    top.to(settings.device)
    encoded = benchmark_inputs(settings, tokenizer, max(settings.batch_sizes) * settings.runs)
    if settings.sparsity is not None:
        lengths = torch.tensor([len(e["input_ids"]) for e in encoded])
        set_eval_sparsity(top, lengths, settings.sparsity)
    dense = dense if dense is not None else prepare_dense(top, settings.onednn)
    timed = timed_copy(top, settings.onednn)  # after set_eval_sparsity: the copy has its gates
    d = top.dims
    results = {"settings": dict(asdict(settings), onednn=timed is not top),
               "threads": torch.get_num_threads(), "device": _device_name(settings.device),
               "cpu_count": os.cpu_count(), "batches": [],
               "model": {"model_type": top.config.model_type, "layers": d.num_layers,
                         "hidden": d.hidden, "heads": d.heads, "intermediate": d.intermediate,
                         "prune_location": list(top.prune.prune_location),
                         "bin_num": top.prune.bin_num}}
    for bs in settings.batch_sizes:
        batches = make_batches(encoded, bs, settings.runs, pad_id, pad_to, settings.device)
        load = os.getloadavg()[0]  # other processes distort timings: keep the load beside them
        times = time_round_robin(batches, timed, dense, settings.runs, settings.warmup)
        row = {"batch_size": bs, "num_batches": len(batches), **flops_figures(top, batches),
               "loadavg_1min": [load, os.getloadavg()[0]]}
        lat = row["latency_ms"] = {k: 1e3 * statistics.median(v) for k, v in times["wall"].items()}
        cpu = row["cpu_ms"] = {k: 1e3 * statistics.median(v) for k, v in times["cpu"].items()}
        row["throughput"] = {k: bs * 1e3 / v for k, v in lat.items()}
        row["speedup_vs_dynamic"] = lat["dense_dynamic"] / lat["top_drop"]
        row["speedup_vs_padded"] = lat["dense_padded"] / lat["top_drop"]
        row["ratio_real"] = row["speedup_vs_dynamic"] / row["reduction_real"]
        row["ratio_padded"] = row["speedup_vs_padded"] / row["reduction_padded"]
        row["ratio_real_cpu"] = cpu["dense_dynamic"] / cpu["top_drop"] / row["reduction_real"]
        row["profile"] = profile_sections(timed, batches[0][1], min(PROFILE_REPEATS, settings.runs))
        results["batches"].append(row)
        logger.info("batch %d: %s", bs, {k: round(v, 2) for k, v in lat.items()})
    return results


# ---- report and command line ------------------------------------------------------------
OVERHEAD_SECTIONS = ("embeddings", "gates", "importance", "gather", "head")


def format_report(results: dict) -> str:
    """A readable table of one :func:`run_benchmark` result, with where the time goes."""
    s, m = results["settings"], results["model"]
    lines = [f"{m['model_type']} {m['layers']}x{m['hidden']}, prune layers "
             f"{m['prune_location'][0]}..{m['prune_location'][-1]} | {s['task']} | "
             f"length {s['length'] or 'as is'} | "
             f"{results.get('device', 'CPU')} | {results['threads']} threads"
             f"{' | oneDNN linears' if s['onednn'] else ''} | "
             f"median of {s['runs']} runs"]
    for row in results["batches"]:
        lat = row["latency_ms"]
        lines += ["", f"batch {row['batch_size']}: sparsity {row['sparsity_real']:.3f} (real "
                      f"length); FLOPs reduction {row['reduction_real']:.2f}x real, "
                      f"{row['reduction_padded']:.2f}x vs {row['max_seq_length']} padded; "
                      f"load avg {row['loadavg_1min'][0]:.1f}",
                  f"  {'variant':<14}{'latency ms':>12}{'ex/s':>10}{'speedup':>10}{'cpu ms':>12}"]
        lines += [f"  {name:<14}{lat[name]:>12.2f}{row['throughput'][name]:>10.1f}"
                  f"{lat['dense_dynamic'] / lat[name]:>9.2f}x{row['cpu_ms'][name]:>12.2f}"
                  for name in VARIANTS]
        lines.append(f"  top_drop: {row['speedup_vs_dynamic']:.2f}x over dense_dynamic = "
                     f"{row['ratio_real']:.2f} of the real FLOPs reduction (CPU time: "
                     f"{row['ratio_real_cpu']:.2f}); {row['speedup_vs_padded']:.2f}x over "
                     f"dense_padded = {row['ratio_padded']:.2f} of the padded one")
        lines += _profile_lines(row["profile"])
    return "\n".join(lines)


def _profile_lines(profile: dict) -> list[str]:
    dense, drop, flops = profile["dense"], profile["drop"], profile["flops_reduction"]
    lines = ["  where the time goes (ms per forward, median; toplib loop, dense = no pruning):",
             f"    {'section':<12}{'dense':>9}{'drop':>9}{'speedup':>9}{'FLOPs':>8}"]
    for name in sorted(set(dense) | set(drop), key=lambda k: -dense.get(k, 0.0)):
        d, p = dense.get(name, 0.0), drop.get(name, 0.0)
        ratio = f"{d / p:.2f}x" if name in flops and p > 0 else "-"
        lines.append(f"    {name:<12}{d:>9.2f}{p:>9.2f}{ratio:>9}"
                     f"{(f'{flops[name]:.2f}x' if name in flops else '-'):>8}")
    overhead, total = sum(drop.get(k, 0.0) for k in OVERHEAD_SECTIONS), sum(drop.values())
    fit = profile["ffn_fit"]
    lines += [f"    {'total':<12}{sum(dense.values()):>9.2f}{total:>9.2f}",
              f"    overhead outside the FLOPs model: {overhead:.2f} ms "
              f"({100 * overhead / total:.0f}% of drop); FFN time per layer = "
              f"{max(fit['fixed_ms'], 0):.2f} ms fixed + {1e3 * fit['per_row_ms']:.1f} us/token "
              f"(fixed: {max(100 * fit['fixed_ms'] / fit['dense_layer_ms'], 0):.0f}% of a dense "
              f"layer's FFN, a cost that pruning tokens cannot remove)"]
    return lines


def register_cli(subparsers) -> None:
    """Add the ``bench`` subcommand (``func=main``) to an argparse subparsers object."""
    p = subparsers.add_parser("bench", help="time dense vs. masked vs. token-dropping ToP")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint",
                     help="toplib or Hugging Face checkpoint (default: offline MiniLM)")
    src.add_argument("--config",
                     help="random weights: bert-base, or a Hugging Face config path/name")
    p.add_argument("--tokenizer", help="tokenizer of --config models (default: offline MiniLM)")
    p.add_argument("--task", default="rotten_tomatoes",
                   help="task whose validation texts are timed")
    p.add_argument("--data-dir", help="GLUE root or the 20news folder")
    p.add_argument("--length", help="real tokens per input; comma list sweeps (e.g. 32,128,512)")
    p.add_argument("--sparsity",
                   help="set gates to this real-length FLOPs sparsity; comma list sweeps")
    p.add_argument("--batch-sizes", default="1,32", help="comma list")
    p.add_argument("--runs", type=int, default=20, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument("--max-seq-length", type=int, help="padded length (default: the task's)")
    p.add_argument("--bin-num", type=int, help="BIN_NUM (default: the checkpoint's, else 25)")
    p.add_argument("--prune-location", help="e.g. 2-11 (default: the checkpoint's, else max(N/6, 2)..N-1)")
    p.add_argument("--onednn", action=argparse.BooleanOptionalAction, default=None,
                   help="prepacked oneDNN linears in every variant (default: when available)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all results to this JSON file")
    p.add_argument("--plot-dir", help="write latency plots here")
    p.set_defaults(func=main)


def _split(text: str | None, kind) -> list:
    return [kind(x) for x in text.split(",") if x.strip()] if text else [None]


def main(args) -> list[dict]:
    """The ``bench`` subcommand: every (length, sparsity) pair, one table each."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.config and not args.sparsity:
        raise ValueError("--config builds random weights: give --sparsity")
    given = {k: v for k, v in (("bin_num", args.bin_num),
                               ("prune_location", parse_layers(args.prune_location)))
             if v is not None}
    prune = PruneConfig(**given) if given else None
    top, tok = build_model(args.checkpoint, args.config, args.tokenizer, prune,
                           num_labels=max(2, get_task(args.task).num_labels), seed=args.seed)
    torch.manual_seed(args.seed)
    top.to(args.device)
    dense = prepare_dense(top, args.onednn)  # one dense copy for the whole sweep
    all_results = []
    for length in _split(args.length, int):
        for sparsity in _split(args.sparsity, float):
            settings = BenchSettings(args.task, args.data_dir, length,
                                     tuple(_split(args.batch_sizes, int)), args.runs, args.warmup,
                                     args.max_seq_length, sparsity, args.onednn, args.seed,
                                     args.device)
            all_results.append(run_benchmark(settings, top, tok, dense))
            print(format_report(all_results[-1]), "\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": shlex.join(sys.argv), "results": all_results}, f, indent=1)
    if args.plot_dir:
        from .plots import plot_latency_vs_length, plot_latency_vs_sparsity
        os.makedirs(args.plot_dir, exist_ok=True)
        plots = (("length", plot_latency_vs_length), ("sparsity", plot_latency_vs_sparsity))
        for name, fn in plots:
            fn(all_results).savefig(os.path.join(args.plot_dir, f"latency_vs_{name}.png"), dpi=120,
                                    bbox_inches="tight")
    return all_results
