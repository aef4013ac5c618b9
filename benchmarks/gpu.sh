#!/usr/bin/env bash
# The GPU table: `benchmarks/gpu.sh OUT_DIR [TOKENIZER_DIR] [NEWS_DIR]` on a CUDA machine.
# bert-base-sized config, sparsity 0.6 over layers 2..11, 20 Newsgroups texts truncated to
# 32 / 128 / 512 real tokens, batch 1 and 32, median of 20 interleaved runs; plus a check
# that the token-dropping path predicts like the masked one on the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?output folder}
TOK=${2:-}
NEWS=${3:-${TOPLIB_DATA_DIR:-../shared/data}/20news}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
ARGS="--config bert-base --sparsity 0.6 --task 20news --data-dir $NEWS --device cuda ${TOK:+--tokenizer $TOK}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu_device.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$OUT/gpu_device.txt"
$PY -m toplib bench $ARGS --length 32 --max-seq-length 128 --batch-sizes 1,32 --runs 20 \
  --json "$OUT/gpu_L32.json" 2>"$OUT/gpu_L32.log" | tee "$OUT/gpu_L32.txt"
$PY -m toplib bench $ARGS --length 128,512 --batch-sizes 1,32 --runs 20 \
  --json "$OUT/gpu_L128_512.json" 2>"$OUT/gpu_L128_512.log" | tee "$OUT/gpu_L128_512.txt"
$PY - "$NEWS" "$TOK" <<'PY' | tee "$OUT/gpu_equivalence.txt"
# Token dropping vs. masking on the GPU: 256 inputs of 128 tokens, batches of 32.
import sys, torch
from toplib.bench import BenchSettings, benchmark_inputs, build_model
from toplib.data import pad_examples
from toplib.infer import prune_forward, set_eval_sparsity
top, tok = build_model(config="bert-base", tokenizer=sys.argv[2] or None, num_labels=20)
settings = BenchSettings("20news", sys.argv[1], length=128)
encoded = benchmark_inputs(settings, tok, 256)
set_eval_sparsity(top, torch.tensor([len(e["input_ids"]) for e in encoded]), 0.6)
top.to("cuda")
worst, same = 0.0, True
with torch.inference_mode():
    for i in range(0, len(encoded), 32):
        b = {k: v.cuda() for k, v in pad_examples(encoded[i:i + 32], 0).items()}
        ref = top(b["input_ids"], b["attention_mask"], b.get("token_type_ids")).logits
        got = prune_forward(top, b["input_ids"], b["attention_mask"], b.get("token_type_ids")).logits
        worst = max(worst, float((got - ref).abs().max()))
        same &= bool(torch.equal(got.argmax(-1), ref.argmax(-1)))
print(f"GPU, {len(encoded)} inputs: max |logit difference| {worst:.2e}, same labels: {same}")
PY
