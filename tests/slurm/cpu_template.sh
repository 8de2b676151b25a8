#!/usr/bin/env bash
# cluster/sbatch/cpu_single_node.sbatch, submitted with 2 ranks through sbatch, trains: the job
# ends COMPLETED, both ranks trained together (one 2-rank MPI world), metrics.jsonl has every
# step, final.h5 exists.
#   bash tests/slurm/cpu_template.sh BUILD/qisa     (ctest -L slurm runs it)
# shellcheck source=tests/slurm/lib.sh disable=SC2154  # lib.sh; submit sets the id variables
source "$(dirname "$0")/lib.sh" "$@"
slurm_test_begin slurm-cpu-template

steps=30
make_corpus "$WORK/corpus.h5"
write_config "$WORK/tiny.yaml" "$WORK/corpus.h5" "$steps"
submit job --ntasks=2 --cpus-per-task=1 --time=5 --output="$WORK/%x-%j.out" \
  "$SLURM_TEST_SBATCH/cpu_single_node.sbatch" "$WORK/tiny.yaml" --quiet
log "submitted job $job"
wait_job "$job" 120

expect_state "$job" COMPLETED
out=$WORK/qisa-cpu-$job.out
grep -q "| 2 ranks (mpi)" "$out" || fail "the job did not train as one 2-rank MPI world"
grep -q "trained to step $steps " "$out" || fail "no 'trained to step $steps' in the output"
[ -f "$WORK/run/final.h5" ] || fail "no $WORK/run/final.h5"
losses "$WORK/run/metrics.jsonl" >"$WORK/losses.txt"
[ "$(wc -l <"$WORK/losses.txt")" = "$steps" ] || fail "metrics.jsonl has $(wc -l <"$WORK/losses.txt") loss lines, expected $steps"
[ "$(awk '{ print $1 }' "$WORK/losses.txt" | tr '\n' ' ')" = "$(seq -s ' ' 1 "$steps") " ] ||
  fail "metrics.jsonl steps are not 1..$steps: $(awk '{ print $1 }' "$WORK/losses.txt" | tr '\n' ' ')"
pass "job $job COMPLETED: 2 ranks, $steps steps in metrics.jsonl, final.h5"
