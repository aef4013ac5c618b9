"""Execute the notebooks in order with their default parameters: what `make figures` runs.

Every figure in figures/ is written by one of these notebooks (PNG + SVG, fixed seeds):
this script passes ``figures_dir=<repo>/figures`` to each (an interactive run writes its
figures beside its run instead, in ``<output_dir>/figures``);
runs are reused across notebooks (02/03/08 reuse what 00 trained), and a finished run is
never retrained, so an interrupted `make figures` picks up where it stopped.

Usage:
    python scripts/run_notebooks.py                      # all, in order
    python scripts/run_notebooks.py 04_kept_tokens 05_sparsity_vs_accuracy
    python scripts/run_notebooks.py -p device=cuda -p targets=0.3,0.5,0.7
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from toplib.viz.notebook import NOTEBOOK_DIR, execute_notebook, parse_overrides  # noqa: E402
from toplib.viz.report import notebook_names  # noqa: E402

logger = logging.getLogger("run_notebooks")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all, in order)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter in every notebook that has it")
    parser.add_argument("--executed-dir", default=os.path.join(REPO, "runs", "executed"),
                        help="where the executed copies go")
    parser.add_argument("--kernel-name", default="python3")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    import papermill
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    overrides = {"figures_dir": os.path.join(REPO, "figures"), **parse_overrides(args.parameter)}
    names = args.names or notebook_names()
    for name in names:
        known = papermill.inspect_notebook(os.path.join(NOTEBOOK_DIR, f"{name}.ipynb"))
        params = {k: v for k, v in overrides.items() if k in known}
        start = time.time()
        logger.info("%s %s", name, params or "")
        execute_notebook(name, os.path.join(args.executed_dir, f"{name}.ipynb"), params,
                         kernel_name=args.kernel_name)
        logger.info("%s done in %.1f min", name, (time.time() - start) / 60)


if __name__ == "__main__":
    main()
