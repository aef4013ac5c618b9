"""How far bf16 moves predictions: float32 against bfloat16 on the whole Rotten Tomatoes
validation set, dense and with tokens dropped (``toplib.infer.predict(dtype=...)``).

Models: the trained quickstart checkpoint (runs/rotten_tomatoes/top, when present) and the
offline MiniLM-L6 with untrained heads (seeds 0, 1, 2; gates at sparsity 0.5).

    python benchmarks/precision.py      # writes benchmarks/results/precision.{json,md}
"""
from __future__ import annotations

import json
import os
import statistics

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "benchmarks", "results", "precision")
TRAINED = os.path.join(ROOT, "runs", "rotten_tomatoes", "top")
SEEDS = (0, 1, 2)


def compare(top, enc, labels: torch.Tensor, pruning: bool) -> dict:
    """Label agreement, logit movement and accuracy of bf16 against float32."""
    from toplib.infer import predict
    ref = predict(top, enc, 64, pruning=pruning)
    got = predict(top, enc, 64, dtype="bfloat16", pruning=pruning)
    moved = (ref.logits - got.logits).abs().max(-1).values
    a, b = ref.logits.argmax(-1), got.logits.argmax(-1)
    return {"agree": float((a == b).double().mean()), "flips": int((a != b).sum()),
            "logit_diff_median": float(moved.median()),
            "logit_diff_p99": float(moved.quantile(0.99)), "logit_diff_max": float(moved.max()),
            "accuracy_fp32": float((a == labels).double().mean()),
            "accuracy_bf16": float((b == labels).double().mean())}


def main() -> list[dict]:
    from toplib.bench import build_model, cpu_model
    from toplib.data import encode, get_task, load_task_data, real_lengths
    from toplib.infer import set_eval_sparsity
    torch.set_num_threads(2)
    spec = get_task("rotten_tomatoes")
    data = load_task_data("rotten_tomatoes")["validation"]
    rows = []
    models = [("trained quickstart", None)] if os.path.isdir(TRAINED) else []
    models += [(f"MiniLM-L6, untrained head, seed {s}", s) for s in SEEDS]
    for name, seed in models:
        if seed is None:
            top, tok = build_model(TRAINED)
        else:
            torch.manual_seed(seed)
            top, tok = build_model(num_labels=spec.num_labels)
        enc = encode(data, tok, spec.max_seq_length)
        if seed is not None:
            set_eval_sparsity(top, real_lengths(enc), 0.5)
        labels = torch.tensor([e["label"] for e in enc])
        for pruning in (False, True):
            rows.append({"model": name, "pruning": pruning, "examples": len(enc),
                         **compare(top, enc, labels, pruning)})
            print(json.dumps(rows[-1]), flush=True)
    with open(OUT + ".json", "w") as f:
        json.dump({"cpu_model": cpu_model(), "rows": rows}, f, indent=1)
    with open(OUT + ".md", "w") as f:
        f.write(table(rows) + "\n")
    print(table(rows))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | tokens | labels agree | flips | max abs logit change (median / p99 / max) "
             "| accuracy fp32 / bf16 |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {'dropped' if r['pruning'] else 'all (dense)'} | "
                     f"{100 * r['agree']:.2f}% | {r['flips']} / {r['examples']} | "
                     f"{r['logit_diff_median']:.4f} / {r['logit_diff_p99']:.3f} / "
                     f"{r['logit_diff_max']:.3f} | {100 * r['accuracy_fp32']:.2f} / "
                     f"{100 * r['accuracy_bf16']:.2f} |")
    untrained = [r["agree"] for r in rows if r["pruning"] and "untrained" in r["model"]]
    if len(untrained) > 1:
        lines.append(f"\nUntrained heads, tokens dropped: labels agree on "
                     f"{100 * statistics.mean(untrained):.2f}% +- "
                     f"{100 * statistics.stdev(untrained):.2f}% over seeds {SEEDS}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
