#!/usr/bin/env bash
# ladder_probe.sh [OUT] [WINDOWS]
#
# How uniform is the trained ladder's attention? Runs `qisa probe-attention` on every cell of
# the ladder (default OUT: docs/results/ladder) that still has its model (final.h5), on WINDOWS
# (default 64) validation windows of the cell's own corpus, and writes
#   OUT/attention.csv  cell,group,seed,layer,mean_entropy,min_entropy,max_ratio (one row per block)
#   OUT/attention.md   per combination and block: mean row entropy relative to uniform (1 =
#                      uniform), mean ± std over the seeds probed, and the largest max/min ratio
# atomically. Cells without a model are left out (their rows from an earlier probe are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
QISA=${QISA:-build/qisa}
out=${1:-docs/results/ladder}
windows=${2:-64}
die() { echo "ladder_probe.sh: error: $*" >&2; exit 1; }
[[ -x "$QISA" ]] || die "$QISA not found; build first (bash cluster/setup.sh) or set QISA="
[[ -d "$out" ]] || die "$out is not a folder: run the ladder first (qisa experiment configs/ladder/ladder.yaml)"
command -v python3 >/dev/null || die "python3 is needed for the table"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ladder_probe.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
for dir in "$out"/*/; do
  cell=$(basename "$dir")
  [[ -f "$dir/final.h5" && -f "$dir/config.yaml" ]] || continue
  corpus=$(awk '/^data:/ {d=1} d && /corpus:/ {gsub(/"/, "", $2); print $2; exit}' "$dir/config.yaml")
  [[ -f "$corpus" ]] || die "$cell: its corpus '$corpus' (data.corpus of $dir/config.yaml) is not there; bash cluster/ladder_data.sh"
  "$QISA" probe-attention "$dir/final.h5" --data "$corpus" --windows "$windows" --threads 1 > "$tmp/$cell.json" \
    || die "qisa probe-attention failed on $dir/final.h5"
  echo "ladder_probe.sh: $cell"
done
python3 - "$out" "$tmp" "$windows" <<'PY'
import csv, glob, json, math, os, sys
out, tmp, windows = sys.argv[1], sys.argv[2], sys.argv[3]
rows = {}
path = os.path.join(out, "attention.csv")
if os.path.exists(path):                       # keep earlier rows of cells whose model is gone
    for r in csv.DictReader(open(path)):
        rows[(r["cell"], int(r["layer"]))] = r
for f in sorted(glob.glob(os.path.join(tmp, "*.json"))):
    cell = os.path.basename(f)[:-5]
    group, seed = cell.rsplit("_seed", 1)
    for k in [k for k in rows if k[0] == cell]:
        del rows[k]
    for i, l in enumerate(json.load(open(f))["layers"]):
        rows[(cell, i)] = {"cell": cell, "group": group, "seed": seed, "layer": i, "mean_entropy": repr(l["mean_entropy"]),
                           "min_entropy": repr(l["min_entropy"]), "max_ratio": repr(l["max_ratio"])}
cols = ["cell", "group", "seed", "layer", "mean_entropy", "min_entropy", "max_ratio"]
with open(path + ".tmp", "w", newline="") as fh:
    w = csv.DictWriter(fh, cols)
    w.writeheader()
    for k in sorted(rows):
        w.writerow(rows[k])
os.replace(path + ".tmp", path)
by = {}
for r in rows.values():
    by.setdefault(r["group"], {}).setdefault(int(r["layer"]), []).append(r)
def ms(v):
    m = sum(v) / len(v)
    return f"{m:.3f} ± {math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)):.3f}" if len(v) > 1 else f"{m:.3f}"
layers = max((max(d) for d in by.values()), default=-1) + 1
md = ["# Attention of the trained ladder: how close to uniform", "",
      f"`bash cluster/ladder_probe.sh` (`qisa probe-attention` on {windows} validation windows of each cell's corpus). "
      "Per block: the mean over rows of the row's entropy relative to a uniform row over the same keys (1 = uniform, "
      "0 = all weight on one token), mean ± std over the seeds probed (n); then the largest max/min weight ratio of any "
      "row in any block (the paper's score keeps it <= e = 2.718).", "",
      "| combination | n | " + " | ".join(f"block {i}" for i in range(layers)) + " | max ratio |",
      "|---|---|" + "---|" * layers + "---|"]
for g in sorted(by):
    d = by[g]
    n = len(d[0])
    ratio = max(float(r["max_ratio"]) for v in d.values() for r in v)
    md.append(f"| {g} | {n} | " + " | ".join(ms([float(r["mean_entropy"]) for r in d.get(i, [])]) if i in d else ""
                                             for i in range(layers)) + f" | {ratio:.3g} |")
open(os.path.join(out, "attention.md.tmp"), "w").write("\n".join(md) + "\n")
os.replace(os.path.join(out, "attention.md.tmp"), os.path.join(out, "attention.md"))
print(f"ladder_probe.sh: wrote {path} ({len(rows)} rows) and {os.path.join(out, 'attention.md')}")
PY
