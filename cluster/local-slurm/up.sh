#!/usr/bin/env bash
# Bring up a one-node Slurm (munged, slurmctld, slurmd) on localhost, for tests and demos.
#
#   bash cluster/local-slurm/up.sh            # installs what is missing, starts, waits for `idle`
#   bash cluster/local-slurm/up.sh --check    # exit 0 when it is up, 1 when not; changes nothing
#   source /tmp/qisa-slurm/env.sh             # SLURM_CONF and Open MPI's root flags for clients
#   sbatch cluster/sbatch/cpu_single_node.sbatch configs/paper/qisa_reference.yaml
#   bash cluster/local-slurm/down.sh          # cancels jobs, stops what up.sh started
#
# Idempotent: when the daemons it started are up and the node answers, it says so and exits 0.
# Each fresh start wipes the controller state (job ids restart at 1). Needs root (the daemons
# run as root and jobs run as the submitting user) and Debian/Ubuntu for the packages.
# Nothing is written to /etc/slurm: clients need SLURM_CONF from env.sh.
#
# Settings (environment variables; defaults in brackets):
#   QISA_SLURM_DIR          config, state, logs, pid files, env.sh          [/tmp/qisa-slurm]
#   QISA_SLURM_CPUS         CPUs the node advertises (may exceed the cores) [4]
#   QISA_SLURM_MEMORY_MB    RealMemory of the node                          [1000]
#   QISA_SLURM_AUTH         munge | none (auth/none: no munged at all)       [munge]
#   QISA_SLURM_INSTALL      1: apt-get install missing packages; 0: fail     [1]
#   QISA_SLURM_TIMEOUT      seconds to wait for the node to become idle      [60]
#   QISA_SLURM_CTLD_PORT    slurmctld port                                   [6817]
#   QISA_SLURM_SLURMD_PORT  slurmd port                                      [6818]
#   QISA_SLURM_GPUS         stand-in GPUs: gres entries backed by character devices under
#                           QISA_SLURM_DIR/dev (/dev/null's numbers), no GPU behind them; they
#                           let the GPU templates' Slurm side run here (--gpus-per-node,
#                           CUDA_VISIBLE_DEVICES per task); 0: none              [0]
#   QISA_SLURM_REQUEUE_S    how long a requeued job waits before it may start
#                           again (AuthInfo cred_expire; Slurm's default 120) [5]
#
# Why the less obvious slurm.conf lines are there (each was seen to matter on Debian 12 with
# slurm-wlm 22.05 and Open MPI 4.1.4):
#   MpiDefault=pmix                Debian's Open MPI has only a PMIx client: srun --mpi=pmi2 or
#                                  none fail in MPI_Init. pmix makes a bare `srun prog` work.
#   SlurmdParameters=config_overrides  lets the node advertise more CPUs than it has cores
#                                  (else the node is drained: "Low socket*core*thread count").
#   EnforcePartLimits=ALL          an impossible request fails at submission instead of pending
#                                  forever.
#   SchedulerParameters            batch_sched_delay=0: batch jobs start at once, not on a 3 s
#                                  tick; sched_interval/bf_interval=2: a job that becomes
#                                  eligible later (a requeued one) starts within 2 s, not 30-60.
#   mpi.conf PMIxCliTmpDirBase     per-step PMIx directories under the state directory, which
#                                  every start wipes: job ids restart at 1, and a directory left
#                                  in /tmp by a killed job would make the next job of that id fail.
#   AuthInfo=cred_expire           a requeued batch job may not start before the credential
#                                  lifetime has passed (120 s by default; too slow for tests).
#                                  With 5 s a self-requeued job runs again about 7 s later.
set -euo pipefail

ME="up.sh"
DIR=${QISA_SLURM_DIR:-/tmp/qisa-slurm}
CPUS=${QISA_SLURM_CPUS:-4}
MEMORY=${QISA_SLURM_MEMORY_MB:-1000}
AUTH=${QISA_SLURM_AUTH:-munge}
INSTALL=${QISA_SLURM_INSTALL:-1}
TIMEOUT=${QISA_SLURM_TIMEOUT:-60}
CTLD_PORT=${QISA_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${QISA_SLURM_SLURMD_PORT:-6818}
REQUEUE_S=${QISA_SLURM_REQUEUE_S:-5}
GPUS=${QISA_SLURM_GPUS:-0}
CONF=$DIR/etc/slurm.conf
NODE=$(hostname -s)

say() { echo "$ME: $*"; }
die() { echo "$ME: error: $*" >&2; exit 1; }
# A pid from a pid file that is alive; zombies (a daemon that died, not yet reaped) count as dead.
pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! ps -o stat= -p "$1" 2>/dev/null | grep -q '^Z'; }
node_state() { SLURM_CONF=$CONF timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1 || true; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
tails() {
  local f
  for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    [ -f "$f" ] && { echo "---- last lines of $f" >&2; tail -n 20 "$f" >&2; }
  done
  return 0
}

is_up() {
  alive "$(pid_of slurmctld)" && alive "$(pid_of slurmd)" || return 1
  case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

if [ "${1:-}" = --check ]; then
  [ -f "$CONF" ] && is_up && { say "up (SLURM_CONF=$CONF)"; exit 0; }
  say "not up (QISA_SLURM_DIR=$DIR)"; exit 1
fi
[ $# -eq 0 ] || die "usage: $ME [--check]  (settings are environment variables, see the top of $0)"

[ "$(id -u)" = 0 ] || die "must run as root (the local cluster runs its daemons as root)"
case "$AUTH" in munge | none) ;; *) die "QISA_SLURM_AUTH='$AUTH': use munge or none" ;; esac
for v in CPUS:CPUS MEMORY:MEMORY_MB TIMEOUT:TIMEOUT CTLD_PORT:CTLD_PORT SLURMD_PORT:SLURMD_PORT REQUEUE_S:REQUEUE_S GPUS:GPUS; do
  name=${v%%:*}
  val=${!name}
  [[ $val =~ ^[0-9]+$ ]] || die "QISA_SLURM_${v#*:}='$val' is not a number"
done

# ---------------------------------------------------------------- packages
pkgs="slurmctld slurmd slurm-client slurm-wlm-basic-plugins libpmix2 openmpi-bin"
[ "$AUTH" = munge ] && pkgs="$pkgs munge"
missing=""
for p in $pkgs; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
  [ "$INSTALL" = 1 ] || die "missing packages:$missing (QISA_SLURM_INSTALL=0: not installing)"
  command -v apt-get >/dev/null || die "missing packages:$missing and no apt-get to install them"
  say "installing:$missing"
  t0=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  apt_log=$(mktemp /tmp/qisa-slurm-apt.XXXXXX)
  # shellcheck disable=SC2086
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $missing; } \
    >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    rm -f "$apt_log"
    die "apt-get install$missing failed (last lines above)"
  fi
  rm -f "$apt_log"
  say "installed in $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------- already up?
if [ -f "$CONF" ] && is_up; then
  node_line=$(grep '^NodeName=' "$CONF" || true)
  gpus_up=$(sed -n 's/.* Gres=gpu:\([0-9]*\).*/\1/p' <<<"$node_line")
  cpus_up=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
  if [ "${gpus_up:-0}" != "$GPUS" ] || [ "$cpus_up" != "$CPUS" ]; then
    say "warning: already up with ${cpus_up} CPUs and ${gpus_up:-0} stand-in GPUs, not the $CPUS and $GPUS asked for;" \
      "run down.sh first to change them"
  fi
  say "already up (SLURM_CONF=$CONF); clients: source $DIR/env.sh"
  exit 0
fi

# Leftovers of an earlier start from this directory: stop them by their pid files only.
for d in slurmd slurmctld; do
  p=$(pid_of "$d")
  if alive "$p"; then
    say "stopping the earlier $d (pid $p), which is not answering"
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do alive "$p" || break; sleep 0.1; done
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  fi
  rm -f "$DIR/run/$d.pid"
done

port_busy "$CTLD_PORT" && die "port $CTLD_PORT (slurmctld) is in use by another process; set QISA_SLURM_CTLD_PORT"
port_busy "$SLURMD_PORT" && die "port $SLURMD_PORT (slurmd) is in use by another process; set QISA_SLURM_SLURMD_PORT"

mkdir -p "$DIR/etc" "$DIR/run" "$DIR/log"
rm -rf "$DIR/state"
rm -f "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"  # the tails on failure are this start's
mkdir -p "$DIR/state/ctld" "$DIR/state/slurmd" "$DIR/state/pmix"

# ---------------------------------------------------------------- munge
if [ "$AUTH" = munge ]; then
  auth_lines="AuthType=auth/munge
CredType=cred/munge"
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key || die "mungekey --create failed"
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  fi
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -f "$DIR/run/munged.pid" ] || say "using the munged that is already running (down.sh leaves it alone)"
  else
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 ||
      { tail -n 5 /var/log/munge/munged.log >&2 || true; die "munged is not answering (log above)"; }
    cp /run/munge/munged.pid "$DIR/run/munged.pid"  # down.sh stops munged only when this file exists
  fi
else
  auth_lines="AuthType=auth/none
CredType=cred/none"
fi

# ---------------------------------------------------------------- configuration
gres_node=""
gres_types=""
rm -rf "${DIR:?}/dev" "$DIR/etc/gres.conf"
if [ "$GPUS" -gt 0 ]; then
  mkdir -p "$DIR/dev"
  for ((i = 0; i < GPUS; i++)); do
    if ! mknod "$DIR/dev/gpu$i" c 1 3 2>/dev/null; then  # e.g. a container without CAP_MKNOD
      say "warning: cannot create the stand-in GPU device $DIR/dev/gpu$i (mknod): starting without stand-in GPUs"
      GPUS=0
      break
    fi
  done
fi
if [ "$GPUS" -gt 0 ]; then
  files=${DIR}/dev/gpu0
  [ "$GPUS" = 1 ] || files="${DIR}/dev/gpu[0-$((GPUS - 1))]"
  echo "NodeName=${NODE} Name=gpu File=${files}" >"$DIR/etc/gres.conf"
  gres_node=" Gres=gpu:${GPUS}"
  gres_types="GresTypes=gpu"
fi
cat >"$CONF" <<EOF
# Written by cluster/local-slurm/up.sh: a one-node cluster on localhost for tests and demos.
ClusterName=qisa-local
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
${auth_lines}
AuthInfo=cred_expire=${REQUEUE_S}
StateSaveLocation=${DIR}/state/ctld
SlurmdSpoolDir=${DIR}/state/slurmd
SlurmctldPidFile=${DIR}/run/slurmctld.pid
SlurmdPidFile=${DIR}/run/slurmd.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
MpiDefault=pmix
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
${gres_types}
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEMORY}${gres_node} State=UNKNOWN
PartitionName=local Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
echo "PMIxCliTmpDirBase=${DIR}/state/pmix" >"$DIR/etc/mpi.conf"

cat >"$DIR/env.sh" <<EOF
# Written by cluster/local-slurm/up.sh. Source it before sinfo/sbatch/srun/squeue.
export QISA_SLURM_DIR=${DIR}
export SLURM_CONF=${CONF}
# jobs run as root here; mpirun refuses root without these (srun does not need them)
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
EOF
export SLURM_CONF=$CONF

# ---------------------------------------------------------------- daemons
t0=$(date +%s.%N)
slurmctld -f "$CONF" || { tails; die "slurmctld -f $CONF failed (log above)"; }
slurmd -f "$CONF" || { tails; die "slurmd -f $CONF failed (log above)"; }

# The forking parents exit 0 even when the daemon dies right after (a busy port, a bad line),
# so poll sinfo and watch the pids.
deadline=$((SECONDS + TIMEOUT))
state=""
while :; do
  for d in slurmctld slurmd; do
    alive "$(pid_of "$d")" || { sleep 0.3; tails; die "$d exited during start-up (log above)"; }
  done
  state=$(node_state)
  [ "$state" = idle ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    SLURM_CONF=$CONF timeout 5 sinfo -N -o '%N %T %E' >&2 2>&1 || true
    tails
    die "node $NODE is '${state:-not answering}', not idle, after ${TIMEOUT} s (log above)"
  fi
  sleep 0.2
done
say "node $NODE idle ($CPUS CPUs, $GPUS stand-in GPUs) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s;" \
  "slurmctld pid $(pid_of slurmctld), slurmd pid $(pid_of slurmd); clients: source $DIR/env.sh"
