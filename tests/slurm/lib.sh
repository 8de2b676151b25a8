# shellcheck shell=bash disable=SC2034  # sourced; the tests use the variables set here
# Shared by the tests in tests/slurm (sourced, not run). Each test:
#   source "$(dirname "$0")/lib.sh" "$@"     # arguments: QISA_BINARY
#   slurm_test_begin NAME                    # skip unless root; local Slurm up; scratch dir
#   ... submit / wait_job / expect ...
#   pass "what was shown"
# The one-node Slurm of cluster/local-slurm (with 2 stand-in GPUs unless QISA_SLURM_GPUS
# says otherwise) is started when it is not up, and stopped again
# at exit only when this test started it (ctest's fixture slurm_cluster normally starts it
# once for all of them). Every wait has a deadline; a failure prints the output file and
# `scontrol show job` of every job the test submitted, and cancels those still queued.
# The scratch directory (under /tmp) is removed when the test passes and kept when it fails.
set -euo pipefail

SLURM_TEST_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SLURM_TEST_SBATCH=$SLURM_TEST_SRC/cluster/sbatch
SLURM_TEST_LOCAL=$SLURM_TEST_SRC/cluster/local-slurm
QISA=${1:-${QISA:-$SLURM_TEST_SRC/build/qisa}}
export QISA  # the templates run $QISA (sbatch passes the environment to the job)
SLURM_TEST_NAME=slurm-test
SLURM_TEST_STARTED=0
SLURM_TEST_JOBS=()
SLURM_TEST_OK=0
WORK=""

log() { echo "[$SLURM_TEST_NAME $(date +%T)] $*"; }

# The test's environment must not come from an enclosing job or launcher (ctest run inside
# an allocation, or under mpirun): those variables would reach the jobs and change how qisa
# sees its world.
for v in $(compgen -e); do
  case "$v" in SLURM_* | SBATCH_* | SRUN_* | SALLOC_* | OMPI_* | PMIX_* | PMI_* | QISA_FAULT) unset "$v" ;; esac
done

slurm_test_cleanup() {
  local rc=$? id
  set +e
  for id in "${SLURM_TEST_JOBS[@]}"; do
    [ -n "$(squeue -h -j "$id" -o %A 2>/dev/null)" ] && { log "cancelling job $id"; scancel "$id"; }
  done
  if [ "$SLURM_TEST_STARTED" = 1 ]; then
    bash "$SLURM_TEST_LOCAL/down.sh" >/dev/null || log "warning: down.sh failed"
  fi
  if [ "$SLURM_TEST_OK" = 1 ] && [ -n "$WORK" ]; then
    rm -rf "$WORK"
  elif [ -n "$WORK" ]; then
    log "kept the scratch directory $WORK"
  fi
  exit "$rc"
}

slurm_test_begin() {
  SLURM_TEST_NAME=$1
  if [ "$(id -u)" != 0 ]; then
    echo "$SLURM_TEST_NAME: skipped: the local Slurm of cluster/local-slurm needs root"
    exit 77  # SKIP_RETURN_CODE
  fi
  [ -x "$QISA" ] || { echo "$SLURM_TEST_NAME: error: qisa binary '$QISA' not found" >&2; exit 1; }
  QISA=$(readlink -f "$QISA")  # absolute: the test and the jobs run elsewhere
  trap slurm_test_cleanup EXIT
  if ! bash "$SLURM_TEST_LOCAL/up.sh" --check >/dev/null 2>&1; then
    SLURM_TEST_STARTED=1
    QISA_SLURM_GPUS=${QISA_SLURM_GPUS:-2} bash "$SLURM_TEST_LOCAL/up.sh" </dev/null || { echo "$SLURM_TEST_NAME: error: up.sh failed" >&2; exit 1; }
  fi
  # shellcheck disable=SC1091
  source "${QISA_SLURM_DIR:-/tmp/qisa-slurm}/env.sh"
  WORK=$(mktemp -d "/tmp/qisa-$SLURM_TEST_NAME.XXXXXX")
  cd "$WORK"
}

# Print the job's output file and scontrol's record of every submitted job.
show_jobs() {
  local id out
  for id in "${SLURM_TEST_JOBS[@]}"; do
    out=$(scontrol show job "$id" 2>/dev/null | sed -n 's/^ *StdOut=//p')
    echo "======== job $id: output ${out:-?}"
    [ -n "$out" ] && [ -f "$out" ] && cat "$out"
    echo "======== job $id: scontrol show job"
    scontrol show job "$id" 2>&1 || true
  done
  return 0
}

fail() {
  echo "$SLURM_TEST_NAME: FAILED: $*" >&2
  show_jobs >&2
  exit 1
}

pass() {
  SLURM_TEST_OK=1
  log "PASS: $* (${SECONDS} s)"
}

# submit VAR [sbatch arguments]: sbatch --parsable; the job id into VAR, remembered for the
# diagnostics and the cleanup.
submit() {
  local var=$1 out
  shift
  out=$(sbatch --parsable "$@" 2>&1) || fail "sbatch $* failed: $out"
  out=${out##*$'\n'}  # the id is the last line (warnings come first)
  out=${out%%;*}
  [[ $out =~ ^[0-9]+$ ]] || fail "sbatch $* printed no job id: $out"
  SLURM_TEST_JOBS+=("$out")
  printf -v "$var" '%s' "$out"
}

# A field of scontrol's job record, e.g. job_field ID JobState.
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# wait_job ID SECONDS: until the job has left the queue for good (a requeued job shows as
# PENDING again, so squeue being empty is the test); fails at the deadline.
wait_job() {
  local id=$1 deadline=$((SECONDS + $2))
  while [ -n "$(squeue -h -j "$id" -o %A 2>/dev/null)" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "job $id still in the queue after $2 s (state $(job_field "$id" JobState))"
    sleep 0.2
  done
}

# wait_until SECONDS WHAT COMMAND...: poll COMMAND until it succeeds; fails at the deadline.
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${SECONDS} s waiting for: $what"
    sleep 0.05
  done
}

expect_state() {  # ID STATE
  local st
  st=$(job_field "$1" JobState)
  [ "$st" = "$2" ] || fail "job $1 ended $st, expected $2"
}

# "step loss" per line from a metrics.jsonl, for the lines that carry a loss; the numbers as
# qisa wrote them (shortest round-trip form), so equal text is equal doubles.
losses() {
  awk '{
    if (!match($0, /"loss":[^,}]*/)) next
    loss = substr($0, RSTART + 7, RLENGTH - 7)
    if (!match($0, /"step":[0-9]+/)) next
    print substr($0, RSTART + 7, RLENGTH - 7), loss
  }' "$1"
}

# A corpus the test makes itself: deterministic English-like text through qisa prepare.
make_corpus() {  # OUT.h5
  awk 'BEGIN {
    split("the cat|a dog|the old king|my friend|the queen", s, "|")
    split("sees|likes|follows|calls|waits for", v, "|")
    split("the moon|a bird|the river|her son|the door", o, "|")
    x = 12345  # an LCG small enough for exact arithmetic in any awk
    for (i = 0; i < 3000; i++) {
      x = (x * 75 + 74) % 65537; a = int(x / 7) % 5 + 1
      x = (x * 75 + 74) % 65537; b = int(x / 7) % 5 + 1
      x = (x * 75 + 74) % 65537; c = int(x / 7) % 5 + 1
      printf "%s %s %s.%s", s[a], v[b], o[c], (i % 4 == 3 ? "\n" : " ")
    }
  }' >"$WORK/text.txt"
  "$QISA" prepare --input "$WORK/text.txt" --out "$1" >"$WORK/prepare.log" 2>&1 ||
    { cat "$WORK/prepare.log" >&2; fail "qisa prepare failed"; }
}

# A tiny model: a 2-rank step takes milliseconds. 16 sequences per step split evenly.
write_config() {  # PATH CORPUS STEPS
  cat >"$1" <<EOF
model:
  block_size: 16
  n_embd: 16
  n_head: 2
  n_layer: 2
  attention: qisa
  dropout: 0.1
data:
  corpus: $2
train:
  batch_size: 16
  steps: $3
  lr: 0.01
  seed: 5
eval:
  every: 0
  windows: 20
log:
  every: 1
  dir: $WORK/run
checkpoint:
  every_steps: 10
  keep_last: 3
EOF
}
