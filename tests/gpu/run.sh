#!/usr/bin/env bash
# The GPU check, in one call on a lent GPU machine (one H100 or H200; at most 8 minutes), from the
# repository root with gpu-bundle.tar.xz carried (tools/gpu_bundle): the device, every CUDA op against
# the CPU backend (backend_test_cuda_ops: fp32 within 1e-5 relative), the device runtime test,
# training-step and decode benchmarks of a ~0.4B model on the GPU (fp32 for now), and a short
# table last.
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
# Every GPU test executable of the bundle (each op, the attention, the distillation ops, the
# whole model, NCCL), one log each.
suites=()
for t in "$bin"/*_test_*; do
  name="$(basename "$t")"
  suites+=("$name")
  run "$name" 150 "$t" --gtest_color=no
done
# Training step: 24 layers, d_model 1024, vocab 32000 (about 0.4B parameters), batch 4 x 512.
timeout 180 "$bin/opd" bench train --device cuda --d-model 1024 --layers 24 --heads 16 \
  --kv-heads 16 --ff 4096 --vocab 32000 --batch 4 --seq 512 --steps 3 \
  --json "$out/bench_train.json" >"$out/bench_train.log" 2>&1
result[bench_train]="rc=$? $(grep -o 'train  cuda.*' "$out/bench_train.log" | head -1)"
# Decode at batch 1 and 64 against the HBM roofline (a copy ceiling measured in the same run).
timeout 120 "$bin/opd" bench decode --device cuda --d-model 1024 --layers 24 --heads 16 \
  --kv-heads 16 --ff 4096 --vocab 32000 --batch-sizes 1 64 --prompt 64 --new-tokens 32 \
  --json "$out/bench_decode.json" >"$out/bench_decode.log" 2>&1
result[bench_decode]="rc=$? $(grep -o 'decode cuda.*' "$out/bench_decode.log" | tr '\n' ' ')"

echo
echo "== opd GPU check: $gpu"
printf '%-14s %s\n' "suite" "result"
for k in "${suites[@]}" bench_train bench_decode; do printf '%-14s %s\n' "$k" "${result[$k]}"; done
