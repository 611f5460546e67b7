#!/bin/bash
# The other scripts of slurm/ on the tiny job: multi_node.sbatch (here one node, two ranks as one
# data-parallel world), split.sbatch (student on rank 0, teacher on rank 1), and sweep.sbatch as
# a two-value array (one rank each; the two run side by side), plus the sweep's refusal of an
# index without a value. The split run must equal the colocated one-rank run of the same job (the
# sweep's lr=1e-3, the job's own learning rate) metric for metric, as README promises.
# Usage: tests/slurm/test_scripts.sh OPD_BINARY
set -uo pipefail
# shellcheck source=tests/slurm/lib.sh
source "$(dirname "$0")/lib.sh"
OPD=$(realpath "$1")
slurm_start
make_tiny_job "$OPD"
export OPD JOB=tiny.toml

multi=$(RUN_DIR=runs/multi SETS="parallel.student.dp=2" slurm_sbatch --time=5 \
  --output=multi-%j.out "$SLURM_SCRIPTS/multi_node.sbatch")
split=$(RUN_DIR=runs/split STUDENT_TP=1 STUDENT_DP=1 TEACHER_TP=1 TEACHER_PP=1 TEACHER_DP=1 \
  slurm_sbatch --time=5 --output=split-%j.out "$SLURM_SCRIPTS/split.sbatch")
sweep=$(RUN_BASE=runs/sweep PARAM=stage.distill.optim.lr VALUES="1e-3 3e-4" \
  slurm_sbatch --time=5 --ntasks-per-node=1 --array=0-1 "$SLURM_SCRIPTS/sweep.sbatch")
beyond=$(VALUES="1e-3 3e-4" slurm_sbatch --time=5 --ntasks-per-node=1 --array=2 \
  "$SLURM_SCRIPTS/sweep.sbatch")
say "multi_node job $multi, split job $split, sweep array $sweep, sweep index 2 of 2 values: $beyond"

for job in "$multi" "$split" "${sweep}_0" "${sweep}_1"; do
  state=$(wait_job "$job" 300)
  [ "$state" = COMPLETED ] || fail "job $job ended $state"
done
[ "$(wait_job "${beyond}_2" 120)" = FAILED ] || fail "sweep index 2 of 2 values did not fail"
[ "$(job_field "${beyond}_2" ExitCode)" = 2:0 ] || fail "sweep index 2: exit $(job_field "${beyond}_2" ExitCode), not 2"
grep -q "VALUES has 2 words" "$WORK/opd-sweep-${beyond}_2.out" || fail "no message for index 2"

for run in multi split sweep/lr_1e-3 sweep/lr_3e-4; do
  for stage in teacher student distill; do
    [ -e "$WORK/runs/$run/$stage/DONE" ] || fail "runs/$run: stage $stage has no DONE"
  done
  rows=$(wc -l <"$WORK/runs/$run/distill/metrics.jsonl")
  [ "$rows" -eq 200 ] || fail "runs/$run: $rows metrics rows, not 200"
done

inspect=$("$OPD" inspect "$WORK/runs/multi/distill/checkpoints/step_00000200.h5")
grep -q "layout = tp1.pp1.dp2" <<<"$inspect" || fail "multi_node: not a 2-rank data-parallel run"

grep -q "student ranks 0-0, teacher ranks 1-1" "$WORK/split-$split.out" ||
  fail "split: the script did not place the student on rank 0 and the teacher on rank 1"
grep -q "placement = 'split'" "$WORK/runs/split/job.toml" || fail "split: placement is not split"
if ! cmp -s <(metrics_without_timings "$WORK/runs/split/distill/metrics.jsonl") \
  <(metrics_without_timings "$WORK/runs/sweep/lr_1e-3/distill/metrics.jsonl"); then
  fail "the split run's metrics differ from the colocated one-rank run's"
fi

for v in 1e-3 3e-4; do
  grep -Eq "^ *lr = $v" "$WORK/runs/sweep/lr_$v/job.toml" ||
    grep -q "lr = $(awk -v x="$v" 'BEGIN { printf "%.17g", x }')" "$WORK/runs/sweep/lr_$v/job.toml" ||
    fail "sweep: runs/sweep/lr_$v/job.toml does not set lr = $v"
done
cmp -s "$WORK/runs/sweep/lr_1e-3/distill/metrics.jsonl" "$WORK/runs/sweep/lr_3e-4/distill/metrics.jsonl" &&
  fail "sweep: both learning rates gave the same metrics"
say "PASS: multi_node, split (= colocated), sweep (2 values, and a bad index refused)"
