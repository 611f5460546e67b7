#!/bin/bash
# SIGUSR1 under Slurm: slurm/restart_chain.sbatch runs the tiny job on 2 ranks; while the distill
# stage runs, the test sends USR1 to the job step (as --signal=USR1@N does). opd checkpoints and
# exits with 3, the script requeues the job, the job starts again (SLURM_RESTART_COUNT 1),
# resumes from the checkpoint and finishes; its distill metrics equal, line by line and digit by
# digit, those of the same job run uninterrupted by slurm/single_node.sbatch (timings aside).
# Usage: tests/slurm/test_requeue.sh OPD_BINARY
set -uo pipefail
# shellcheck source=tests/slurm/lib.sh
source "$(dirname "$0")/lib.sh"
OPD=$(realpath "$1")
STEPS=1000
slurm_start
make_tiny_job "$OPD"
export OPD JOB=tiny.toml SETS="parallel.student.dp=2 stage.distill.steps=$STEPS"

# Both jobs queue at once; the second starts when the first has freed the two CPUs.
whole=$(RUN_DIR=runs/whole slurm_sbatch --time=10 --output=whole-%j.out \
  "$SLURM_SCRIPTS/single_node.sbatch")
# The script's own warning (USR1@600) would fire at once in a 10-minute job: move it out of reach.
cut=$(RUN_DIR=runs/cut slurm_sbatch --time=10 --signal=USR1@60 --output=cut-%j.out \
  "$SLURM_SCRIPTS/restart_chain.sbatch")
say "uninterrupted run: job $whole; interrupted run: job $cut"

metrics=$WORK/runs/cut/distill/metrics.jsonl
wait_lines "$metrics" 100 300
scancel --signal=USR1 "$cut" || fail "scancel --signal=USR1 $cut"
say "sent USR1 to job $cut at distill step $(wc -l <"$metrics")"

[ "$(wait_job "$whole" 300)" = COMPLETED ] || fail "job $whole did not complete"
state=$(wait_job "$cut" 300)
out=$WORK/cut-$cut.out
[ "$state" = COMPLETED ] || fail "job $cut ended $state"
[ "$(job_field "$cut" Restarts)" = 1 ] || fail "job $cut restarted $(job_field "$cut" Restarts) times, not once"
grep -q "opd: exit status 3" "$out" || fail "opd did not exit with 3 after USR1"
grep -q "opd: requeueing job $cut" "$out" || fail "the script did not requeue the job"
grep -q "opd: job $cut restart 1" "$out" || fail "the job did not start again"
grep -q "resuming from" "$out" || fail "the second start did not resume from a checkpoint"
grep -q "opd: exit status 0" "$out" || fail "the resumed run did not finish"
stopped=$(sed -n 's/.*distill: stopping at step \([0-9]*\) (SIGUSR1).*/\1/p' "$out")
if [ -z "$stopped" ] || [ "$stopped" -ge "$STEPS" ]; then
  fail "opd did not report stopping early on SIGUSR1"
fi
say "the first run stopped at distill step $stopped"

for run in whole cut; do
  [ -e "$WORK/runs/$run/distill/DONE" ] || fail "runs/$run has no distill/DONE"
done
a=$WORK/runs/whole/distill/metrics.jsonl
rows=$(wc -l <"$a")
[ "$rows" -eq "$STEPS" ] || fail "the uninterrupted run wrote $rows rows, not $STEPS"
[ "$(wc -l <"$metrics")" -eq "$STEPS" ] || fail "the resumed run wrote $(wc -l <"$metrics") rows"
if ! cmp -s <(metrics_without_timings "$a") <(metrics_without_timings "$metrics"); then
  diff <(metrics_without_timings "$a") <(metrics_without_timings "$metrics") | head -n 6 >&2
  fail "the resumed run's metrics differ from the uninterrupted run's"
fi
cmp -s "$WORK/runs/whole/distill/results.json" "$WORK/runs/cut/distill/results.json" ||
  fail "results.json differs"
say "PASS: USR1 -> exit 3 -> requeued -> resumed; $rows metrics rows identical to the uninterrupted run"
