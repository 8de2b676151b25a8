#!/usr/bin/env bash
# Compiles kernels/cuda/kernels_sm.cu (every kernel template instantiated) with ptxas -v for
# each architecture given, keeps ptxas's report in LOG, and fails if any kernel spills registers
# to local memory or ptxas reports no kernels at all.
#   ptxas_check.sh NVCC SOURCE_DIR LOG ARCH...      (ARCH: 80, 90, 90a, ...)
set -euo pipefail
nvcc=$1 root=$2 log=$3
shift 3
gencode=()
for a in "$@"; do gencode+=("--generate-code=arch=compute_$a,code=sm_$a"); done
"$nvcc" -std=c++20 -O3 -I"$root" "${gencode[@]}" -Xptxas=-v -Werror=all-warnings \
  -c "$root/kernels/cuda/kernels_sm.cu" -o /dev/null >"$log" 2>&1 || { cat "$log"; exit 1; }
# ptxas prints "Compiling entry function 'NAME' for 'sm_XX'", then "N bytes stack frame,
# N bytes spill stores, N bytes spill loads" for it.
awk -v report="$log" '
  /Compiling entry function/ { fn = $0; sub(/.*function .?/, "", fn); sub(/.? for .*/, "", fn);
                               arch = $NF; ++entries }
  /bytes spill stores/ { if ($5 + 0 > 0 || $9 + 0 > 0) { print "spills: " fn " " arch ": " $0; ++bad } }
  END {
    printf "ptxas_check: %d kernel compilations, %d with spills (report: %s)\n", entries, bad, report
    exit (entries == 0 || bad > 0) }' "$log"
