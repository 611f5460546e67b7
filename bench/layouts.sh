#!/usr/bin/env bash
# Distillation step throughput on several layouts of the same job (bench/distill_layouts.toml):
# one rank with all cores' BLAS threads and with one, then dp2, tp2, pp2 (2 micro-batches) and pp2
# with 8 micro-batches, one BLAS thread per rank. Prints,
# per layout, the median over steps 2..6 of response tokens/s, step time and the share of the step
# spent in communication calls (time_comm), plus the phases. Usage: bench/layouts.sh [BUILD_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
opd="$(cd "${1:-$here/../build}" && pwd)/opd"
work="$(mktemp -d /tmp/opd-bench-layouts.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$opd" data arith --out train.jsonl --count 400 --seed 1 --max-digits 3 >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() {  # name ranks threads extra-args...
  local name=$1 ranks=$2 threads=$3
  shift 3
  if [ "$ranks" = 1 ]; then
    OPENBLAS_NUM_THREADS=$threads "$opd" run "$here/distill_layouts.toml" --set run.dir="runs/$name" "$@" >"$name.log" 2>&1
  else
    OPENBLAS_NUM_THREADS=$threads mpirun --oversubscribe -np "$ranks" "$opd" run "$here/distill_layouts.toml" \
      --set run.dir="runs/$name" "$@" >"$name.log" 2>&1
  fi
}
run one 1 "$(nproc)"
run one_1t 1 1
run dp2 2 1
run tp2 2 1 --set parallel.student.tp=2 --set parallel.teacher.tp=2
run pp2 2 1 --set parallel.student.pp=2 --set parallel.teacher.pp=2
run pp2_m8 2 1 --set parallel.student.pp=2 --set parallel.teacher.pp=2 --set parallel.micro_batches=8
python3 - "$work" <<'PY'
import json, statistics, sys, pathlib
work = pathlib.Path(sys.argv[1])
print(f"{'layout':8} {'tok/s':>8} {'step ms':>8} {'comm %':>7} {'rollout':>8} {'teacher':>8} {'update':>8}")
for name in ["one", "one_1t", "dp2", "tp2", "pp2", "pp2_m8"]:
    rows = [json.loads(l) for l in open(work / "runs" / name / "distill" / "metrics.jsonl")][1:]
    med = lambda k: statistics.median(r[k] for r in rows)
    step = med("response_tokens") / med("tokens_per_second")
    print(f"{name:8} {med('tokens_per_second'):8.0f} {1e3*step:8.1f} {100*med('time_comm')/step:7.1f}"
          f" {1e3*med('time_rollout'):8.1f} {1e3*med('time_teacher'):8.1f} {1e3*med('time_update'):8.1f}")
PY
