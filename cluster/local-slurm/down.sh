#!/usr/bin/env bash
# Tear down the one-node Slurm that cluster/local-slurm/up.sh started.
#
#   bash cluster/local-slurm/down.sh
#
# 1. Cancels every job while the daemons still run (stopping slurmd alone leaves slurmstepd and
#    the job's processes running), and waits for the queue to empty.
# 2. Stops slurmd, slurmctld and munged, in that order, by the pids in $QISA_SLURM_DIR/run/
#    only (never by name); munged only when up.sh started it. SIGTERM, then SIGKILL after the
#    timeout.
# 3. Removes the controller state; keeps etc/ and log/ for a look afterwards.
# Idempotent: with nothing running it says so and exits 0. Exits 1 when something it should
# have stopped is still alive.
#
# Settings: QISA_SLURM_DIR [/tmp/qisa-slurm], QISA_SLURM_DOWN_TIMEOUT seconds per wait [30].
set -uo pipefail

ME="down.sh"
DIR=${QISA_SLURM_DIR:-/tmp/qisa-slurm}
TIMEOUT=${QISA_SLURM_DOWN_TIMEOUT:-30}
export SLURM_CONF=$DIR/etc/slurm.conf

say() { echo "$ME: $*"; }
pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! ps -o stat= -p "$1" 2>/dev/null | grep -q '^Z'; }
queue() { timeout 10 squeue -h -o '%A %T' 2>/dev/null || true; }

if [ ! -d "$DIR/run" ]; then
  say "nothing to stop (no $DIR/run)"
  exit 0
fi

# ---------------------------------------------------------------- 1. jobs
if alive "$(pid_of slurmctld)" && [ -f "$SLURM_CONF" ]; then
  jobs=$(queue | awk '{ print $1 }')
  if [ -n "$jobs" ]; then
    say "cancelling jobs: ${jobs//$'\n'/ }"
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while [ -n "$(queue)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.3; done
    left=$(queue)
    [ -z "$left" ] || say "warning: still in the queue after ${TIMEOUT} s: ${left//$'\n'/, }"
  fi
fi

# ---------------------------------------------------------------- 2. daemons
failed=0
stop() {  # NAME
  local name=$1 pid
  pid=$(pid_of "$name")
  if ! alive "$pid"; then
    rm -f "$DIR/run/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  local deadline=$((SECONDS + TIMEOUT))
  while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if alive "$pid"; then
    say "$name (pid $pid) ignored SIGTERM for ${TIMEOUT} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.5
  fi
  if alive "$pid"; then
    say "error: $name (pid $pid) is still running"
    failed=1
  else
    rm -f "$DIR/run/$name.pid"
    say "stopped $name (pid $pid)"
  fi
}
stop slurmd
stop slurmctld
[ -f "$DIR/run/munged.pid" ] && stop munged

# ---------------------------------------------------------------- 3. state, leftovers
rm -rf "$DIR/state"
# Job step daemons are not ours to kill by name; name them so that someone can look.
left=$(ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/ && $3 ~ /^slurmstepd/' || true)
if [ -n "$left" ]; then
  say "warning: slurmstepd processes are still running (not stopped: not started by up.sh):"
  echo "$left"
fi
[ "$failed" = 0 ] && say "down ($DIR/log keeps the logs)"
exit "$failed"
