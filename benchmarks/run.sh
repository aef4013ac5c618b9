#!/usr/bin/env bash
# The benchmark runs behind benchmarks/results/README.md: `benchmarks/run.sh NAME...` (or `all`).
# Each writes benchmarks/results/<NAME>_t<THREADS>.json, the printed table (.txt) and the log.
# THREADS: torch threads (default: 1, see benchmarks/results/README.md on machine load); NICE: scheduling priority;
# SUFFIX: appended to the output names; QUIET_LOAD: wait (up to 20 min) until the 1-minute
# load average is below this before each run.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
THREADS=${THREADS:-1}
NICE=${NICE:-0}
SUFFIX=${SUFFIX:-}
QUIET_LOAD=${QUIET_LOAD:-}
R=benchmarks/results
DATA=${TOPLIB_DATA_DIR:-../shared/data}
NEWS="--task 20news --data-dir $DATA/20news"
BB="--config bert-base --sparsity 0.6 $NEWS"   # random weights, prune layers 2..11, BIN_NUM 25
MINI="--sparsity 0.6 $NEWS"                   # offline default: all-MiniLM-L6-v2, prune layers 1..5

declare -A RUNS=(
  [bert-base_L128_bs1]="$BB --length 128 --batch-sizes 1 --runs 20"
  [bert-base_L128_bs32]="$BB --length 128 --batch-sizes 32 --runs 3 --warmup 1"
  [bert-base_L32_bs1]="$BB --length 32 --batch-sizes 1 --runs 20 --max-seq-length 128"
  [bert-base_L32_bs32]="$BB --length 32 --batch-sizes 32 --runs 5 --warmup 1 --max-seq-length 128"
  [bert-base_L512_bs1]="$BB --length 512 --batch-sizes 1 --runs 10 --warmup 2"
  [bert-base_L512_bs32]="$BB --length 512 --batch-sizes 32 --runs 2 --warmup 0"
  [bert-base_L128_bs1_onednn]="$BB --length 128 --batch-sizes 1 --runs 20 --onednn"
  [bert-base_L128_bs32_onednn]="$BB --length 128 --batch-sizes 32 --runs 3 --warmup 1 --onednn"
  [bert-base_L32_bs1_onednn]="$BB --length 32 --batch-sizes 1 --runs 20 --max-seq-length 128 --onednn"
  [minilm_20news_bs1]="$MINI --length 32,128,512 --batch-sizes 1 --runs 20 --plot-dir $R/minilm_plots_bs1_t$THREADS"
  [minilm_20news_bs32]="$MINI --length 32,128,512 --batch-sizes 32 --runs 5 --warmup 1"
  [minilm_rotten_tomatoes]="--sparsity 0.5 --batch-sizes 1,32 --runs 20"
  [trained_rotten_tomatoes]="--checkpoint runs/rotten_tomatoes/top --batch-sizes 1,32 --runs 20"
)
ORDER="bert-base_L128_bs1 bert-base_L128_bs32 bert-base_L32_bs1 bert-base_L32_bs32 minilm_20news_bs1
minilm_20news_bs32 minilm_rotten_tomatoes bert-base_L128_bs1_onednn bert-base_L128_bs32_onednn
bert-base_L32_bs1_onednn
bert-base_L512_bs1 bert-base_L512_bs32"

names=("$@")
[[ ${#names[@]} -eq 0 || ${names[0]} == all ]] && names=($ORDER)
wait_quiet() {
  [[ -z $QUIET_LOAD ]] && return 0
  for _ in $(seq 80); do
    awk -v max="$QUIET_LOAD" '{exit !($1 < max)}' /proc/loadavg && return 0
    sleep 15
  done
}
for name in "${names[@]}"; do
  wait_quiet
  out="$R/${name}_t$THREADS$SUFFIX"
  # shellcheck disable=SC2086  # word splitting of the argument strings is intended
  nice -n "$NICE" .venv/bin/toplib bench --threads "$THREADS" ${RUNS[$name]} --json "$out.json" \
    2>"$out.log" | tee "$out.txt"
done
