"""The token explorer of ``07_explorer``: which tokens survive each layer of a sentence.

Stable hooks for tests: the widgets' descriptions and CSS classes (``toplib-sentence``,
``-checkpoint``, ``-sparsity``, output ``toplib-kept``), and the HTML's ``toplib-layer`` rows
of ``toplib-token-kept`` / ``toplib-token-pruned`` spans.
"""
from __future__ import annotations

import functools
import html
import json
import logging
import os
import re

import torch

from ..core.config import PruneConfig
from ..core.flops import measured_sparsity
from ..data import get_task
from ..hf.model import checkpoint_path, load_checkpoint, read_meta
from ..hf.precision import DTYPES, cast_model, dtype_name, resolve_dtype
from ..infer import gates_for_sparsity
from .analysis import KeptTokens, is_pruned, kept_tokens

logger = logging.getLogger(__name__)

DEFAULT_SENTENCE = "A gorgeous, witty and seductive movie, though its final act drags a little."
MAX_LENGTH = 128  # truncation when the checkpoint records no max_seq_length
KEPT_STYLE = "background:#cfe8cf;border-radius:3px;padding:0 3px;margin:1px;display:inline-block"
PRUNED_STYLE = ("color:#9a9a9a;text-decoration:line-through;padding:0 3px;margin:1px;"
                "display:inline-block")
CELL_STYLE = "padding:1px 8px 1px 0;white-space:nowrap;vertical-align:top;font-size:90%"


def find_checkpoints(root: str) -> list[str]:
    """Checkpoint folders under ``root``: ToP ones, then teachers, by path; ``last/`` skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "last")
        weights = any(f.endswith((".safetensors", ".bin")) for f in filenames)
        if "config.json" in filenames and weights:
            found.append(dirpath)
    return sorted(found, key=lambda p: (not is_pruned(read_meta(p)), p))


@functools.lru_cache(maxsize=8)
def _load(path: str, prune_key: str | None = None):
    """Cached (model, tokenizer, meta); never change a cached model's gates (baselines pass own)."""
    return load_checkpoint(path, PruneConfig(**json.loads(prune_key)) if prune_key else None)


def _label(meta: dict, kt: KeptTokens) -> str:
    if not kt.probabilities:
        return f"{kt.prediction:.3f}"
    try:
        names = (get_task(meta["task"]).label_names if meta.get("task") else None) or []
    except ValueError:  # a task this toplib does not know
        names = []
    name = names[kt.prediction] if kt.prediction < len(names) else f"class {kt.prediction}"
    return f"{name} (p={kt.probabilities[kt.prediction]:.2f})"


def layers_html(kt: KeptTokens, css_class: str) -> str:
    """A table, one ``toplib-layer`` row per layer, kept tokens highlighted, pruned struck."""
    rows = []
    for layer, mask in enumerate(kt.kept):
        spans = " ".join(
            f'<span class="toplib-token toplib-token-{"kept" if k else "pruned"}" '
            f'style="{KEPT_STYLE if k else PRUNED_STYLE}">{html.escape(tok)}</span>'
            for tok, k in zip(kt.tokens, mask))
        rows.append(f'<tr class="toplib-layer" data-layer="{layer}" data-kept="{int(mask.sum())}">'
                    f'<td style="{CELL_STYLE}">layer {layer} ({int(mask.sum())}/{len(mask)})</td>'
                    f"<td>{spans}</td></tr>")
    return f'<table class="toplib-layers {css_class}">{"".join(rows)}</table>'


@torch.no_grad()
def render_html(sentence: str, checkpoint: str, sparsity: float = 0.5,
                dtype: str | None = None) -> str:
    """HTML of the tokens surviving each layer, for the checkpoint and for the attention baseline
    at real-length FLOPs ``sparsity`` (in [0, 1)) on this sentence; ``dtype`` None runs float32."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity!r} is invalid: must lie in [0, 1)")
    resolve_dtype(dtype)
    if not sentence.strip():
        return '<div class="toplib-explorer"><i>Type a sentence.</i></div>'
    path = checkpoint_path(checkpoint)
    top, tokenizer, meta = _load(path)
    top = cast_model(top, dtype)  # cached beside the loaded model
    max_length = meta.get("max_seq_length") or MAX_LENGTH
    pruned = is_pruned(meta)
    kt = kept_tokens(top, tokenizer, [sentence], max_length, pruning=pruned)[0]
    name = "ToP" if pruned else "Teacher (dense)"
    kept = torch.as_tensor(kt.kept.sum(-1))[None, :]  # (1, N) tokens entering each layer
    length = torch.tensor([len(kt.tokens)])
    parts = ['<div class="toplib-explorer" style="font-family:sans-serif;line-height:1.9">',
             f'<div class="toplib-prediction"><b>{name}</b>: {html.escape(_label(meta, kt))}; '
             f"FLOPs sparsity on this sentence {measured_sparsity(kept, length, top.dims):.2f} "
             "(real length)</div>",
             layers_html(kt, "toplib-top")]
    teacher = meta.get("teacher") if pruned and os.path.isdir(str(meta.get("teacher"))) else path
    base, _, _ = _load(checkpoint_path(teacher), json.dumps(top.prune.to_dict(), sort_keys=True))
    base = cast_model(base, dtype)
    gates, achieved = gates_for_sparsity(base, length, float(sparsity))
    bkt = kept_tokens(base, tokenizer, [sentence], max_length, gates=gates)[0]
    parts += ['<div class="toplib-baseline-title"><b>Attention baseline</b> (teacher, '
              f"most-attended tokens kept) at FLOPs sparsity {sparsity:.2f}, achieved "
              f"{achieved:.2f}: {html.escape(_label(meta, bkt))}</div>",
              layers_html(bkt, "toplib-baseline"), "</div>"]
    return "".join(parts)


def explorer_app(checkpoints: list[str], sentence: str = DEFAULT_SENTENCE, sparsity: float = 0.5,
                 dtype: str = "float32"):
    """The ipywidgets VBox (``.children[-1]``: the output); every widget re-renders on change."""
    dtype = dtype_name(resolve_dtype(dtype) or torch.float32)  # the dropdown holds names
    import ipywidgets as widgets
    if not checkpoints:
        raise ValueError("checkpoints=[] : train a model first (notebooks 02 and 03)")
    common = os.path.commonpath([os.path.abspath(c) for c in checkpoints]) if len(checkpoints) > 1 \
        else os.path.dirname(os.path.abspath(checkpoints[0]))
    text = widgets.Text(value=sentence, description="Sentence", layout=widgets.Layout(width="95%"))
    choice = widgets.Dropdown(options=[(os.path.relpath(os.path.abspath(c), common), c)
                                       for c in checkpoints], description="Checkpoint",
                              layout=widgets.Layout(width="95%"))
    slider = widgets.FloatSlider(value=sparsity, min=0.0, max=0.9, step=0.05,
                                 description="Sparsity", readout_format=".2f")
    precision = widgets.Dropdown(options=[d for d in DTYPES if d != "float16"], value=dtype,
                                 description="Precision")
    output = widgets.HTML()
    for widget, css in ((text, "toplib-sentence"), (choice, "toplib-checkpoint"),
                        (slider, "toplib-sparsity"), (precision, "toplib-precision"),
                        (output, "toplib-kept")):
        widget.add_class(css)

    def update(_=None):
        try:
            output.value = render_html(text.value, choice.value, slider.value, precision.value)
        except Exception as err:  # shown in the app: an observer's exception is otherwise lost
            logger.exception("render failed")
            output.value = f'<div class="toplib-error">{html.escape(repr(err))}</div>'

    for widget in (text, choice, slider, precision):
        widget.observe(update, names="value")
    update()
    return widgets.VBox([text, choice, slider, precision, output])


def html_summary(page: str) -> dict:
    """What :func:`render_html` showed: {"top": [kept per layer], "baseline": [...], "tokens"}."""
    out = {}
    for name in ("top", "baseline"):
        match = re.search(rf'<table class="toplib-layers toplib-{name}">(.*?)</table>', page)
        rows = match.group(1) if match else ""
        out[name] = [int(k) for k in re.findall(r'data-kept="(\d+)"', rows)]
    first = re.search(r'<tr class="toplib-layer".*?</tr>', page)
    out["tokens"] = first.group(0).count("toplib-token ") if first else 0
    return out
