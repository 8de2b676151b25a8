#!/usr/bin/env bash
# bf16 against fp32 on the paper configuration (issue 14's acceptance): csa and qisa with the
# causal mask, trained STEPS steps (default 400) in each precision from the same seed, then the
# validation cross-entropy of each, and bf16's relative difference. Prints one table; the runs
# stay under OUT (default runs/bf16_compare).
#   bash cluster/bf16_compare.sh [STEPS] [extra key=value overrides...]
# Needs build/qisa and data/tinyshakespeare.h5 (bash cluster/quickstart.sh prepares it).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-400}
shift || true
OUT=${OUT:-runs/bf16_compare}
QISA=${QISA:-build/qisa}
[[ -x $QISA ]] || { echo "error: $QISA not found (hint: cmake --build build)" >&2; exit 1; }
[[ -f data/tinyshakespeare.h5 ]] || { echo "error: data/tinyshakespeare.h5 not found (hint: bash cluster/quickstart.sh)" >&2; exit 1; }

val_ce() {  # the last evaluation's cross-entropy in a metrics.jsonl
  grep '"eval"' "$1" | tail -1 | sed -E 's/.*"ce":([0-9.eE+-]+).*/\1/'
}

mkdir -p "$OUT"
printf "%-6s %-6s %12s %12s %10s %12s %12s\n" attn steps "fp32 val CE" "bf16 val CE" "bf16 diff" "fp32 s/step" "bf16 s/step"
for attn in csa qisa; do
  declare -A ce ms
  for prec in fp32 bf16; do
    dir=$OUT/${attn}_causal_$prec
    "$QISA" train "configs/paper/${attn}_causal.yaml" "train.steps=$STEPS" "eval.every=$STEPS" "log.every=$STEPS" \
      "checkpoint.every_steps=0" "train.precision=$prec" "train.resume=never" "log.dir=$dir" "$@" --overwrite >"$dir.log" 2>&1 ||
      { echo "error: the $attn $prec run failed; its output is in $dir.log" >&2; exit 1; }
    ce[$prec]=$(val_ce "$dir/metrics.jsonl")
    ms[$prec]=$(grep '"ms"' "$dir/metrics.jsonl" | tail -1 | sed -E 's/.*"ms":([0-9.eE+-]+).*/\1/')
  done
  awk -v a="$attn" -v s="$STEPS" -v f="${ce[fp32]}" -v b="${ce[bf16]}" -v mf="${ms[fp32]}" -v mb="${ms[bf16]}" \
    'BEGIN { printf "%-6s %-6s %12.4f %12.4f %+9.2f%% %12.3f %12.3f\n", a, s, f, b, 100 * (b - f) / f, mf / 1000, mb / 1000 }'
  unset ce ms
done
