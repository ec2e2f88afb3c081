#!/usr/bin/env bash
# Everything cf-ref measures on a GPU, in one run of at most ~8 minutes on one H100 / H200.
#
#   bash benchmarks/gpu_suite.sh                 # results in $OUT if set, else results/gpu-<date>/
#   SUITE_TINY=1 bash benchmarks/gpu_suite.sh    # the same steps on the CPU with tiny models (a smoke run)
#
# Parts (each under its own time limit, so one slow part cannot eat the budget; a part that fails or runs out of
# time leaves a line in summary.md and the suite goes on):
#   1. sampling (benchmarks/gpu_sampling.py): eager (dynamic and static cache), compiled, CUDA graphs; chunk-wise and
#      frame-wise; DiT-only ms per block incl. the cache pass, DiT and end-to-end FPS with the Wan VAE, first-block
#      latency — Wan2.1-T2V-1.3B + Wan VAE with random weights, bf16, 480×832, 81 frames           (limit 240 s)
#   2. training (benchmarks/full_train_speed.py --size wan-1.3b): step time and peak memory per stage, batch 1,
#      21 latent frames, bf16, gradient checkpointing, 3 timed steps                                 (limit 160 s)
#   3. the plan's predictions (cf-ref full plan, H100 SXM), when this checkout has the command      (limit 60 s)
# Then summary.md collects the tables: paste them into docs/benchmarks.md.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${OUT:-$ROOT/results/gpu-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT/summary.md"
START=$(date +%s)

if [ "${SUITE_TINY:-0}" = "1" ]; then
  SAMPLING=(--tiny --frames 3 --repeats 0)
  TRAIN=(--size tiny --device cpu --steps 1 --warmup 1 --pairs 1)
else
  SAMPLING=(--repeats 1)
  TRAIN=(--size wan-1.3b --device cuda --steps 3 --warmup 1 --pairs 1)
fi

part() {  # part NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log, note the outcome
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    echo "- $name: done in ${took} s" >>"$SUMMARY"
  elif [ $rc -eq 124 ] || [ $rc -eq 130 ]; then
    echo "- $name: stopped at its limit of ${limit} s (see $name.log)" >>"$SUMMARY"
  else
    echo "- $name: failed (exit $rc) after ${took} s: $(tail -n 1 "$OUT/$name.log")" >>"$SUMMARY"
  fi
}

{
  echo "# GPU suite, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  python -c "from cf_ref.machine import machine_summary; print(machine_summary())"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo
} >"$SUMMARY"

part sampling 240 python "$HERE/gpu_sampling.py" "${SAMPLING[@]}" --out "$OUT"
part training 160 python "$HERE/full_train_speed.py" "${TRAIN[@]}" --json "$OUT/training.json"
if cf-ref full plan --help >/dev/null 2>&1; then
  part plan 60 cf-ref full plan --config "$ROOT/configs/full/causal_forcing_chunkwise.yaml" --gpus 1 --gpu h100-sxm-80gb \
    --json "$OUT/plan.json"
else
  echo "- plan: this checkout has no \`cf-ref full plan\`; predictions not run" >>"$SUMMARY"
fi

python "$HERE/gpu_tables.py" "$OUT" >>"$SUMMARY" 2>>"$OUT/tables.log" || echo "- tables: failed (tables.log)" >>"$SUMMARY"
echo >>"$SUMMARY"
echo "Total: $(( $(date +%s) - START )) s" >>"$SUMMARY"
cat "$SUMMARY"
