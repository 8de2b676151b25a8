#!/usr/bin/env bash
# cluster/sbatch/submit_chain.sh: three jobs chained with --dependency=afterany. Job 1 is
# signalled mid-run (scancel --signal=USR1 --batch), checkpoints and ends COMPLETED without
# requeueing; job 2 resumes and completes the run; job 3 finds final.h5 and ends at once. The
# stitched loss curve equals an uninterrupted 2-rank run's, step for step, exactly.
#   bash tests/slurm/chain_dependency.sh BUILD/qisa
# shellcheck source=tests/slurm/lib.sh disable=SC2154  # lib.sh; submit sets the id variables
source "$(dirname "$0")/lib.sh" "$@"
slurm_test_begin slurm-chain-dependency

steps=60
make_corpus "$WORK/corpus.h5"
write_config "$WORK/tiny.yaml" "$WORK/corpus.h5" "$steps"
submit ref --ntasks=2 --time=5 --output="$WORK/%x-%j.out" \
  "$SLURM_TEST_SBATCH/cpu_single_node.sbatch" "$WORK/tiny.yaml" --quiet "log.dir=$WORK/straight"
# --time=15: chain.sbatch asks for USR1 300 s before the time limit; with --time=5 Slurm would
# send it at once, racing the test's own signal.
QISA_FAULT="train.step:sleep=50" QISA_SBATCH_ARGS="--ntasks=2 --time=15 --output=$WORK/%x-%j.out" \
  bash "$SLURM_TEST_SBATCH/submit_chain.sh" 3 "$WORK/tiny.yaml" "$WORK/chained" --quiet >"$WORK/ids.txt" ||
  fail "submit_chain.sh failed"
mapfile -t ids <"$WORK/ids.txt"
SLURM_TEST_JOBS+=("${ids[@]}")
[ "${#ids[@]}" = 3 ] || fail "submit_chain.sh printed ${#ids[@]} job ids, expected 3"
log "submitted the uninterrupted run as job $ref, the chain as jobs ${ids[*]}"
[[ $(job_field "${ids[1]}" Dependency) == "afterany:${ids[0]}"* ]] ||
  fail "job ${ids[1]} has Dependency=$(job_field "${ids[1]}" Dependency), expected afterany:${ids[0]}"

trained() { [ "$(losses "$WORK/chained/metrics.jsonl" 2>/dev/null | wc -l)" -ge "$1" ]; }
wait_until 60 "10 steps of job ${ids[0]}" trained 10
scancel --signal=USR1 --batch "${ids[0]}" || fail "scancel --signal=USR1 --batch ${ids[0]} failed"
log "signalled job ${ids[0]} after $(losses "$WORK/chained/metrics.jsonl" | wc -l) steps"
for id in "${ids[@]}"; do wait_job "$id" 120; done
wait_job "$ref" 60

expect_state "$ref" COMPLETED
for id in "${ids[@]}"; do
  expect_state "$id" COMPLETED
  [ "$(job_field "$id" Restarts)" = 0 ] || fail "job $id was requeued (QISA_CHAIN_REQUEUE=0 should prevent it)"
done
out1=$WORK/qisa-chain-${ids[0]}.out
stopped=$(sed -n 's/.*stopped by SIGUSR1 after step \([0-9]*\).*/\1/p' "$out1" | head -n 1)
{ [ -n "$stopped" ] && [ "$stopped" -lt "$steps" ]; } || fail "job ${ids[0]} did not stop mid-run on SIGUSR1"
grep -q "the next job of the chain resumes" "$out1" || fail "job ${ids[0]} did not end as a link of the chain"
grep -q "resumed from .*ckpt_0*$stopped.h5 at step $stopped" "$WORK/qisa-chain-${ids[1]}.out" ||
  fail "job ${ids[1]} did not resume at step $stopped"
grep -q "exists: the run is complete" "$WORK/qisa-chain-${ids[2]}.out" || fail "job ${ids[2]} did not see the complete run"
losses "$WORK/straight/metrics.jsonl" >"$WORK/straight.txt"
losses "$WORK/chained/metrics.jsonl" >"$WORK/chained.txt"
[ "$(wc -l <"$WORK/straight.txt")" = "$steps" ] || fail "the uninterrupted run logged $(wc -l <"$WORK/straight.txt") losses, expected $steps"
if ! diff "$WORK/straight.txt" "$WORK/chained.txt" >"$WORK/diff.txt"; then
  cat "$WORK/diff.txt" >&2
  fail "the stitched loss curve differs from the uninterrupted run's (diff above: step loss)"
fi
pass "jobs ${ids[*]}: stopped at step $stopped, resumed by the next job, third one found the run complete; $steps losses equal job $ref's exactly"
