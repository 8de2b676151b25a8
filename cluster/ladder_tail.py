#!/usr/bin/env python3
# ladder_tail.py [OUT]: how flat the end of each ladder run is. Per combination (mean over the seeds
# whose metrics.jsonl is still there): the training loss over the last 10% of steps and its
# drop from the 10% before. Reads OUT/<cell>/metrics.jsonl of finished cells (default
# OUT: docs/results/ladder); prints a table, writes nothing.
import glob, json, os, statistics, sys
out = sys.argv[1] if len(sys.argv) > 1 else "docs/results/ladder"
by = {}
for d in sorted(glob.glob(out + "/*/")):
    if not os.path.exists(d + "result.json") or not os.path.exists(d + "metrics.jsonl"): continue
    m = [j for j in map(json.loads, open(d + "metrics.jsonl")) if "loss" in j and "step" in j]
    n = max(j["step"] for j in m)
    last = [j["loss"] for j in m if j["step"] > 0.9 * n]
    prev = [j["loss"] for j in m if 0.8 * n < j["step"] <= 0.9 * n]
    g = os.path.basename(d.rstrip("/")).rsplit("_seed", 1)[0]
    by.setdefault(g, []).append((statistics.mean(last), statistics.mean(prev) - statistics.mean(last)))
for g, v in by.items():
    print(f"{g:28s} n={len(v)} last-10% loss {statistics.mean(x for x, _ in v):.4f}  drop from the 10% before {statistics.mean(y for _, y in v):+.4f}")
