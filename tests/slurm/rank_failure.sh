#!/usr/bin/env bash
# A job whose rank 1 exits with status 3 at step 5 (fault injection, QISA_FAULT passed through
# sbatch's environment) ends FAILED, not COMPLETED, and soon: rank 0, left waiting in the
# all-reduce, is ended by srun --kill-on-bad-exit, not left to hang until the time limit.
#   bash tests/slurm/rank_failure.sh BUILD/qisa
# shellcheck source=tests/slurm/lib.sh disable=SC2154  # lib.sh; submit sets the id variables
source "$(dirname "$0")/lib.sh" "$@"
slurm_test_begin slurm-rank-failure

make_corpus "$WORK/corpus.h5"
write_config "$WORK/tiny.yaml" "$WORK/corpus.h5" 100000
t0=$SECONDS
QISA_FAULT="train.step@rank=1@step=5:exit=3" submit job --ntasks=2 --time=5 --output="$WORK/%x-%j.out" \
  "$SLURM_TEST_SBATCH/cpu_single_node.sbatch" "$WORK/tiny.yaml" --quiet
log "submitted job $job"
wait_job "$job" 60
took=$((SECONDS - t0))

expect_state "$job" FAILED
code=$(job_field "$job" ExitCode)
[ "${code%%:*}" != 0 ] || fail "job $job FAILED with exit code $code"
out=$WORK/qisa-cpu-$job.out
grep -q "task 1: Exited with exit code 3" "$out" || fail "the output does not show rank 1's exit code 3"
[ ! -f "$WORK/run/final.h5" ] || fail "a failed job wrote final.h5"
[ "$took" -le 30 ] || fail "the job took $took s to end (expected: seconds)"
pass "job $job FAILED (ExitCode=$code) $took s after submission"
