#!/usr/bin/env bash
# submit_chain.sh: a long `qisa train` run as N dependent jobs (--dependency=afterany), the
# alternative to chain.sbatch's self-requeue for sites that do not allow requeueing.
#
#   bash cluster/sbatch/submit_chain.sh N CONFIG RUN_DIR [key=value ...]
#   QISA_SBATCH_ARGS="--time=04:00:00 --ntasks=8" bash cluster/sbatch/submit_chain.sh 10 \
#        configs/paper/qisa_reference.yaml runs/long train.steps=200000
#
# Submits N jobs of cluster/sbatch/chain.sbatch (QISA_CHAIN_SCRIPT to use another), job k+1
# with --dependency=afterany:<job k>, all with QISA_CHAIN_REQUEUE=0. Each job trains until
# its time limit is near (--signal=B:USR1@SECONDS in chain.sbatch), checkpoints and ends; the
# next one resumes from the checkpoint (train.resume: auto). afterany, not afterok: the next
# job also starts when one ran out of time or failed, and resumes from the newest checkpoint
# that verifies (a persistent error then fails each remaining job quickly). Jobs that start
# after the run is complete (RUN_DIR/final.h5 exists) end at once. Cancel the rest of a
# chain with scancel on their ids.
#
# Prints the job ids, one a line, on stdout (messages go to stderr).
# Environment: QISA_SBATCH_ARGS extra sbatch options for every job (split at spaces);
# QISA_CHAIN_SCRIPT the job script; everything else reaches the jobs (sbatch passes the
# environment), e.g. QISA=/path/to/qisa.
set -euo pipefail

die() { echo "submit_chain.sh: error: $*" >&2; exit 1; }
[ $# -ge 3 ] || die "usage: submit_chain.sh N CONFIG RUN_DIR [key=value ...]"
n=$1
shift
[[ $n =~ ^[1-9][0-9]*$ ]] || die "N='$n' is not a positive number of jobs"
[ -f "$1" ] || die "config '$1' not found"
script=${QISA_CHAIN_SCRIPT:-$(cd "$(dirname "$0")" && pwd)/chain.sbatch}
[ -f "$script" ] || die "job script '$script' not found"
command -v sbatch >/dev/null || die "sbatch not found (is Slurm's client installed, SLURM_CONF set?)"

# shellcheck disable=SC2206
extra=(${QISA_SBATCH_ARGS:-})
prev=""
for ((k = 1; k <= n; k++)); do
  dep=()
  [ -z "$prev" ] || dep=(--dependency="afterany:$prev")
  out=$(QISA_CHAIN_REQUEUE=0 sbatch --parsable "${dep[@]}" "${extra[@]}" "$script" "$@") ||
    die "sbatch of job $k of $n failed${prev:+ (jobs submitted so far end with $prev)}"
  id=${out##*$'\n'}
  id=${id%%;*}
  echo "submit_chain.sh: job $k of $n: $id${prev:+ (after $prev)}" >&2
  echo "$id"
  prev=$id
done
