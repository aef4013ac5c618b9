"""The sparsity figures side by side on real dev-set lengths, without training.

For each GLUE task with dev files, bert-base dimensions, PRUNE_LOCATION 2..11 and the
paper's BIN_NUM and target (Table 7): gate schedules that close the lowest-ranked bins,
ordered by FLOPs (``toplib.core.flops.schedule_for_sparsity``'s order). It reports the
first schedule each accounting accepts (its figure >= target) and every figure of both:
the release's formula (uniform bins, mean of per-example ratios; real and padded) and
toplib's measured one (tokens counted; ratio of sums; real and padded), plus the measured
mean of ratios. Tokens are counted with the accepting side's rank-to-bin rounding.

    python benchmarks/accounting.py [--data-dir ../shared/data/glue] [--json F]
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from toplib.core.flops import (
    EncoderDims,
    dense_macs,
    encoder_macs,
    flops_figures,
    release_sparsity,
    simulate_kept,
)
from toplib.core.gates import schedule_gates
from toplib.core.importance import RELEASE_BIN_EPS
from toplib.data import prepare_data
from toplib.data.batching import real_lengths
from toplib.hf.model import load_tokenizer
from toplib.train.config import PAPER_PRESETS, build_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT_BASE = EncoderDims(num_layers=12, hidden=768, heads=12, intermediate=3072)
PRUNE_LOCATION = tuple(range(2, 12))
TASKS = ("cola", "sst2", "mrpc", "stsb", "rte", "qnli")


def figures(lengths: torch.Tensor, closed: list[int], bin_num: int, padded: int,
            eps: float) -> dict:
    """Every figure of one schedule on (E,) real lengths, ranks binned with ``eps``."""
    kept = simulate_kept(lengths, closed, PRUNE_LOCATION, 12, bin_num, eps)
    measured = flops_figures(kept, lengths, BERT_BASE, padded)
    per_example = encoder_macs(kept.double(), BERT_BASE) / dense_macs(lengths.double(), BERT_BASE)
    z_bins, z_pruner = schedule_gates(closed, bin_num)
    release = release_sparsity(lengths, z_bins, z_pruner, PRUNE_LOCATION, BERT_BASE, padded)
    return {"closed_bins": closed, **release,
            "sparsity_real": measured["sparsity_real"],
            "sparsity_padded": measured["sparsity_padded"],
            "sparsity_real_mean_of_ratios": float(1 - per_example.mean())}


def first_accepted(lengths, bin_num: int, target: float, padded: int, key: str) -> dict:
    """The first schedule (fewest closed bins, evenly spread) whose ``key`` >= target; the
    release's rows bin ranks as the release does."""
    eps = RELEASE_BIN_EPS if key.startswith("sparsity_release") else 0.0
    n = len(PRUNE_LOCATION)
    for t in range(bin_num * n + 1):
        k, j = divmod(t, n)
        closed = [k + (p < j) for p in range(n)]
        row = figures(lengths, closed, bin_num, padded, eps)
        if row[key] >= target:
            return row
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "glue"))
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(None)  # bert-base-uncased's vocabulary
    rows = []
    print("| task | target | accepted by | release real | release padded | measured real | "
          "measured padded | measured, mean of ratios |\n|---|---|---|---|---|---|---|---|")
    for task in TASKS:
        paper = PAPER_PRESETS[task]
        config = build_train_config(task, None, {"max_seq_length": 128 if task == "qnli" else None})
        data = prepare_data(task, tokenizer, config, args.data_dir, need_train=False)
        lengths = real_lengths(next(iter(data.validation.values())))
        for key, name in (("sparsity_release_real", "the release"), ("sparsity_real", "toplib")):
            row = first_accepted(lengths, paper["bin_num"], paper["sparsity"],
                                 data.padded_length, key)
            rows.append(dict(task=task, target=paper["sparsity"], accepted_by=name, **row))
            print(f"| {task} | {paper['sparsity']} | {name} | {row['sparsity_release_real']:.3f} | "
                  f"{row['sparsity_release_padded']:.3f} | {row['sparsity_real']:.3f} | "
                  f"{row['sparsity_padded']:.3f} | {row['sparsity_real_mean_of_ratios']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
