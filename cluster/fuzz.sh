#!/usr/bin/env bash
# The libFuzzer targets of tests/fuzz (config, tokenizer, corpus, checkpoint, model_file),
# built with clang, AddressSanitizer and UBSan in build-fuzz, each run for a bounded time.
# Fails on any crash, leak, timeout (one input over 10 s), out-of-memory (2 GiB) or sanitizer
# report, and prints every target's exec count. CI runs it after cluster/sanitize.sh.
#   bash cluster/fuzz.sh [TARGET...]
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_SEED (default 1: the same mutation
# sequence every run, so CI's verdict is reproducible; 0 = a fresh random seed, to explore),
# FUZZ_BUILD_DIR (default build-fuzz),
# JOBS (build jobs), QISA_SKIP_APT=1. A failing input is kept in
# FUZZ_BUILD_DIR/artifacts/TARGET/; replay it with build-fuzz/tests/fuzz/fuzz_TARGET FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
SEED=${FUZZ_SEED:-1}
TARGETS=${*:-config tokenizer corpus checkpoint model_file}

# clang with libFuzzer and the sanitizer runtimes (libclang-rt-dev), its OpenMP (libomp-dev),
# llvm-symbolizer for the stack traces (llvm).
start=$(date +%s)
QISA_EXTRA_PKGS="clang libclang-rt-dev libomp-dev llvm" BUILD_DIR=$BUILD_DIR QISA_BUILD_TARGET=qisa_fuzzers \
  QISA_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
                   -DQISA_FUZZ=ON -DQISA_BUILD_TESTS=OFF -DQISA_ENABLE_CUDA=OFF ${QISA_CMAKE_ARGS:-}" \
  bash cluster/setup.sh
echo "fuzz: build $(($(date +%s) - start)) s"

# quarantine_size_mb=64 (default 256): ASan keeps less freed memory, so a target stays well
# under the 2 GiB RSS limit (measured: 590 MiB peak instead of 1.25 GiB in 60 s of model_file).
# intercept_tls_get_addr=0: see cluster/sanitize.sh (clang 14's runtime has the same bug).
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:check_initialization_order=1:strict_init_order=1:quarantine_size_mb=64:intercept_tls_get_addr=0
export LSAN_OPTIONS=suppressions=$PWD/tests/sanitizers/lsan-fuzz.supp:print_suppressions=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# The targets that read files write each input to a scratch file in TMPDIR: here, emptied
# after every target (a crash or timeout leaves its file behind).
export TMPDIR=$PWD/$BUILD_DIR/fuzz-tmp
ulimit -f $((1 << 20))  # no file over 1 GiB: a runaway write is a failure, not a full disk
failed=""
for t in $TARGETS; do
  rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
  exe=$BUILD_DIR/tests/fuzz/fuzz_$t
  [ -x "$exe" ] || { echo "fuzz: no target '$t' (have: $(ls "$BUILD_DIR/tests/fuzz" | grep -o '^fuzz_[a-z_]*$' | sed 's/fuzz_//' | tr '\n' ' '))" >&2; exit 2; }
  work=$BUILD_DIR/fuzz-work/$t  # what the run adds to the corpus; the seeds stay untouched
  rm -rf "$BUILD_DIR/artifacts/$t"
  mkdir -p "$work" "$BUILD_DIR/artifacts/$t"
  log=$BUILD_DIR/fuzz-$t.log
  rc=0
  "$exe" "$work" "tests/fuzz/$t" -max_total_time="$SECONDS_EACH" -seed="$SEED" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD_DIR/artifacts/$t/" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ "$rc" != 0 ] || grep -qE '^==[0-9]+==ERROR|runtime error:|^SUMMARY: ' "$log"; then
    echo "fuzz: $t FAILED (exit $rc) after ${runs:-?} runs; the report:" >&2
    report=$(sed -n '/==ERROR\|ERROR: libFuzzer\|runtime error:\|fuzz property violated/,/^SUMMARY/p' "$log" | head -80)
    echo "${report:-$(tail -40 "$log")}" >&2
    echo "fuzz: input kept in: $(ls "$BUILD_DIR/artifacts/$t"/* 2>/dev/null | tr '\n' ' ')" >&2
    failed="$failed $t"
  else
    echo "fuzz: $t ok: ${runs:-?} runs in ${SECONDS_EACH} s (seed $SEED, ${rate:-?} exec/s, $cov, log $log)"
  fi
  rm -rf "$TMPDIR"
done
echo "fuzz: total $(($(date +%s) - start)) s"
[ -z "$failed" ] || { echo "fuzz: FAILED:$failed" >&2; exit 1; }
