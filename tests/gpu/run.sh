#!/usr/bin/env bash
# The GPU check, in one call on a lent GPU machine (one H100 or H200; at most 8 minutes), from the
# repository root with gpu-bundle.tar.xz carried (tools/gpu_bundle):
#  1. every GPU test executable of the bundle: each CUDA op against the CPU backend (fp32 within
#     1e-5, bf16 within 1e-2), the flash attention, the distillation ops, the whole model (a
#     training step, bf16, greedy decoding), a distillation job on the GPU against the CPU job,
#     NCCL (one-rank groups; the two-rank tests need two GPUs and mpirun, else they skip);
#  2. benchmarks of a ~0.5B student (Qwen2.5-0.5B's shape) in bf16 mixed precision: the training
#     step's MFU against the card's dense bf16 peak, teacher prefill (scoring) tokens/s, decode
#     tokens/s at batch 1 and 64 against the HBM roofline; GEMM and copy ceilings measured in the
#     same runs;
#  3. a short table last.
# Logs go to $OUT when set (the device tool's output folder).
set -uo pipefail
root="$(pwd)"
out="${OUT:-$root/gpu-results}"
mkdir -p "$out"
[ -d gpu-bundle ] || tar xJf gpu-bundle.tar.xz || { echo "no gpu-bundle.tar.xz: run tools/gpu_bundle"; exit 2; }
export LD_LIBRARY_PATH="$root/gpu-bundle/lib:${LD_LIBRARY_PATH:-}"
export OPENBLAS_NUM_THREADS=8
bin="$root/gpu-bundle/bin"
gpu="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
echo "device: $gpu"
missing="$(ldd "$bin/opd" | grep 'not found' || true)"
[ -n "$missing" ] && echo "missing libraries: $missing"

declare -A result
run() {  # name timeout command...
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s.%N)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local secs=$(echo "$(date +%s.%N) - $t0" | bc)
  local passed=$(grep -c '^\[       OK \]' "$out/$name.log")
  local failed=$(grep -c '^\[  FAILED  \] [A-Za-z].* ms)$' "$out/$name.log")
  local skipped=$(grep -c '^\[  SKIPPED \] [A-Za-z].* ms)$' "$out/$name.log")
  result[$name]="rc=$rc passed=$passed failed=$failed skipped=$skipped ${secs}s"
  tail -5 "$out/$name.log"
}
# Every GPU test executable of the bundle, one log each. *Worker.* tests run only under their
# driver's mpirun; without mpirun here the multi-rank drivers are left out too.
export OPD_BINARY="$bin/opd"   # the tests that run opd jobs
filter='-*Worker.*'
command -v mpirun >/dev/null || filter="$filter:NcclLibrary.TwoRanksOnOneNode:DeviceParallel.*"
suites=()
for t in "$bin"/*_test_*; do
  name="$(basename "$t")"
  suites+=("$name")
  run "$name" 90 "$t" --gtest_color=no --gtest_filter="$filter"
done

# A ~0.5B student: Qwen2.5-0.5B's shape (tied embeddings, GQA 14/2, head dim 64), bf16 GEMMs.
model=(--d-model 896 --layers 24 --heads 14 --kv-heads 2 --ff 4864 --vocab 151936 --precision bf16)
bench() {  # name timeout pattern args...
  local name=$1 limit=$2 pattern=$3
  shift 3
  timeout "$limit" "$bin/opd" bench "$@" --json "$out/$name.json" >"$out/$name.log" 2>&1
  local rc=$?
  result[$name]="rc=$rc $(grep -o "$pattern.*" "$out/$name.log" | tr '\n' ' ')"
  tail -3 "$out/$name.log"
}
bench bench_train 120 'train  cuda' train --device cuda "${model[@]}" --batch 8 --seq 1024 --steps 3
bench bench_score 60 'score  cuda' score --device cuda "${model[@]}" --batch 16 --seq 1024 --steps 3
bench bench_decode 120 'decode cuda' decode --device cuda "${model[@]}" --batch-sizes 1 64 \
  --prompt 128 --new-tokens 64

echo
echo "== opd GPU check: $gpu"
printf '%-36s %s\n' "suite" "result"
for k in "${suites[@]}" bench_train bench_score bench_decode; do printf '%-36s %s\n' "$k" "${result[$k]}"; done
