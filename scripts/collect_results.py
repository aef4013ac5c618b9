"""Collect reproduction runs into a folder small enough to commit: every run's records
(results.json, history.jsonl, the dev predictions and each model's score-vs-sparsity curve,
recorded first where the weights are; no weights), the table with seeds and its figures; then the
reproduction study's table and figures from its committed records (``--study``).

The table and figures are regenerated from the collected folder alone, so
``--runs results/standard`` redraws them without the runs.

Usage:
    python scripts/collect_results.py --runs runs/standard --tasks cola,mrpc,rte,stsb,sst2 \\
        --seeds 42,43,44 --out results/standard
"""
from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from toplib.core.config import parse_list  # noqa: E402
from toplib.train.dev_records import export_records  # noqa: E402
from toplib.train.reproduce import seed_row, write_seed_table  # noqa: E402
from toplib.viz import plots  # noqa: E402
from toplib.viz.study import load_study  # noqa: E402
from toplib.viz.sweep import record_curves  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="folder of <task>/{teacher,top*} runs")
    parser.add_argument("--tasks", required=True, help="comma-separated tasks, in table order")
    parser.add_argument("--seeds", required=True, help="comma-separated seeds, first: top/")
    parser.add_argument("--out", required=True, help="folder to write (records, results.*)")
    parser.add_argument("--figures", default=os.path.join(REPO, "figures"))
    parser.add_argument("--name", default="standard", help="figure names: <name>_*.png")
    parser.add_argument("--study", default=os.path.join(REPO, "benchmarks", "results", "ablations"),
                        help="the study's records (benchmarks/ablations.py); '' skips them")
    args = parser.parse_args(argv)
    tasks, seeds = parse_list(args.tasks, str), parse_list(args.seeds, int)
    rows = []
    for task in tasks:
        dest = os.path.join(args.out, task)
        if os.path.abspath(args.runs) != os.path.abspath(args.out):
            record_curves(os.path.join(args.runs, task))  # where the weights are
            print(task, "records:", ", ".join(export_records(os.path.join(args.runs, task), dest)))
        rows.append(seed_row(dest, seeds))
    print(write_seed_table(rows, args.out))
    for figure, plot in (("score_vs_sparsity", plots.plot_seed_results),
                         ("reproduction", plots.plot_reproduction)):
        print(*plots.save_figure(plot(rows), f"{args.name}_{figure}", args.figures))
    if args.study:
        sys.path.insert(0, os.path.join(REPO, "benchmarks"))
        import ablations
        study = load_study(args.study)
        print(ablations.format_rows(ablations.summarize(study)))
        ablations.make_figures(study, args.figures)


if __name__ == "__main__":
    main()
