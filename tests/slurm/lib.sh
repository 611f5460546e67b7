# shellcheck shell=bash disable=SC2034  # sourced by the tests; they use what it sets
# A one-node Slurm on this machine for the tests in tests/slurm/ (sourced, not run).
#
# slurm_start makes a scratch directory, starts a private munged (its own key and socket), then
# slurmctld and slurmd with a slurm.conf generated there (free ports, this machine's CPUs and
# memory, fast scheduling and requeueing), and waits for the node to be idle. An EXIT trap cancels
# every job of that cluster and stops the three daemons it started, by their pid files, whatever
# way the test ends. Nothing outside the scratch directory is touched, so the harness can run
# beside a system Slurm or another copy of itself.
#
# Tests submit the scripts of slurm/ unchanged: sbatch options override their #SBATCH lines
# (slurm_sbatch adds the partition and sizes of this cluster) and the environment sets their
# variables (OPD, JOB, RUN_DIR, SETS, ...).
#
# Exit status 77 (ctest: skipped) when the Slurm or munge programs are not installed.

SLURM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Every wait ends by this deadline (seconds of the test's life), below ctest's TIMEOUT (900), so
# that the test fails and stops its daemons itself instead of being killed without cleanup.
DEADLINE=$((SECONDS + ${OPD_SLURM_TEST_SECONDS:-840}))
SLURM_SCRIPTS=$SLURM_ROOT/slurm

say() { echo "[slurm-test] $*"; }

fail() {
  echo "[slurm-test] FAIL: $*" >&2
  slurm_dump_logs >&2
  exit 1
}

slurm_require() {
  local p
  for p in slurmctld slurmd munged sbatch srun scontrol scancel squeue sinfo; do
    if ! command -v "$p" >/dev/null && ! [ -x "/usr/sbin/$p" ]; then
      echo "[slurm-test] SKIP: '$p' is not installed (tools/setup installs slurmctld slurmd" \
        "slurm-client munge)"
      exit 77
    fi
  done
  [ "$(id -u)" -eq 0 ] || fail "the local Slurm runs its daemons as root; run the test as root"
  export PATH=$PATH:/usr/sbin
}

# A TCP port nobody listens on, with the next one free too (slurmctld and slurmd).
free_port_pair() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
      ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

slurm_start() {
  slurm_require
  SCRATCH=$(mktemp -d /tmp/opd-slurm.XXXXXX)
  chmod 755 "$SCRATCH"  # munged (its own user) must reach its socket directory
  trap slurm_stop EXIT
  WORK=$SCRATCH/work
  mkdir -p "$WORK" "$SCRATCH/state" "$SCRATCH/spool" "$SCRATCH/log"
  say "scratch $SCRATCH"

  # munged as the munge user, with a fresh key: credentials of this cluster only.
  local m=$SCRATCH/munge
  install -d -o munge -g munge -m 0755 "$m"
  head -c 1024 /dev/urandom >"$m/munge.key"
  chown munge:munge "$m/munge.key"
  chmod 0400 "$m/munge.key"
  runuser -u munge -- munged --socket="$m/munge.socket" --key-file="$m/munge.key" \
    --pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed" ||
    fail "munged did not start"
  MUNGED_STARTED=1

  local port mem
  port=$(free_port_pair) || fail "no free TCP port pair"
  mem=$(($(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo) - 1024))
  # cred_expire=5 and the short scheduler intervals make a requeued job start again in about
  # 7 s instead of about 2 minutes. RealMemory above the real memory would drain the node.
  cat >"$SCRATCH/slurm.conf" <<EOF
ClusterName=opdtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$m/munge.socket,cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
JobCompType=jobcomp/filetxt
JobCompLoc=$SCRATCH/log/jobcomp.txt
SchedulerParameters=bf_interval=1,sched_interval=2
MinJobAge=600
KillWait=30
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/slurmctld.pid
SlurmdPidFile=$SCRATCH/slurmd.pid
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=opd Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$SCRATCH/slurm.conf
  # The submitting environment travels into jobs; none of an outer allocation's must.
  unset SLURM_JOB_ID SLURM_JOBID SLURM_NTASKS SLURM_NNODES SLURM_NODELIST SLURM_JOB_NODELIST
  slurmctld -c || fail "slurmctld did not start"
  CTLD_STARTED=1
  slurmd -N localhost || fail "slurmd did not start"
  SLURMD_STARTED=1
  local state=
  for _ in $(seq 150); do
    state=$(sinfo -h -N -o %t 2>/dev/null)
    [ "$state" = idle ] && break
    sleep 0.2
  done
  [ "$state" = idle ] || fail "the node is '$state', not idle, 30 s after start"
  say "slurm up (ports $port, $((port + 1)); $(nproc) CPUs)"
}

# Stops what slurm_start started; runs on every exit of the test.
slurm_stop() {
  local rc=$?
  trap - EXIT
  if [ -n "${CTLD_STARTED:-}" ]; then
    scancel --full --quiet --user=root 2>/dev/null
    for _ in $(seq 60); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  # Job steps left behind (slurmd stopped before they ended) carry this cluster's SLURM_CONF.
  local pid
  for pid in $(pgrep -x slurmstepd 2>/dev/null); do
    { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=${SLURM_CONF:-/}" &&
      kill -KILL "$pid" 2>/dev/null
  done
  [ -n "${SLURMD_STARTED:-}" ] && stop_by_pidfile "$SCRATCH/slurmd.pid"
  [ -n "${CTLD_STARTED:-}" ] && stop_by_pidfile "$SCRATCH/slurmctld.pid"
  [ -n "${MUNGED_STARTED:-}" ] && stop_by_pidfile "$SCRATCH/munge/munged.pid"
  if [ -n "${SCRATCH:-}" ]; then
    if [ "$rc" -eq 0 ] && [ -z "${OPD_SLURM_KEEP:-}" ]; then
      rm -rf "$SCRATCH"
    else
      say "kept $SCRATCH"
    fi
  fi
  exit "$rc"
}

stop_by_pidfile() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
}

slurm_dump_logs() {
  [ -n "${SCRATCH:-}" ] || return 0
  local f
  for f in "$WORK"/*.out; do
    [ -e "$f" ] || continue
    echo "----- $f (last 40 lines)"
    tail -n 40 "$f"
  done
  echo "----- slurmctld.log (last 20 lines)"
  tail -n 20 "$SCRATCH/log/slurmctld.log" 2>/dev/null
}

# sbatch in $WORK with this cluster's partition and sizes (they override a script's #SBATCH
# lines); prints the job id. Usage: slurm_sbatch [sbatch options...] SCRIPT
slurm_sbatch() {
  (cd "$WORK" && sbatch --parsable --partition=opd --account=opdtest --nodes=1 \
    --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 "$@") ||
    fail "sbatch $* was refused"
}

# One field of `scontrol show job` (JobState, ExitCode, Restarts, ...).
job_field() {
  scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# Waits until job $1 has ended for good (not requeued), at most $2 seconds (and not past the
# deadline); prints its state.
wait_job() {
  local start=$SECONDS end=$((SECONDS + $2)) state
  [ "$end" -le "$DEADLINE" ] || end=$DEADLINE
  while [ "$SECONDS" -lt "$end" ]; do
    state=$(job_field "$1" JobState)
    case $state in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        echo "$state"
        return 0
        ;;
    esac
    sleep 1
  done
  fail "job $1 still '$state' after $((SECONDS - start)) s"
}

# Waits until file $1 has at least $2 lines, at most $3 seconds.
wait_lines() {
  local start=$SECONDS end=$((SECONDS + $3))
  [ "$end" -le "$DEADLINE" ] || end=$DEADLINE
  while [ "$SECONDS" -lt "$end" ]; do
    [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
    sleep 0.2
  done
  fail "$1 has fewer than $2 lines after $((SECONDS - start)) s"
}

# A metrics.jsonl without its timing fields (wall times and rates), one line per step: what
# must be identical between an interrupted and an uninterrupted run.
metrics_without_timings() {
  sed -E 's/"(time_[a-z_]+|tokens_per_second|step_seconds|comm_seconds)":[^,}]*,?//g' "$1"
}

# The tiny job's data (opd data arith) in $WORK and the job file; $1 is the opd binary.
make_tiny_job() {
  (cd "$WORK" &&
    "$1" data arith --out train.jsonl --count 400 --seed 1 --max-digits 2 >/dev/null &&
    "$1" data arith --out test.jsonl --count 40 --seed 2 --max-digits 2 >/dev/null) ||
    fail "opd data arith failed"
  cp "$SLURM_ROOT/tests/slurm/tiny_distill.toml" "$WORK/tiny.toml"
}
