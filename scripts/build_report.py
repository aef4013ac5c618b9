"""Build the static report: every notebook executed with papermill at the quick preset,
exported to self-contained HTML, with an index page. What `make report` runs.

Finished runs in runs/ are reused (the notebooks' own rule), so a second build only
re-executes the notebooks. A failed notebook still gets its page; the exit status is 1.

Usage:
    python scripts/build_report.py                         # all notebooks -> report/
    python scripts/build_report.py --out /tmp/r 01_how_top_works 04_kept_tokens
    python scripts/build_report.py --html-only             # re-export already executed copies
    python scripts/build_report.py -p device=cuda
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from toplib.bench import cpu_model  # noqa: E402
from toplib.viz.notebook import parse_overrides  # noqa: E402
from toplib.viz.report import ReportPage, execute_page, export_page, notebook_names, write_index  # noqa: E402

logger = logging.getLogger("build_report")
REPORT_PRESET = "quick"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to include (default: all, in order)")
    parser.add_argument("--out", default=os.path.join(REPO, "report"),
                        help="the report folder (index.html, one page per notebook)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter in every notebook that has it")
    parser.add_argument("--html-only", action="store_true",
                        help="export the executed copies already in <out>/executed")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    known = notebook_names()
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        raise SystemExit(f"names={unknown}: not among the notebooks {known}")
    parameters = {"preset": REPORT_PRESET, **parse_overrides(args.parameter)}
    os.makedirs(args.out, exist_ok=True)
    pages = []
    for name in args.names or known:
        logger.info("%s %s", "exporting" if args.html_only else "executing", name)
        page = ReportPage(name) if args.html_only else execute_page(name, args.out, parameters)
        export_page(page, args.out)  # fills the run time and failure of an earlier build's copy
        logger.info("%s: %s in %.1f min", name, "failed" if page.error else "ok", page.minutes)
        pages.append(page)
    machine = f"{cpu_model()}, {os.cpu_count()} CPU threads"
    index = write_index(pages, args.out, f"Preset: {parameters['preset']}.", machine)
    logger.info("report: %s", index)
    return int(any(p.error for p in pages))


if __name__ == "__main__":
    sys.exit(main())
