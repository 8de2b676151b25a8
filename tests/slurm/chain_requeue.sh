#!/usr/bin/env bash
# cluster/sbatch/chain.sbatch: job 1 is signalled mid-run the way its time limit would signal
# it (scancel --signal=USR1 --batch), checkpoints and requeues itself; the same job id runs
# again, resumes from the checkpoint and completes. Its stitched loss curve equals an
# uninterrupted 2-rank run's (cpu_single_node.sbatch, submitted alongside), step for step,
# exactly.
#   bash tests/slurm/chain_requeue.sh BUILD/qisa
# shellcheck source=tests/slurm/lib.sh disable=SC2154  # lib.sh; submit sets the id variables
source "$(dirname "$0")/lib.sh" "$@"
slurm_test_begin slurm-chain-requeue

steps=60
make_corpus "$WORK/corpus.h5"
write_config "$WORK/tiny.yaml" "$WORK/corpus.h5" "$steps"
submit ref --ntasks=2 --time=5 --output="$WORK/%x-%j.out" \
  "$SLURM_TEST_SBATCH/cpu_single_node.sbatch" "$WORK/tiny.yaml" --quiet "log.dir=$WORK/straight"
# 50 ms per step (a pause that changes no number) so that the run is still going when the
# signal comes. The environment is the job's at every restart.
# --time=15: chain.sbatch asks for USR1 300 s before the time limit; with --time=5 Slurm would
# send it at once, racing the test's own signal.
QISA_FAULT="train.step:sleep=50" submit job --ntasks=2 --time=15 --output="$WORK/%x-%j.out" \
  "$SLURM_TEST_SBATCH/chain.sbatch" "$WORK/tiny.yaml" "$WORK/chained" --quiet
log "submitted the uninterrupted run as job $ref, the chain as job $job"

trained() { [ "$(losses "$WORK/chained/metrics.jsonl" 2>/dev/null | wc -l)" -ge "$1" ]; }
wait_until 60 "10 steps of job $job" trained 10
scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 --batch $job failed"
log "signalled job $job (USR1 to the batch shell) after $(losses "$WORK/chained/metrics.jsonl" | wc -l) steps"
wait_job "$job" 120
wait_job "$ref" 60

expect_state "$ref" COMPLETED
expect_state "$job" COMPLETED
out=$WORK/qisa-chain-$job.out
[ "$(job_field "$job" Restarts)" = 1 ] || fail "job $job restarted $(job_field "$job" Restarts) times, expected 1"
grep -q "stopped by SIGUSR1 after step" "$out" || fail "job $job: qisa did not stop on the forwarded SIGUSR1"
grep -q "requeueing job $job" "$out" || fail "job $job did not requeue itself"
stopped=$(sed -n 's/.*stopped by SIGUSR1 after step \([0-9]*\).*/\1/p' "$out" | head -n 1)
grep -q "resumed from .*ckpt_0*$stopped.h5 at step $stopped" "$out" || fail "the second run did not resume at step $stopped"
[ "$stopped" -lt "$steps" ] || fail "stopped at step $stopped: not mid-run"
[ -f "$WORK/chained/final.h5" ] || fail "no final.h5 after the chain"
losses "$WORK/straight/metrics.jsonl" >"$WORK/straight.txt"
losses "$WORK/chained/metrics.jsonl" >"$WORK/chained.txt"
[ "$(wc -l <"$WORK/straight.txt")" = "$steps" ] || fail "the uninterrupted run logged $(wc -l <"$WORK/straight.txt") losses, expected $steps"
if ! diff "$WORK/straight.txt" "$WORK/chained.txt" >"$WORK/diff.txt"; then
  cat "$WORK/diff.txt" >&2
  fail "the stitched loss curve differs from the uninterrupted run's (diff above: step loss)"
fi
pass "job $job stopped at step $stopped, requeued, resumed, completed; $steps losses equal the uninterrupted job $ref's exactly"
