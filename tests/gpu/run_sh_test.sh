#!/usr/bin/env bash
# Checks cluster/gpu/run.sh's report without a GPU: run.sh runs from a scratch bundle whose bin/
# holds stand-ins (shell scripts) for qisa, test_gpu_kernels and bench_gpu_kernels, and a stand-in
# compute-sanitizer on PATH; each scenario checks the exit status and gpu_report.json's fields.
#   run_sh_test.sh SOURCE_DIR
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
b=$tmp/bundle
mkdir -p "$b/bin" "$b/lib" "$tmp/path"
cp "$src/cluster/gpu/run.sh" "$b/run.sh"
echo '{"commit":"test"}' >"$b/MANIFEST.json"

cat >"$b/bin/qisa" <<'SH'
#!/usr/bin/env bash
if [[ ${FAKE_DEVICE:-0} == 1 ]]; then
  echo '{"cuda_built":true,"cuda_devices":[{"index":0,"name":"Fake H100","sm":"9.0"}],"cuda_driver":13000,"cuda_runtime":13000,"cuda_status":"ok"}'
else
  echo '{"cuda_built":true,"cuda_devices":[],"cuda_driver":0,"cuda_runtime":13000,"cuda_status":"cudaErrorInsufficientDriver"}'
fi
SH
cat >"$b/bin/test_gpu_kernels" <<'SH'
#!/usr/bin/env bash
[[ ${1:-} == --gtest_list_tests ]] && { echo "GpuFlat."; echo "  A"; exit 0; }
echo "[       OK ] GpuFlat.A (3 ms)"
echo "[       OK ] GpuKernels/0.B, where TypeParam = float (1 ms)"
if [[ ${FAKE_FAIL:-0} == 1 ]]; then
  echo "[  FAILED  ] GpuKernels/1.C, where TypeParam = qisa::bf16 (2 ms)"
  echo "[  SKIPPED ] GpuFlat.D (0 ms)"
  echo "[  FAILED  ] GpuKernels/1.C, where TypeParam = qisa::bf16"   # the summary line: not counted twice
  [[ -n ${CS:-} ]] && echo "========= ERROR SUMMARY: 2 errors"
  exit 1
fi
[[ -n ${CS:-} ]] && echo "========= ERROR SUMMARY: 0 errors"
exit 0
SH
cat >"$b/bin/bench_gpu_kernels" <<'SH'
#!/usr/bin/env bash
echo '{"bench":"gpu_kernel","kernel":"k1","gbps":1.5}'
echo '{"bench":"gpu_kernel","kernel":"k2","gbps":2.5}'
SH
cat >"$tmp/path/compute-sanitizer" <<'SH'
#!/usr/bin/env bash
while [[ $1 == --* ]]; do shift 2; done   # --tool X --leak-check full --error-exitcode 86
CS=1 "$@"
[[ ${FAKE_FAIL:-0} == 1 ]] && exit 86 || exit 0
SH
chmod +x "$b/bin/"* "$tmp/path/compute-sanitizer"

field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'r': r}))" "$@"; }
fail() { echo "run_sh_test: FAIL: $*" >&2; exit 1; }
expect() {  # expect REPORT PYTHON_EXPR WANT
  local got
  got=$(field "$1" "$2") || fail "report $1 is not valid JSON or lacks $2"
  [[ $got == "$3" ]] || fail "$2 = '$got', want '$3'"
}

# 1. no device: exit 2, one line on stderr, the report says so
set +e
OUT=$tmp/o1 COMPUTE_SANITIZER="$tmp/path/compute-sanitizer" bash "$b/run.sh" 2>"$tmp/err1"
rc=$?
set -e
((rc == 2)) || fail "no device: exit $rc, want 2"
[[ $(wc -l <"$tmp/err1") == 1 ]] && grep -q "no CUDA device" "$tmp/err1" || fail "no device: stderr: $(cat "$tmp/err1")"
expect "$tmp/o1/gpu_report.json" "r['status']" "no device"
expect "$tmp/o1/gpu_report.json" "r['device_found']" "False"
expect "$tmp/o1/gpu_report.json" "r['tests']" "None"

# 2. a device, everything passes
OUT=$tmp/o2 FAKE_DEVICE=1 COMPUTE_SANITIZER="$tmp/path/compute-sanitizer" bash "$b/run.sh" >"$tmp/out2" || fail "pass: exit $?: $(cat "$tmp/out2")"
r=$tmp/o2/gpu_report.json
expect "$r" "r['status']" "pass"
expect "$r" "(r['tests']['passed'], r['tests']['failed'], r['tests']['skipped'])" "(2, 0, 0)"
expect "$r" "r['tests']['passed_names']" "['GpuFlat.A', 'GpuKernels/0.B']"
expect "$r" "[x['gbps'] for x in r['benchmarks']['results']]" "[1.5, 2.5]"
expect "$r" "[(x['tool'], x['status']) for x in r['sanitizers']['runs']]" \
  "[('memcheck', 'clean'), ('racecheck', 'clean'), ('synccheck', 'clean')]"
expect "$r" "r['qisa_info']['cuda_devices'][0]['name']" "Fake H100"

# 3. a failing test and sanitizer errors: exit 1, named
set +e
OUT=$tmp/o3 FAKE_DEVICE=1 FAKE_FAIL=1 COMPUTE_SANITIZER="$tmp/path/compute-sanitizer" bash "$b/run.sh" >"$tmp/out3"
rc=$?
set -e
((rc == 1)) || fail "failures: exit $rc, want 1"
r=$tmp/o3/gpu_report.json
expect "$r" "r['status']" "fail"
expect "$r" "(r['tests']['passed'], r['tests']['failed'], r['tests']['skipped'])" "(2, 1, 1)"
expect "$r" "r['tests']['failed_names']" "['GpuKernels/1.C']"
expect "$r" "r['tests']['skipped_names']" "['GpuFlat.D']"
expect "$r" "[x['status'] for x in r['sanitizers']['runs']]" "['errors', 'errors', 'errors']"

# 4. no compute-sanitizer: noted, not a failure
OUT=$tmp/o4 FAKE_DEVICE=1 COMPUTE_SANITIZER=none bash "$b/run.sh" >"$tmp/out4" || fail "no sanitizer: exit $?"
expect "$tmp/o4/gpu_report.json" "r['sanitizers']['available']" "False"

# 5. a failing test alone (no sanitizer) fails the run
set +e
OUT=$tmp/o5 FAKE_DEVICE=1 FAKE_FAIL=1 COMPUTE_SANITIZER=none bash "$b/run.sh" >"$tmp/out5"
rc=$?
set -e
((rc == 1)) || fail "a failing test: exit $rc, want 1"
expect "$tmp/o5/gpu_report.json" "r['status']" "fail"
echo "run_sh_test: 5 scenarios ok"
