#!/usr/bin/env bash
# `qisa experiment GRID --slurm` on the local Slurm: the cells run as an array job (one task
# per cell), the report job runs after it, and results.csv / results.md hold every cell.
#   bash tests/slurm/experiment_array.sh BUILD/qisa     (ctest -L slurm runs it)
# shellcheck source=tests/slurm/lib.sh disable=SC2154  # lib.sh
source "$(dirname "$0")/lib.sh" "$@"
slurm_test_begin slurm-experiment-array

steps=20
make_corpus "$WORK/corpus.h5"
write_config "$WORK/base.yaml" "$WORK/corpus.h5" "$steps"
cat >"$WORK/grid.yaml" <<GRID
base: base.yaml
out: $WORK/exp
seeds: [1, 2]
grid:
  model.attention: [csa, qisa]
  model.mask: [causal]
set: {train.threads: 1, log.every: 5}
eval: {windows: 16, batch: 8, gen_prompts: 4, gen_tokens: 4, probe_windows: 2}
GRID
"$QISA" experiment "$WORK/grid.yaml" --slurm --sbatch-arg=--time=5 >"$WORK/submit.log" 2>&1 ||
  { cat "$WORK/submit.log" >&2; fail "qisa experiment --slurm failed"; }
cat "$WORK/submit.log"
read -r array report < <(sed -n 's/^submitted array job \([0-9]*\) .* report job \([0-9]*\) .*/\1 \2/p' "$WORK/submit.log")
[ -n "${array:-}" ] && [ -n "${report:-}" ] || fail "no job ids in: $(cat "$WORK/submit.log")"
SLURM_TEST_JOBS+=("$array" "$report")
log "array job $array, report job $report"
wait_job "$array" 180
wait_job "$report" 60
expect_state "$report" COMPLETED
for i in 0 1 2 3; do
  [ -f "$WORK/exp/slurm/cell_$i.out" ] || fail "no output of array task $i"
done
rows=$(tail -n +2 "$WORK/exp/results.csv" | wc -l)
[ "$rows" = 4 ] || fail "results.csv has $rows rows, expected 4: $(cat "$WORK/exp/results.csv")"
for cell in csa_causal_seed1 qisa_causal_seed1 csa_causal_seed2 qisa_causal_seed2; do
  grep -q "^$cell,.*,$steps," "$WORK/exp/results.csv" || fail "no row for $cell at step $steps in results.csv"
done
grep -q "4 of 4 cells finished" "$WORK/exp/results.md" || fail "results.md does not report 4 of 4 cells"
pass "array job $array ran 4 cells, report job $report wrote results.csv with 4 rows"
