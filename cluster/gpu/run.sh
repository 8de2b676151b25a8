#!/usr/bin/env bash
# The GPU acceptance run, from an extracted bundle (cluster/gpu/make_bundle.sh packs this file
# with bin/ and lib/):   OUT=/some/dir bash run.sh
# Steps, within about 8 minutes (each has its own cap, all share one deadline):
#   1. device query: nvidia-smi (if present) and `qisa info` (devices, driver and runtime)
#   2. the GPU kernel tests (bin/test_gpu_kernels, gtest; names of passed/failed/skipped tests)
#   3. the kernel benchmarks (bin/bench_gpu_kernels, JSON lines)
#   4. compute-sanitizer memcheck, racecheck and synccheck on the kernel tests, where it exists
# and writes ONE report, $OUT/gpu_report.json (logs of every step under $OUT/logs). Exit status:
# 0 when a device was found, every test passed (none skipped), the benchmarks ran and no
# sanitizer reported an error; 2 with one line when there is no device; 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$PWD/gpu_out}
BUDGET_S=${QISA_GPU_BUDGET_S:-450}   # all steps together; the caller's limit is 8 minutes
mkdir -p "$OUT/logs" || { echo "run.sh: cannot create OUT=$OUT" >&2; exit 1; }
logs=$OUT/logs
report=$OUT/gpu_report.json
t0=$(date +%s)

json_str() {  # a JSON string literal of $1
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\t'/\\t}; s=${s//$'\r'/}; s=${s//$'\n'/\\n}
  s=$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')
  printf '"%s"' "$s"
}
json_names() {  # a JSON array of the lines of $1 (empty lines dropped)
  local first=1 n
  printf '['
  while IFS= read -r n; do
    [[ -z $n ]] && continue
    ((first)) || printf ','
    first=0
    json_str "$n"
  done <<<"$1"
  printf ']'
}
elapsed() { echo $(($(date +%s) - t0)); }
cap() {  # seconds a step may take: min(its cap, what is left of the budget), at least 5
  local left=$((BUDGET_S - $(elapsed)))
  ((left < 5)) && left=5
  ((left < $1)) && echo "$left" || echo "$1"
}

# How the binaries start: with the bundled libraries, and, if that fails (a system glibc older
# than the build machine's), through the bundled glibc's loader.
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
launch=()
launch_mode=direct
if ! timeout 60 "$here/bin/test_gpu_kernels" --gtest_list_tests >"$logs/start_check.log" 2>&1; then
  loader=$here/lib/glibc/ld-linux-x86-64.so.2
  if [[ -x $loader ]] && timeout 60 "$loader" --library-path "$here/lib/glibc:$here/lib" "$here/bin/test_gpu_kernels" \
       --gtest_list_tests >"$logs/start_check_glibc.log" 2>&1; then
    launch=("$loader" --library-path "$here/lib/glibc:$here/lib")
    launch_mode=bundled-glibc
  else
    launch_mode="cannot start: $(head -c 400 "$logs/start_check.log")"
  fi
fi
# run_with SECONDS NAME ARGS...: bin/NAME under timeout, started as above
run_with() { timeout "$1" "${launch[@]}" "$here/bin/$2" "${@:3}"; }

# ---- 1. device query
smi=null
if command -v nvidia-smi >/dev/null; then
  nvidia-smi >"$logs/nvidia-smi.txt" 2>&1
  smi=$(json_str "$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
                      --format=csv,noheader 2>&1)")
fi
info=$(run_with 60 qisa info 2>"$logs/qisa_info.err")
info_rc=$?
[[ $info == \{* ]] || info=null
echo "$info" >"$logs/qisa_info.json"
device_found=false
if [[ $info != null && $info != *'"cuda_devices":[]'* && $info == *'"cuda_devices":[{'* ]]; then device_found=true; fi
reason=""
$device_found || reason="no CUDA device: qisa info says $(grep -o '"cuda_status":"[^"]*"' <<<"$info" || echo "nothing (rc $info_rc)")"

write_report() {  # $1: overall status
  {
    printf '{"report":"qisa gpu acceptance","status":%s,"host":%s,"date":%s,"bundle":%s,' \
      "$(json_str "$1")" "$(json_str "$(hostname)")" "$(json_str "$(date -u +%FT%TZ)")" \
      "$(cat "$here/MANIFEST.json" 2>/dev/null || echo null)"
    printf '"launch":%s,"nvidia_smi":%s,"qisa_info":%s,"device_found":%s,"reason":%s,' \
      "$(json_str "$launch_mode")" "$smi" "$info" "$device_found" "$(json_str "$reason")"
    printf '"tests":%s,"benchmarks":%s,"sanitizers":%s,"seconds":{%s,"total":%d}}\n' \
      "${tests_json:-null}" "${bench_json:-null}" "${san_json:-null}" "${secs:-\"query\":0}" "$(elapsed)"
  } >"$report"
}

secs="\"query\":$(elapsed)"
if ! $device_found; then
  write_report "no device"
  echo "run.sh: $reason; nothing run on a GPU (report: $report)" >&2
  exit 2
fi

# ---- 2. the kernel tests
ts=$(date +%s)
run_with "$(cap 120)" test_gpu_kernels --gtest_output=json:"$logs/gtest.json" >"$logs/tests.log" 2>&1
tests_rc=$?
names() { grep -E "^\[ *$1 *\] [^ ]+.* \([0-9]+ ms\)$" "$logs/tests.log" | sed -E 's/^\[[^]]*\] ([^ ,]+).*/\1/'; }
passed=$(names OK) failed=$(names FAILED) skipped=$(names SKIPPED)
count() { [[ -z $1 ]] && echo 0 || wc -l <<<"$1"; }
tests_json=$(printf '{"rc":%d,"passed":%d,"failed":%d,"skipped":%d,"passed_names":%s,"failed_names":%s,"skipped_names":%s,"log_tail":%s}' \
  "$tests_rc" "$(count "$passed")" "$(count "$failed")" "$(count "$skipped")" "$(json_names "$passed")" \
  "$(json_names "$failed")" "$(json_names "$skipped")" "$(json_str "$(tail -n 30 "$logs/tests.log")")")
secs+=",\"tests\":$(($(date +%s) - ts))"

# ---- 3. benchmarks
ts=$(date +%s)
run_with "$(cap 120)" bench_gpu_kernels --reps 20 --warmup 3 >"$logs/bench.jsonl" 2>"$logs/bench.err"
bench_rc=$?
bench_lines=$(grep '^{' "$logs/bench.jsonl" | paste -sd, -)
bench_json=$(printf '{"rc":%d,"results":[%s],"stderr_tail":%s}' "$bench_rc" "$bench_lines" \
  "$(json_str "$(tail -n 10 "$logs/bench.err")")")
secs+=",\"bench\":$(($(date +%s) - ts))"

# ---- 4. compute-sanitizer
san=${COMPUTE_SANITIZER:-}   # a path, or "none" to skip; default: looked up
[[ $san == none ]] || [[ -n $san ]] || for c in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  command -v "$c" >/dev/null 2>&1 && { san=$(command -v "$c"); break; }
done
san_ok=true
if [[ -z $san || $san == none ]]; then
  san_json='{"available":false,"note":"compute-sanitizer not found (PATH, /usr/local/cuda) or COMPUTE_SANITIZER=none: not run"}'
else
  entries=""
  for tool in memcheck racecheck synccheck; do
    ts=$(date +%s)
    lim=$(cap 150)
    extra=()
    [[ $tool == memcheck ]] && extra=(--leak-check full)
    timeout "$lim" "$san" --tool "$tool" "${extra[@]}" --error-exitcode 86 "${launch[@]}" \
      "$here/bin/test_gpu_kernels" >"$logs/sanitizer_$tool.log" 2>&1
    rc=$?
    summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$logs/sanitizer_$tool.log" | tail -n 1)
    if ((rc == 124)); then st=timeout
    elif grep -q "Device not supported" "$logs/sanitizer_$tool.log"; then st=unsupported
    elif ((rc == 86)) || [[ $summary =~ (^|[^0-9])[1-9][0-9]*\ errors? ]]; then st=errors
    elif ((rc == 0)); then st=clean
    else st=failed
    fi
    [[ $st == clean || $st == unsupported ]] || san_ok=false
    entries+="${entries:+,}$(printf '{"tool":"%s","status":"%s","rc":%d,"seconds":%d,"limit_s":%d,"summary":%s,"log_tail":%s}' \
      "$tool" "$st" "$rc" $(($(date +%s) - ts)) "$lim" "$(json_str "$summary")" \
      "$(json_str "$(tail -n 15 "$logs/sanitizer_$tool.log")")")"
  done
  san_json="{\"available\":true,\"path\":$(json_str "$san"),\"runs\":[$entries]}"
fi

status=pass
if ((tests_rc != 0)) || [[ -n $failed || -n $skipped || -z $passed ]]; then status=fail; fi
((bench_rc == 0)) || status=fail
$san_ok || status=fail
write_report "$status"
echo "run.sh: $status: tests $(count "$passed") passed, $(count "$failed") failed, $(count "$skipped") skipped;" \
     "bench rc $bench_rc; sanitizers $($san_ok && echo ok || echo NOT ok); $(elapsed) s (report: $report)"
[[ $status == pass ]]
