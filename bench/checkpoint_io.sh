#!/usr/bin/env bash
# Checkpoint bandwidth (bench/checkpoint_io.toml): a run stopped at step 2 writes checkpoints at
# steps 1 and 2, the resumed run reads step 2 and writes step 3; prints the run log's checkpoint
# lines for one rank and for tp2 (mpirun -np 2). Usage: bench/checkpoint_io.sh [BUILD_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
opd="$(cd "${1:-$here/../build}" && pwd)/opd"
work="$(mktemp -d /tmp/opd-bench-ckpt.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$opd" data arith --out train.jsonl --count 200 --seed 1 --max-digits 3 >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
for layout in one tp2; do
  launch=("$opd")
  extra=()
  if [ "$layout" = tp2 ]; then
    launch=(mpirun --oversubscribe -np 2 "$opd")
    extra=(--set parallel.student.tp=2)
  fi
  for pass in stop resume; do
    env $([ $pass = stop ] && echo OPD_STOP_AT_STEP=2) "${launch[@]}" run "$here/checkpoint_io.toml" \
      --set run.dir="runs/$layout" --set stage.pretrain.steps=3 "${extra[@]}" 2>&1 |
      grep -E "checkpoint step" | sed "s/^/$layout: /" || true
  done
done
