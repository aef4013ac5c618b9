"""``toplib export``: write a checkpoint's ONNX graph, optionally int8, and check it against
the PyTorch path on the task's validation examples."""
from __future__ import annotations

import os
import tempfile

from ..core.config import check, is_finite
from ..data import encode, get_task, load_task_data, real_lengths
from ..hf.checkpoint import checkpoint_path, verify_checkpoint
from ..hf.model import load_checkpoint
from ..infer import predict, set_eval_sparsity
from .runtime import OPSETS, OrtModel, check_output_file, export_onnx, ort_predict, quantize_int8


def register_cli(subparsers) -> None:
    """Add the ``export`` subcommand (``func=main``) to an argparse subparsers object."""
    p = subparsers.add_parser("export", help="write an ONNX graph that drops pruned tokens")
    p.add_argument("checkpoint", help="toplib checkpoint or run directory")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--dense", action="store_true",
                   help="the plain Hugging Face model instead (the onnxruntime baseline)")
    p.add_argument("--quantize", choices=["int8"],
                   help="onnxruntime dynamic quantization of the weights")
    p.add_argument("--sparsity", type=float,
                   help="set the gates to this real-length FLOPs sparsity on --task's "
                        "validation lengths (default: the checkpoint's own gates)")
    p.add_argument("--task", help="task of --sparsity and --check (default: the checkpoint's)")
    p.add_argument("--data-dir", help="data folder of the task (GLUE root, 20news folder)")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="compare PyTorch and onnxruntime on N validation examples")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--no-optimize", action="store_true",
                   help="skip onnxruntime's transformer optimizer")
    p.set_defaults(func=main)


def check_args(args) -> tuple[str, dict, str | None]:
    """Check every flag before anything loads; returns (checkpoint folder, its meta, task or
    None)."""
    check_output_file(args.output, "output")
    check("opset", args.opset, args.opset in OPSETS,
          f"an integer in {OPSETS.start}..{OPSETS.stop - 1}")
    check("check", args.check, args.check >= 0, "an integer >= 0 (examples to compare)")
    check("sparsity", args.sparsity, args.sparsity is None or (
        is_finite(args.sparsity) and 0 <= args.sparsity < 1), "must lie in [0, 1)")
    check("sparsity", args.sparsity, not (args.dense and args.sparsity is not None),
          "a --dense graph has no gates to set")
    path = checkpoint_path(args.checkpoint)
    meta = verify_checkpoint(path)
    task = args.task or meta.get("task")
    if args.sparsity is not None or args.check:
        check("task", task, task is not None,
              "the checkpoint records no task: pass --task for --sparsity / --check")
        get_task(task)  # an unknown task is named before the weights load
    return path, meta, task


def validation_examples(task: str, tokenizer, data_dir: str | None, meta: dict) -> list[dict]:
    """The encoded validation examples of ``task``, at the checkpoint's training length."""
    spec = get_task(task)
    length = (meta.get("config") or {}).get("max_seq_length") or spec.max_seq_length
    data = load_task_data(spec.name, data_dir=data_dir)[spec.validation_splits[0]]
    return encode(data, tokenizer, length)


def main(args) -> dict:
    """The ``export`` subcommand; returns {"output": path, and the check's figures}."""
    path, meta, task = check_args(args)
    top, tokenizer, meta = load_checkpoint(path, meta=meta)
    examples = None
    if args.sparsity is not None or args.check:
        examples = validation_examples(task, tokenizer, args.data_dir, meta)
    if args.sparsity is not None:
        achieved = set_eval_sparsity(top, real_lengths(examples), args.sparsity)
        print(f"gates set to sparsity {achieved:.3f} on {task}'s validation lengths")
    with tempfile.TemporaryDirectory(prefix="toplib-export-", ignore_cleanup_errors=True) as tmp:
        fp32 = os.path.join(tmp, "fp32.onnx") if args.quantize else args.output
        export_onnx(top, fp32, opset=args.opset, dense=args.dense,
                    optimize=not args.no_optimize)
        if args.quantize:
            quantize_int8(fp32, args.output)
    print(f"wrote {args.output} ({'dense' if args.dense else 'token dropping'}, "
          f"{args.quantize or 'fp32'})")
    result = {"output": args.output}
    if args.check:
        result |= compare(top, args.output, examples[:args.check], pruning=not args.dense)
        print(f"check on {result['examples']} {task} validation examples: max |logit diff| "
              f"{result['max_abs_diff']:.2e}, labels agree {result['label_agreement']:.4f}, "
              f"kept counts equal {result['kept_equal']}")
    return result


def compare(top, graph: str, examples: list[dict], pruning: bool = True,
            batch_size: int = 32) -> dict:
    """PyTorch ``predict`` against the graph in onnxruntime: max |logit diff|, label agreement,
    equal kept counts."""
    ref = predict(top, examples, batch_size, pruning=pruning)
    out = ort_predict(OrtModel(graph, 1), examples, batch_size, top.config.pad_token_id or 0)
    kept_equal = None if out.kept is None else bool((out.kept == ref.kept).all())
    return {"examples": len(examples),
            "max_abs_diff": float((out.logits - ref.logits).abs().max()),
            "label_agreement": float((out.logits.argmax(-1) == ref.logits.argmax(-1))
                                     .double().mean()),
            "kept_equal": kept_equal}
