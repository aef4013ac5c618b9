"""A static report: the notebooks executed with papermill, exported to HTML, one index page;
figures embedded and MathJax copied beside them, so the folder works offline."""
from __future__ import annotations

import datetime
import html
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field

from .notebook import NOTEBOOK_DIR, execute_notebook

logger = logging.getLogger(__name__)

INDEX_FILE = "index.html"
EXECUTED_SUBDIR = "executed"
HTML_TEMPLATE = "lab"  # nbconvert's JupyterLab look
FIRST_PARAGRAPH_CHARS = 600
MATHJAX_SUBDIR = "mathjax"
MATHJAX_CONFIG = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"  # the configs it ships


@dataclass
class ReportPage:
    """One notebook of the report: where its page is and how its run went."""

    name: str
    title: str = ""
    summary: str = ""
    minutes: float = 0.0
    error: str | None = None
    parameters: dict = field(default_factory=dict)


def notebook_names() -> list[str]:
    """The notebooks of the suite, in order."""
    return sorted(f[:-6] for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb"))


def execute_page(name: str, out_dir: str, parameters: dict) -> ReportPage:
    """Execute one notebook into ``executed/``; a failure is recorded on the page, not raised."""
    page = ReportPage(name, parameters=parameters)
    start = time.monotonic()
    try:
        execute_notebook(name, executed_path(out_dir, name), parameters, declared_only=True)
    except Exception as error:  # noqa: BLE001 - the page shows the traceback; the index says failed
        page.error = f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
        logger.warning("%s failed: %s", name, page.error)
    page.minutes = (time.monotonic() - start) / 60
    return page


def executed_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, EXECUTED_SUBDIR, f"{name}.ipynb")


def export_page(page: ReportPage, out_dir: str) -> str:
    """Write ``<out_dir>/<name>.html``, filling the page's title, summary, run time and failure."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed_path(out_dir, page.name), as_version=4)
    page.title, page.summary = _title_and_summary(nb)
    run = nb.metadata.get("papermill", {})  # an earlier build's run, for --html-only
    page.minutes = page.minutes or (run.get("duration") or 0.0) / 60
    if page.error is None and run.get("exception"):
        page.error = "an exception: see the page"
    exporter = HTMLExporter(template_name=HTML_TEMPLATE, mathjax_url=mathjax_url(out_dir))
    body, _ = exporter.from_notebook_node(
        nb, resources={"metadata": {"name": page.title or page.name}})
    path = os.path.join(out_dir, f"{page.name}.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(body)
    return path


def mathjax_url(out_dir: str) -> str:
    """The MathJax that jupyter-server-mathjax ships, copied to ``<out_dir>/mathjax``: formulas
    typeset offline."""
    import jupyter_server_mathjax

    target = os.path.join(out_dir, MATHJAX_SUBDIR)
    if not os.path.exists(os.path.join(target, "MathJax.js")):
        source = os.path.join(os.path.dirname(jupyter_server_mathjax.__file__), "static")
        shutil.copytree(source, target, dirs_exist_ok=True)
    return f"{MATHJAX_SUBDIR}/{MATHJAX_CONFIG}"


def _title_and_summary(nb) -> tuple[str, str]:
    """The H2 title of the first markdown cell and the paragraph after it, marks stripped."""
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    lines = first.strip().splitlines()
    title = lines[0].lstrip("#").strip() if lines else ""
    paragraphs = [p.strip() for p in "\n".join(lines[1:]).split("\n\n") if p.strip()]
    summary = " ".join(re.sub(r"[*`]", "", paragraphs[0]).split()) if paragraphs else ""
    if len(summary) > FIRST_PARAGRAPH_CHARS:  # cut at a word, marked
        summary = summary[:FIRST_PARAGRAPH_CHARS].rsplit(" ", 1)[0] + " …"
    return title, summary


def write_index(pages: list[ReportPage], out_dir: str, subtitle: str = "",
                machine: str = "") -> str:
    """Write ``<out_dir>/index.html``: one entry per page, and ``machine``, where it ran."""
    failed = sum(p.error is not None for p in pages)
    status = f"{len(pages) - failed} of {len(pages)} notebooks ran" + (
        f"; {failed} failed" if failed else "")
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = INDEX_TEMPLATE.format(
        status=html.escape(status), subtitle=html.escape(subtitle),
        items="\n".join(map(_index_item, pages)),
        machine=html.escape(f"{machine or 'this machine'}; {when}"))
    path = os.path.join(out_dir, INDEX_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _index_item(page: ReportPage) -> str:
    state = (f'<span class="failed">failed: {html.escape(page.error)}</span>' if page.error
             else f"ran in {page.minutes:.1f} min")
    return (f'<li><a href="{html.escape(page.name)}.html">{html.escape(page.title or page.name)}'
            f'</a> <span class="meta">{state}</span><p>{html.escape(page.summary)}</p></li>')


INDEX_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>toplib report</title><style>
body {{ font: 1rem/1.45 system-ui, sans-serif; max-width: 56rem; margin: 2rem auto;
        padding: 0 1rem; }}
li {{ margin-bottom: 1rem; }} .meta {{ color: #666; }} .failed {{ color: #b00020; }}
</style></head><body>
<h1>toplib: the notebooks, executed</h1>
<p class="meta">{status}. {subtitle}</p>
<ol>
{items}
</ol>
<p class="meta">Executed with papermill on {machine}. Each page is self-contained: figures are
embedded. Timings on the pages move with the machine's load; compare ratios within a page.</p>
</body></html>
"""
