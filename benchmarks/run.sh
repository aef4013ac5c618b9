#!/usr/bin/env bash
# The benchmark runs behind benchmarks/README.md. Each writes benchmarks/results/<name>.json
# and prints its table (kept in benchmarks/results/<name>.txt).
# THREADS: torch threads (default 1: on a machine shared with other jobs, two-thread
# OpenMP timings are dominated by scheduling stalls; see README). NICE: scheduling priority.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
THREADS=${THREADS:-1}
NICE=${NICE:-0}
R=benchmarks/results
NEWS="--task 20news --data-dir /work/shared/data/20news"
BB="--config bert-base --sparsity 0.6"
run() {  # run NAME ARGS...: one benchmark, JSON + text table
  local name=$1; shift
  nice -n "$NICE" .venv/bin/toplib bench --threads "$THREADS" "$@" --json "$R/$name.json" \
    2>"$R/$name.log" | tee "$R/$name.txt"
}
case "${1:-all}" in
  bert128)     run "bert-base_L128_bs1_t$THREADS" $BB $NEWS --length 128 --batch-sizes 1 --runs 20
               run "bert-base_L128_bs32_t$THREADS" $BB $NEWS --length 128 --batch-sizes 32 --runs 3 --warmup 1 ;;
  bert32)      run "bert-base_L32_bs1_t$THREADS" $BB $NEWS --length 32 --batch-sizes 1 --runs 20 --max-seq-length 128
               run "bert-base_L32_bs32_t$THREADS" $BB $NEWS --length 32 --batch-sizes 32 --runs 5 --warmup 1 --max-seq-length 128 ;;
  bert512)     run "bert-base_L512_bs1_t$THREADS" $BB $NEWS --length 512 --batch-sizes 1 --runs 10 --warmup 2
               run "bert-base_L512_bs32_t$THREADS" $BB $NEWS --length 512 --batch-sizes 32 --runs 2 --warmup 0 ;;
  minilm)      run "minilm_20news_bs1_t$THREADS" --sparsity 0.6 $NEWS --length 32,128,512 --batch-sizes 1 --runs 20 --plot-dir $R/minilm_plots_bs1
               run "minilm_20news_bs32_t$THREADS" --sparsity 0.6 $NEWS --length 32,128,512 --batch-sizes 32 --runs 5 --warmup 1
               run "minilm_rotten_tomatoes_t$THREADS" --sparsity 0.5 --batch-sizes 1,32 --runs 20 ;;
  onednn)      run "bert-base_L128_bs1_onednn_t$THREADS" $BB $NEWS --length 128 --batch-sizes 1 --runs 20 --onednn
               run "bert-base_L32_bs1_onednn_t$THREADS" $BB $NEWS --length 32 --batch-sizes 1 --runs 20 --max-seq-length 128 --onednn ;;
  all)         for what in bert128 bert32 minilm onednn bert512; do "$0" "$what"; done ;;
esac
