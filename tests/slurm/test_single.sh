#!/bin/bash
# A small distillation job completes under sbatch with 2 ranks: slurm/single_node.sbatch runs the
# tiny job through srun --mpi=pmix as one MPI world of two data-parallel ranks (a layout that
# one rank would refuse), every stage finishes and the checkpoints record that layout.
# Usage: tests/slurm/test_single.sh OPD_BINARY
set -uo pipefail
# shellcheck source=tests/slurm/lib.sh
source "$(dirname "$0")/lib.sh"
OPD=$(realpath "$1")
slurm_start
make_tiny_job "$OPD"

job=$(OPD=$OPD JOB=tiny.toml RUN_DIR=runs/single SETS="parallel.student.dp=2" \
  slurm_sbatch --time=5 --output=single-%j.out "$SLURM_SCRIPTS/single_node.sbatch")
say "submitted single_node.sbatch as job $job"
state=$(wait_job "$job" 300)
out=$WORK/single-$job.out
[ "$state" = COMPLETED ] || fail "job $job ended $state"
[ "$(job_field "$job" ExitCode)" = 0:0 ] || fail "exit code $(job_field "$job" ExitCode)"
grep -q "2 ranks" "$out" || fail "the script did not see 2 tasks"
grep -q "opd: exit status 0" "$out" || fail "opd did not exit with 0"
run=$WORK/runs/single
for stage in teacher student distill; do
  [ -e "$run/$stage/DONE" ] || fail "stage $stage has no DONE"
done
rows=$(wc -l <"$run/distill/metrics.jsonl")
[ "$rows" -eq 200 ] || fail "distill wrote $rows metrics rows, not 200"
inspect=$("$OPD" inspect "$run/distill/checkpoints/step_00000200.h5")
grep -q "layout = tp1.pp1.dp2" <<<"$inspect" ||
  fail "the final checkpoint was not written by two data-parallel ranks"
grep -q '"accuracy_student_final"' "$run/distill/results.json" || fail "no results.json"
say "PASS: job $job finished 3 stages on 2 ranks"
