"""Where figures go: PNG + SVG files and a notebook's output, each with alt text written from
the figure's titles and labels (an ``<img alt>`` bundle: the inline backend's bare PNG has none)."""
from __future__ import annotations

import base64
import html
import io
import os

import matplotlib.pyplot as plt

FIGURE_FORMATS = ("png", "svg")
ALT_METADATA_KEY = "Description"  # PNG tEXt key and SVG dc:description (matplotlib metadata)
SCREEN_DPI = 100  # a notebook's figures, as the inline backend draws them


def figure_alt_text(fig, name: str | None = None) -> str:
    """A description of ``fig`` from its title and each panel's title and axis labels.

    Example:
        >>> fig, ax = plt.subplots()
        >>> _ = ax.set(title="loss", xlabel="step", ylabel="nats")
        >>> figure_alt_text(fig, "curves")
        'Figure curves. 1 panel: loss (x: step; y: nats).'
        >>> plt.close(fig)
    """
    suptitle = fig._suptitle.get_text().strip() if fig._suptitle is not None else ""
    panels = []
    for ax in fig.get_axes():
        parts = [text for text in (ax.get_title(), ax.get_title("left"), ax.get_title("right"))
                 if text.strip()]
        labels = [f"{axis}: {label}" for axis, label in
                  (("x", ax.get_xlabel()), ("y", ax.get_ylabel())) if label.strip()]
        if parts or labels:
            panels.append(" ".join(parts) + (f" ({'; '.join(labels)})" if labels else ""))
    head = " ".join(p for p in (f"Figure {name}." if name else "Figure.",
                                f"{suptitle}." if suptitle else "") if p)
    count = f"{len(panels)} panel{'s' if len(panels) != 1 else ''}"
    return f"{head} {count}: {'; '.join(p.strip() for p in panels)}." if panels else head


def figure_bundle(fig, alt: str, dpi: int = SCREEN_DPI) -> dict:
    """``fig``'s display bundle: an ``<img>`` with ``alt`` as HTML, the PNG, and ``alt`` as text."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    img = f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt, quote=True)}"/>'
    return {"text/html": img, "image/png": png, "text/plain": alt}


def _in_kernel() -> bool:
    """Whether this runs in an IPython kernel (a notebook), not a script or a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None  # no shell: None


def show_figure(fig, alt: str | None = None, handle=None):
    """In a notebook, show ``fig`` with alt text and close it (else shown twice); None elsewhere."""
    if not _in_kernel():
        return None
    from IPython.display import display
    bundle = figure_bundle(fig, alt or figure_alt_text(fig))
    plt.close(fig)
    if handle is not None:
        handle.update(bundle, raw=True)
        return handle
    return display(bundle, raw=True, display_id=True)


def save_figure(fig, name: str, directory: str = "figures", formats=FIGURE_FORMATS,
                dpi: int = 150, alt: str | None = None) -> list[str]:
    """Write ``<directory>/<name>.png`` and ``.svg`` with alt text and show the figure; the SVG has
    no date and a fixed id salt, so fixed seeds rewrite identical files."""
    alt = alt or figure_alt_text(fig, name)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for fmt in formats:
        path = os.path.join(directory, f"{name}.{fmt}")
        metadata = {"Date": None} if fmt in ("svg", "pdf") else {}
        if fmt in ("png", "svg"):
            metadata[ALT_METADATA_KEY] = alt
        with plt.rc_context({"svg.hashsalt": "toplib"}):
            fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    show_figure(fig, alt)
    return paths
