"""The static report: executed notebooks exported to self-contained HTML with an index."""
from __future__ import annotations

import base64
import io
import os

import matplotlib
import nbformat
import pytest

from toplib.viz.notebook import parse_overrides
from toplib.viz.report import (
    FIRST_PARAGRAPH_CHARS,
    ReportPage,
    _title_and_summary,
    execute_page,
    executed_path,
    export_page,
    write_index,
)

matplotlib.use("Agg")


def _png() -> str:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _executed(out_dir, name: str) -> None:
    """An executed notebook as papermill leaves it: a lesson opening, a figure output."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## 99 · A *small* lesson\n\nWhat you will learn: "
                                      "how `gates` close.\n\nMore text."),
        nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
            "display_data", data={"image/png": _png(), "text/plain": "<Figure>"})]),
    ]
    nb.metadata["papermill"] = {"duration": 90.0, "exception": None}
    os.makedirs(os.path.dirname(executed_path(out_dir, name)), exist_ok=True)
    nbformat.write(nb, executed_path(out_dir, name))


def test_a_page_embeds_its_figures_and_takes_its_title_from_the_first_cell(tmp_path):
    _executed(tmp_path, "99_lesson")
    page = ReportPage("99_lesson")
    path = export_page(page, str(tmp_path))
    text = open(path, encoding="utf-8").read()
    assert path == str(tmp_path / "99_lesson.html")
    assert page.title == "99 · A *small* lesson"
    assert page.summary == "What you will learn: how gates close."
    assert page.minutes == 1.5 and page.error is None  # papermill's record of the run
    assert "data:image/png;base64," in text and "What you will learn" in text
    assert 'src="mathjax/MathJax.js?config=' in text  # typeset offline, from the copy beside it
    assert (tmp_path / "mathjax" / "MathJax.js").is_file()



def test_a_figure_shown_by_save_figure_keeps_its_alt_text_on_the_page(tmp_path):
    import matplotlib.pyplot as plt
    from bs4 import BeautifulSoup

    from toplib.viz.plots.output import figure_alt_text, figure_bundle
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set(title="gates", xlabel="bin")
    alt = figure_alt_text(fig, "99_gates")
    bundle = figure_bundle(fig, alt)  # what save_figure displays in a notebook
    plt.close(fig)
    _executed(tmp_path, "99_lesson")
    nb = nbformat.read(executed_path(tmp_path, "99_lesson"), as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nbformat.write(nb, executed_path(tmp_path, "99_lesson"))
    path = export_page(ReportPage("99_lesson"), str(tmp_path))
    images = BeautifulSoup(open(path, encoding="utf-8").read(), "html.parser").select("main img")
    assert [img.get("alt") for img in images] == [alt] and "gates (x: bin)" in alt

def test_a_long_summary_is_cut_at_a_word():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## T\n\n" + "gates close " * 100)]
    title, summary = _title_and_summary(nb)
    assert title == "T" and summary.endswith(("close …", "gates …"))
    assert len(summary) <= FIRST_PARAGRAPH_CHARS + 2


def test_the_index_links_every_page_and_marks_failures(tmp_path):
    pages = [ReportPage("00_ok", title="00 · Fine", summary="learn <this>", minutes=1.25),
             ReportPage("01_bad", title="01 · Broken", error="ValueError: sparsity=2")]
    text = open(write_index(pages, str(tmp_path), "Preset: quick.", "AMD EPYC, 2 CPU threads"),
                encoding="utf-8").read()
    assert text.count("<li>") == 2 and 'href="00_ok.html"' in text and 'href="01_bad.html"' in text
    assert "ran in 1.2 min" in text and "learn &lt;this&gt;" in text  # escaped
    assert "on AMD EPYC, 2 CPU threads;" in text
    assert "failed: ValueError: sparsity=2" in text and "1 of 2 notebooks ran; 1 failed" in text


def test_a_failing_notebook_is_recorded_not_raised(tmp_path):
    page = execute_page("no_such_notebook", str(tmp_path), {})
    assert page.error and "no_such_notebook" in page.error and page.minutes >= 0


def test_parse_overrides_reads_literals_and_names_bad_input():
    assert parse_overrides(["seeds=42,43", "live=False", "x=1e-3"]) == \
        {"seeds": "42,43", "live": False, "x": 1e-3}
    with pytest.raises(ValueError, match="'sparsity'"):
        parse_overrides(["sparsity"])
