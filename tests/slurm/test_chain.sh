#!/bin/bash
# A chain of short allocations finishes a job longer than any one of them. The tiny job's distill
# stage is lengthened to about TARGET seconds of work (measured on a short calibration run, so
# the test holds on a fast or a loaded machine) and submitted through slurm/submit_chain as two
# links of slurm/restart_chain.sbatch, each allocation limited to one minute with Slurm's own
# warning --signal=USR1@5 (Slurm sends it at its next 30-second check after 25 s). Each
# allocation ends by USR1 -> checkpoint -> exit 3 -> scontrol requeue, until the run's DONE
# exists; the second link, waiting on the first with afterany, then finds DONE and exits at once.
# Checked: the job completed, every allocation stayed within the limit, the distill stage's work
# exceeds the longest allocation, and its metrics hold every step exactly once, in order.
# Usage: tests/slurm/test_chain.sh OPD_BINARY
set -uo pipefail
# shellcheck source=tests/slurm/lib.sh
source "$(dirname "$0")/lib.sh"
OPD=$(realpath "$1")
TARGET=${OPD_SLURM_CHAIN_SECONDS:-75}
slurm_start
make_tiny_job "$OPD"
export OPD JOB=tiny.toml
# Wider models and more rollouts than the tiny job: tens of milliseconds per step, so that
# TARGET seconds take a few thousand steps, not a metrics file of a million lines.
HEAVY="model.student.d_model=128 model.student.d_ff=256 model.teacher.d_model=256 \
model.teacher.d_ff=512 model.teacher.n_layers=2 stage.distill.prompts_per_step=16 \
stage.distill.samples_per_prompt=4 stage.distill.rollout.max_new_tokens=24"

# Seconds of distill work in a metrics file: the phases of every step, summed.
work_seconds() {
  awk '{ for (i = 1; i <= 5; i++) {
           k = i == 1 ? "time_rollout" : i == 2 ? "time_teacher" : i == 3 ? "time_update" : \
               i == 4 ? "time_eval" : "time_checkpoint"
           if (match($0, "\"" k "\":[0-9.eE+-]+")) s += substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3)
         } }
       END { printf "%.1f\n", s }' "$1"
}

# Calibration: 100 steps through the same script and rank count.
cal=$(RUN_DIR=runs/cal SETS="$HEAVY stage.distill.steps=100" slurm_sbatch --time=5 \
  --output=cal-%j.out "$SLURM_SCRIPTS/single_node.sbatch")
[ "$(wait_job "$cal" 300)" = COMPLETED ] || fail "calibration job $cal did not complete"
cal_work=$(work_seconds "$WORK/runs/cal/distill/metrics.jsonl")
steps=$(awk -v w="$cal_work" -v t="$TARGET" 'BEGIN { n = int(100 * t / (w > 0.1 ? w : 0.1));
  print (n < 500 ? 500 : (n > 50000 ? 50000 : n)) }')
say "100 steps took ${cal_work} s: the chained job runs $steps steps (about $TARGET s)"

mapfile -t links < <(cd "$WORK" && RUN_DIR=runs/chain \
  SETS="$HEAVY stage.distill.steps=$steps stage.distill.log_every=500" \
  "$SLURM_SCRIPTS/submit_chain" 2 --partition=opd --account=opdtest --nodes=1 \
  --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 --time=1 --signal=USR1@5 \
  --output=chain-%j.out "$SLURM_SCRIPTS/restart_chain.sbatch")
[ "${#links[@]}" -eq 2 ] || fail "submit_chain printed ${links[*]}"
first=${links[0]} second=${links[1]}
say "chain: job $first, then job $second (afterany)"

state=$(wait_job "$first" $((20 * TARGET + 300)))
[ "$state" = COMPLETED ] || fail "job $first ended $state"
[ "$(wait_job "$second" 120)" = COMPLETED ] || fail "job $second did not complete"
out=$WORK/chain-$first.out
restarts=$(job_field "$first" Restarts)
[ "$restarts" -ge 1 ] || fail "job $first finished in one allocation"
grep -q "opd: exit status 0" "$out" || fail "the last allocation did not finish the run"
grep -q "the run is finished" "$WORK/chain-$second.out" || fail "job $second did not see the DONE"
grep -q "opd run" "$WORK/chain-$second.out" && fail "job $second started opd again"

# Every allocation of the first job, from the job-completion log: each within the limit.
longest=0
allocations=0
while read -r start end; do
  seconds=$(($(date -d "$end" +%s) - $(date -d "$start" +%s)))
  allocations=$((allocations + 1))
  [ "$seconds" -gt "$longest" ] && longest=$seconds
  # The limit is enforced at Slurm's 30-second checks.
  [ "$seconds" -le 95 ] || fail "an allocation lasted $seconds s with a 1-minute limit"
done < <(sed -n "s/^JobId=$first .*StartTime=\([^ ]*\) EndTime=\([^ ]*\) .*/\1 \2/p" \
  "$SCRATCH/log/jobcomp.txt")
[ "$allocations" -eq $((restarts + 1)) ] ||
  fail "$allocations allocations logged for $((restarts + 1)) starts"

metrics=$WORK/runs/chain/distill/metrics.jsonl
[ -e "$WORK/runs/chain/distill/DONE" ] || fail "no distill/DONE"
cmp -s <(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$metrics") <(seq 1 "$steps") ||
  fail "the metrics do not hold steps 1..$steps once each, in order"
work=$(work_seconds "$metrics")
awk -v w="$work" -v l="$longest" 'BEGIN { exit !(w > l) }' ||
  fail "the job's $work s of work fit in one allocation ($longest s)"
say "PASS: $steps steps ($work s of work) in $allocations allocations of at most $longest s"
