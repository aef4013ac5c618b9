"""Training speed: examples per second of a dense fine-tune step and of ToP steps.

One step is what the training loop does per batch (``toplib.train.loop``): the stage's loss,
backward, gradient clipping, every optimiser. Variants, timed round-robin in one process
(``toplib.bench.timing.round_robin``; median of ``--runs`` rounds after one warm-up round):

* ``dense``: a fine-tune step of the dense model (``FinetuneStage``), embeddings frozen as
  ToP freezes them (``freeze_embeddings``), so both train the same weights;
* ``top_s{0,0.5,0.7}``: ToP steps (``PruneStage``, the defaults: exact token dropping, the
  cached teacher) with the gates set as in the inference benchmark
  (``toplib.infer.set_eval_sparsity``: log-alphas at +-10, restored before every step, so
  nearly every sample is the evaluation gate) at real-length FLOPs sparsity 0, 0.5 and 0.7;
  ``sparsity measured`` is that of the tokens the training samples keep (20 draws);
* ``top_s0.5_live``: dropping, the teacher run on every batch;
* ``top_s0.5_masked``: every token through, the teacher live (toplib before dropping);
* ``teacher_pass``: the one pass that computes the cached targets, per batch.

Inputs: 20 Newsgroups validation texts of exactly 128 tokens, batch 32 (no padding, so real
and padded sparsity agree; the padding length-grouped batches still hold, which the first
prune layer also removes, is not measured). Models: the offline MiniLM-L6 (pretrained) and a
bert-base config (random weights, prune layers 2..11).

    python benchmarks/train_speed.py                    # both models, float32 and bfloat16
    python benchmarks/train_speed.py --models minilm --dtypes float32 --runs 2
    python benchmarks/train_speed.py --device cuda      # on a GPU

Writes benchmarks/results/train_speed.{json,md} and figures/train_speed.png. Run it on a
quiet machine: the load average is recorded beside the CPU model and flags.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
# relative to the working directory: the records name no machine's folders
DATA = os.environ.get("TOPLIB_DATA_DIR", os.path.relpath(os.path.join(ROOT, "..", "shared", "data")))
MODELS = {"minilm": dict(), "bert-base": dict(config="bert-base")}
SPARSITIES = (0.0, 0.5, 0.7)
TARGETS = {"top_s0.5": 0.75, "top_s0.7": 0.6}  # at most this x the dense step, float32
LENGTH, BATCH = 128, 32


def build(model: str, batches: int, device: str, seed: int = 0):
    """(student ToPModel, frozen teacher, batches, their encoded examples (with ``index``),
    tokenizer)."""
    from toplib.bench import BenchSettings, build_model
    from toplib.bench.timing import benchmark_inputs
    from toplib.data import pad_examples, to_device

    top, tokenizer = build_model(**MODELS[model], seed=seed)
    top = top.to(device)
    settings = BenchSettings(task="20news", data_dir=os.path.join(DATA, "20news"), length=LENGTH)
    encoded = benchmark_inputs(settings, tokenizer, batches * BATCH)
    encoded = [dict(encoded[i % len(encoded)], index=i, label=i % 2)
               for i in range(batches * BATCH)]
    chunks = [encoded[i:i + BATCH] for i in range(0, len(encoded), BATCH)]
    out = [to_device(dict(pad_examples(c, tokenizer.pad_token_id),
                          labels=torch.tensor([e["label"] for e in c]),
                          index=torch.tensor([e["index"] for e in c])), device) for c in chunks]
    teacher = copy.deepcopy(top).eval()
    return top, teacher, out, encoded, tokenizer


def stages(top, teacher, encoded, tokenizer, dtype: str, device: str) -> dict:
    """{variant: (stage, sparsity set)}; each ToP stage on its own copy of the student."""
    from toplib.infer import set_eval_sparsity
    from toplib.train.config import TrainConfig
    from toplib.train.objectives import FinetuneStage, PruneStage
    from toplib.train.teacher import TeacherTargets, compute_targets

    def config(**kw):
        return TrainConfig(warmup_epochs=0.0, reg_learning_rate=1e-9, dtype=dtype, **kw)

    lengths = torch.full((len(encoded),), LENGTH)
    cached = TeacherTargets(*compute_targets(teacher, encoded, tokenizer, config(), device,
                                             progress=False), key="")
    dense = FinetuneStage(copy.deepcopy(top), config(), steps_per_epoch=1000)
    dense.top.model.base_model.embeddings.requires_grad_(False)  # as PruneStage's
    variants = {"dense": (dense, None)}
    plans = [(f"top_s{s:g}", s, {}) for s in SPARSITIES] + [
        ("top_s0.5_live", 0.5, dict(cache_teacher=False)),
        ("top_s0.5_masked", 0.5, dict(cache_teacher=False, drop_tokens=False))]
    for name, sparsity, knobs in plans:
        student = copy.deepcopy(top)
        achieved = set_eval_sparsity(student, lengths, sparsity)
        stage = PruneStage(student, teacher, config(sparsity=sparsity, **knobs), 1000)
        if stage.config.cache_teacher:
            stage.targets = cached
        variants[name] = (stage, achieved)
    return variants


@torch.no_grad()
def measured(top, gates: dict, draws: int = 20) -> float:
    """Real-length FLOPs sparsity of the tokens training samples of the ``gates`` (a state
    dict) keep: a token stays where its keep is above 0, which depends on the lengths and
    the gates alone."""
    top.gates.load_state_dict(gates)
    from toplib.core.flops import measured_sparsity
    from toplib.core.gates import keep_rule
    from toplib.core.importance import kept_counts
    lengths = torch.full((BATCH,), LENGTH)
    torch.manual_seed(0)
    kept = [kept_counts(lengths, keep_rule(*(z.cpu() for z in top.gates(training=True))) > 0,
                        top.prune.prune_location, top.dims.num_layers, top.prune.bin_num,
                        top.prune.bin_eps) for _ in range(draws)]
    return measured_sparsity(torch.cat(kept), lengths.repeat(draws), top.dims)


def time_model(model: str, dtype: str, runs: int, device: str = "cpu") -> dict:
    from toplib.bench.profile import synchronizer
    from toplib.bench.timing import machine_load, round_robin
    from toplib.train.loop import optimizer_step

    top, teacher, batches, encoded, tokenizer = build(model, max(2, runs + 1), device)
    variants = stages(top, teacher, encoded, tokenizer, dtype, device)
    last = teacher.dims.num_layers - 1

    gates = {name: copy.deepcopy(stage.top.gates.state_dict()) for name, (stage, _) in
             variants.items()}

    def step(stage, batch, r, name):
        stage.top.gates.load_state_dict(gates[name])  # after_step clamps them to +-log 100
        stage.top.train()
        loss, _ = stage.loss(batch, 10_000 + r)
        optimizer_step(stage, loss, 10_000 + r)

    @torch.no_grad()
    def teacher_pass(batch):
        teacher(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                pruning=False, record_layers=(last,))

    def calls(r):
        batch = batches[r % len(batches)]
        fns = {name: (lambda s=stage, n=name: step(s, batch, r, n))
               for name, (stage, _) in variants.items()}
        return dict(fns, teacher_pass=lambda: teacher_pass(batch))

    load_before = machine_load()
    times = round_robin(calls, runs, warmup=1, sync=synchronizer(torch.device(device)))
    load_after = machine_load()
    median = {k: statistics.median(v) for k, v in times["wall"].items()}
    rows = []
    for name, seconds in median.items():
        stage, set_to = variants.get(name, (None, None))
        rows.append(dict(
            model=model, dtype=dtype, variant=name, seconds=seconds,
            examples_per_s=BATCH / seconds, vs_dense=seconds / median["dense"],
            sparsity_set=set_to,
            sparsity_measured=None if set_to is None else measured(stage.top, gates[name])))
    return dict(model=model, dtype=dtype, device=device, runs=runs, rows=rows, times=times,
                load_before=load_before, load_after=load_after)


def markdown(results: list[dict], machine: str, command: str) -> str:
    lines = [f"`{command}`", "", machine, "",
             "| model | dtype | variant | sparsity measured | s / step | examples/s | "
             "vs dense | per round | target | load 1-min before / after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        load = f"{res['load_before']['loadavg'][0]:.1f} / {res['load_after']['loadavg'][0]:.1f}"
        wall = res["times"]["wall"]
        for r in res["rows"]:
            ratios = [t / d for t, d in zip(wall[r["variant"]], wall["dense"])]
            target = TARGETS.get(r["variant"]) if r["dtype"] == "float32" else None
            target = f"<= {target}" if target else ""
            sparsity = "" if r["sparsity_measured"] is None else f"{r['sparsity_measured']:.3f}"
            lines.append(f"| {r['model']} | {r['dtype']} | {r['variant']} | {sparsity} | "
                         f"{r['seconds']:.2f} | {r['examples_per_s']:.1f} | "
                         f"{r['vs_dense']:.2f}x | {min(ratios):.2f}-{max(ratios):.2f} | "
                         f"{target} | {load} |")
    lines += ["", "A ToP epoch at 0.5 (cached teacher) over a dense fine-tune epoch, with the "
              "one teacher pass over the data counted in a run of N epochs:", ""]
    for res in results:
        by = {r["variant"]: r["seconds"] for r in res["rows"]}
        shares = ", ".join(f"N={n}: {(by['top_s0.5'] + by['teacher_pass'] / n) / by['dense']:.2f}x"
                           for n in (1, 3, 10))
        lines.append(f"- {res['model']} {res['dtype']}: {shares}")
    return "\n".join(lines)


def plot(results: list[dict], title: str, path: str) -> None:
    """One panel per model: each variant's step time over the dense step's, per dtype."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r["model"] for r in results))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 3.8), squeeze=False)
    colors = {"float32": "#2a7ab9", "bfloat16": "#e08a2c"}
    for ax, model in zip(axes[0], models):
        runs = [r for r in results if r["model"] == model]
        names = [r["variant"] for r in runs[0]["rows"]]
        width = 0.8 / len(runs)
        for j, res in enumerate(runs):
            by = {r["variant"]: r for r in res["rows"]}
            y = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(names))]
            ax.barh(y, [by[n]["vs_dense"] for n in names], width, color=colors[res["dtype"]],
                    label=res["dtype"])
            for yi, n in zip(y, names):
                ax.text(by[n]["vs_dense"], yi, f" {by[n]['vs_dense']:.2f}", va="center",
                        fontsize=7)
        for (variant, t), ls in zip(TARGETS.items(), (":", "--")):
            ax.axvline(t, color="#555", ls=ls, lw=1, label=f"{variant} target (float32): {t}x")
        ax.axvline(1.0, color="#333", lw=0.8)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("time per training step / dense fine-tune step in the same dtype")
        ax.set_title(f"{model}: batch {BATCH}, {LENGTH} tokens")
        ax.set_xlim(0, 1.12 * max(r["vs_dense"] for res in runs for r in res["rows"]))
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=4,
               fontsize=8, bbox_to_anchor=(0.5, -0.06), frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or a CUDA device")
    parser.add_argument("--suffix", default="", help="appended to the output names")
    parser.add_argument("--replot", action="store_true",
                        help="redraw the figure and the table from the JSON already written")
    args = parser.parse_args(argv)
    out = os.path.join(RESULTS, f"train_speed{args.suffix}")
    figure = os.path.join(ROOT, "figures", f"train_speed{args.suffix}.png")
    if args.replot:
        with open(out + ".json") as f:
            saved = json.load(f)
        plot(saved["results"], saved["machine"], figure)
        with open(out + ".md", "w") as f:
            f.write(markdown(saved["results"], saved["machine"], saved["command"]) + "\n")
        return saved["results"]
    models, dtypes = args.models.split(","), args.dtypes.split(",")
    for name, given, allowed in (("--models", models, MODELS), ("--dtypes", dtypes,
                                                                 ("float32", "bfloat16"))):
        if set(given) - set(allowed):
            parser.error(f"{name}: unknown {sorted(set(given) - set(allowed))}; allowed: "
                         f"{', '.join(allowed)}")
    from toplib.bench import cpu_model
    from toplib.core.config import check_device
    from toplib.hf.precision import cpu_flags
    try:
        args.device = check_device(args.device, "--device")
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    flags = ", ".join(k for k, v in cpu_flags().items() if v) or "none"
    machine = f"{cpu_model()} ({flags}); {args.threads} threads; torch {torch.__version__}"
    if args.device != "cpu":
        machine = f"{torch.cuda.get_device_name(args.device)}; {machine}"
    results = []
    for model in models:
        for dtype in dtypes:
            results.append(time_model(model, dtype, args.runs, args.device))
            for r in results[-1]["rows"]:
                print(json.dumps(r), flush=True)
    command = shlex.join(["python", "benchmarks/train_speed.py", *(argv or sys.argv[1:])])
    with open(out + ".json", "w") as f:
        json.dump({"command": command, "machine": machine, "results": results}, f, indent=1)
    text = markdown(results, machine, command)
    with open(out + ".md", "w") as f:
        f.write(text + "\n")
    plot(results, machine, figure)
    print(text)
    return results


if __name__ == "__main__":
    main()
