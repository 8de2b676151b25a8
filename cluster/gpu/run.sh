#!/usr/bin/env bash
# The GPU acceptance run, from an extracted bundle (cluster/gpu/make_bundle.sh packs this file
# with bin/, lib/, configs/, data/ and torch_bench.py):   OUT=/some/dir bash run.sh
# Steps, within BUDGET_S = 450 s (each has its own cap, all share one deadline; the steps before
# the sanitizers leave SAN_RESERVE_S = 120 s to them, and the sanitizers share what is left):
#   1. device query: nvidia-smi (if present) and `qisa info` (devices, driver and runtime)
#   2. the GPU kernel tests (bin/test_gpu_kernels) and the backend tests (bin/test_gpu_backend:
#      the CUDA backend trains a tiny GPT against the CPU backend); gtest, names of
#      passed/failed/skipped tests ("tests", "backend_tests")
#   3. the kernel benchmarks (bin/bench_gpu_kernels, JSON lines; "benchmarks")
#   4. training steps, `qisa bench step` ("steps"): the paper's csa and qisa configs on the char
#      corpus (cuda; csa also through NCCL on one rank, dist.comm: nccl), GPT-2 124M csa and qisa in bf16 (batch 16, micro-batch 8) on random GPT-2
#      token ids, and the paper's csa config on the CPU backend (the baseline of the 20x target)
#   5. the kernel lab, `qisa bench kernels` on GPT-2 124M csa bf16 ("kernel_lab")
#   6. the PyTorch anchor, torch_bench.py ("torch"): GPT-2 124M bf16 eager (step, attention) and
#      torch.compile (step), the paper's GPT-1 fp32 eager and compile; a torch failure or a
#      missing PyTorch is recorded, and does not fail the run (it is the anchor, not our code)
#   7. "targets" from 4 and 6: MFU of csa and qisa at 124M (>= 0.40), qisa/csa MFU (>= 0.9),
#      csa tokens/s over torch.compile's (>= 1.1), GPT-1 steps/s cuda over cpu (>= 20); each with
#      "met" true/false/null (null: a number is missing); they do not change the exit status
#   8. compute-sanitizer memcheck, racecheck and synccheck on the kernel tests, where it exists
# and writes ONE report, $OUT/gpu_report.json (logs of every step under $OUT/logs). Exit status:
# 0 when a device was found, every test passed (none skipped), the benchmarks and every bench
# step / kernel-lab line ran and no sanitizer reported an error; 2 with one line when there is no
# device; 1 otherwise. Overrides for tests: QISA_GPU_BUDGET_S, COMPUTE_SANITIZER (a path or
# "none"), QISA_TORCH_PYTHON (the python that runs torch_bench.py; default python3).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$PWD/gpu_out}
BUDGET_S=${QISA_GPU_BUDGET_S:-450}   # all steps together; the caller's limit is 8 minutes
SAN_RESERVE_S=${QISA_GPU_SAN_RESERVE_S:-120}   # what the steps before the sanitizers leave to them
mkdir -p "$OUT/logs" || { echo "run.sh: cannot create OUT=$OUT" >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
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
cap() {  # cap SECONDS [RESERVE]: min(SECONDS, what is left of the budget less RESERVE), at least 5
  local left=$((BUDGET_S - $(elapsed) - ${2:-0}))
  ((left < 5)) && left=5
  ((left < $1)) && echo "$left" || echo "$1"
}
pre() { cap "$1" "$SAN_RESERVE_S"; }   # the cap of a step before the sanitizers

# How the binaries start: with the bundled libraries, and, if that fails (a system glibc older
# than the build machine's), through the bundled glibc's loader.
# Python (PyTorch, the targets) runs with the caller's library path, not the bundle's.
orig_ldp_set=${LD_LIBRARY_PATH+set} orig_ldp=${LD_LIBRARY_PATH:-}
sys_env() { if [[ -n $orig_ldp_set ]]; then env LD_LIBRARY_PATH="$orig_ldp" "$@"; else env -u LD_LIBRARY_PATH "$@"; fi; }
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[[ -d $here/golden ]] && export QISA_GOLDEN_DIR=$here/golden   # the GPU suites' golden cases

# cuBLASLt (540 MB) is not in the bundle: the GPU machine has it, in the CUDA toolkit or in
# PyTorch's NVIDIA wheels (site-packages/nvidia/.../lib). QISA_CUDA_LIB_DIR names it by hand.
find_cublaslt() {
  local d py
  for d in ${QISA_CUDA_LIB_DIR:-} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [[ -n $d && -e $d/libcublasLt.so.13 ]] && { echo "$d"; return; }
  done
  for py in python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    d=$(sys_env "$py" -c 'import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
hits = [p for r in roots for p in glob.glob(os.path.join(r, "nvidia", "**", "libcublasLt.so.13"), recursive=True)]
print(os.path.dirname(hits[0]) if hits else "")' 2>/dev/null)
    [[ -n $d ]] && { echo "$d"; return; }
  done
}
cublaslt_dir=$(find_cublaslt)
[[ -n $cublaslt_dir ]] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$cublaslt_dir"
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
    printf '"launch":%s,"cublaslt_dir":%s,"nvidia_smi":%s,"qisa_info":%s,"device_found":%s,"reason":%s,' \
      "$(json_str "$launch_mode")" "$(json_str "${cublaslt_dir:-not found (set QISA_CUDA_LIB_DIR)}")" "$smi" "$info" \
      "$device_found" "$(json_str "$reason")"
    printf '"tests":%s,"backend_tests":%s,"benchmarks":%s,"steps":%s,"kernel_lab":%s,"torch":%s,"targets":%s,' \
      "${tests_json:-null}" "${btests_json:-null}" "${bench_json:-null}" "${steps_json:-null}" \
      "${lab_json:-null}" "${torch_json:-null}" "${targets_json:-null}"
    printf '"sanitizers":%s,"seconds":{%s,"total":%d}}\n' "${san_json:-null}" "${secs:-\"query\":0}" "$(elapsed)"
  } >"$report"
}

secs="\"query\":$(elapsed)"
if ! $device_found; then
  write_report "no device"
  echo "run.sh: $reason; nothing run on a GPU (report: $report)" >&2
  exit 2
fi

# ---- 2. the kernel tests and the backend tests
names() { grep -E "^\[ *$2 *\] [^ ]+.* \([0-9]+ ms\)$" "$1" | sed -E 's/^\[[^]]*\] ([^ ,]+).*/\1/'; }
count() { [[ -z $1 ]] && echo 0 || wc -l <<<"$1"; }
gtest_ok=true
gtest_json() {  # gtest_json NAME LIMIT: runs bin/NAME (gtest) in $OUT/work; its section's JSON in $gj
  local log=$logs/$1.log rc p f k
  mkdir -p "$OUT/work"
  (cd "$OUT/work" && run_with "$2" "$1" --gtest_output=json:"$logs/$1.json") >"$log" 2>&1
  rc=$?
  p=$(names "$log" OK) f=$(names "$log" FAILED) k=$(names "$log" SKIPPED)
  if ((rc != 0)) || [[ -n $f || -n $k || -z $p ]]; then gtest_ok=false; fi
  gj=$(printf '{"rc":%d,"limit_s":%d,"passed":%d,"failed":%d,"skipped":%d,"passed_names":%s,"failed_names":%s,"skipped_names":%s,"log_tail":%s}' \
    "$rc" "$2" "$(count "$p")" "$(count "$f")" "$(count "$k")" "$(json_names "$p")" \
    "$(json_names "$f")" "$(json_names "$k")" "$(json_str "$(tail -n 30 "$log")")")
}
ts=$(date +%s)
gtest_json test_gpu_kernels "$(pre 90)"
tests_json=$gj
secs+=",\"tests\":$(($(date +%s) - ts))"
ts=$(date +%s)
if [[ -x $here/bin/test_gpu_backend ]]; then
  gtest_json test_gpu_backend "$(pre 90)"
  btests_json=$gj
else
  btests_json='{"rc":127,"passed":0,"failed":0,"skipped":0,"passed_names":[],"failed_names":[],"skipped_names":[],"log_tail":"bin/test_gpu_backend is not in the bundle"}'
  gtest_ok=false
fi
secs+=",\"backend_tests\":$(($(date +%s) - ts))"
tests_sum=$(grep -o '"passed":[0-9]*,"failed":[0-9]*,"skipped":[0-9]*' <<<"$tests_json$btests_json" | tr -d '"' | paste -sd ';' -)

# ---- 3. benchmarks
ts=$(date +%s)
run_with "$(pre 60)" bench_gpu_kernels --reps 20 --warmup 3 >"$logs/bench.jsonl" 2>"$logs/bench.err"
bench_rc=$?
bench_lines=$(grep '^{' "$logs/bench.jsonl" | paste -sd, -)
bench_json=$(printf '{"rc":%d,"results":[%s],"stderr_tail":%s}' "$bench_rc" "$bench_lines" \
  "$(json_str "$(tail -n 10 "$logs/bench.err")")")
secs+=",\"bench\":$(($(date +%s) - ts))"

# ---- 4.-6. qisa bench step, qisa bench kernels, torch_bench.py
# collect LABEL LIMIT CMD...: CMD's last JSON line, with "label" first, goes into $results; if CMD
# fails or prints none, an entry with its exit status and stderr tail goes into $errors (return 1).
results="" errors=""
collect() {
  local label=$1 lim=$2 ts rc line
  shift 2
  ts=$(date +%s)
  timeout "$lim" "$@" >"$logs/$label.jsonl" 2>"$logs/$label.err"
  rc=$?
  line=$(grep '^{"' "$logs/$label.jsonl" | tail -n 1)
  if ((rc == 0)) && [[ -n $line ]]; then
    results+="${results:+,}{\"label\":$(json_str "$label"),${line#\{}"
    return 0
  fi
  errors+="${errors:+,}$(printf '{"label":%s,"rc":%d,"seconds":%d,"limit_s":%d,"stderr_tail":%s,"stdout_tail":%s}' \
    "$(json_str "$label")" "$rc" $(($(date +%s) - ts)) "$lim" "$(json_str "$(tail -n 12 "$logs/$label.err")")" \
    "$(json_str "$(tail -n 5 "$logs/$label.jsonl")")")"
  return 1
}
qisa=("${launch[@]}" "$here/bin/qisa")
char_corpus=$here/data/tinyshakespeare.h5
gpt2_corpus=$here/data/gpt2_random.h5
gpt2_ov=(train.precision=bf16 train.batch_size=16 train.micro_batch_size=8)   # 16 x 1024 tokens a step
skipped=""
skip() { skipped+="${skipped:+,}{\"label\":$(json_str "$1"),\"reason\":$(json_str "$2")}"; }

ts=$(date +%s)
steps_ok=true
results="" errors=""
step() {  # step LABEL LIMIT CONFIG CORPUS OVERRIDES...
  local label=$1 lim=$2 config=$here/configs/$3 corpus=$4
  shift 4
  if [[ ! -f $corpus ]]; then skip "$label" "no corpus ${corpus#"$here/"} in the bundle"; return; fi
  collect "$label" "$(pre "$lim")" "${qisa[@]}" bench step "$config" "data.corpus=$corpus" "$@" --steps 10 --warmup 3 ||
    steps_ok=false
}
step paper_csa_cuda 40 paper/csa_causal.yaml "$char_corpus" train.device=cuda
# the same through NCCL on one rank: the communicator's init, polling and shutdown via the CLI
step paper_csa_cuda_nccl 40 paper/csa_causal.yaml "$char_corpus" train.device=cuda dist.comm=nccl
step paper_qisa_cuda 40 paper/qisa_causal.yaml "$char_corpus" train.device=cuda
step gpt2_124m_csa_bf16 90 gpt2/gpt2_124m_csa.yaml "$gpt2_corpus" train.device=cuda "${gpt2_ov[@]}"
step gpt2_124m_qisa_bf16 90 gpt2/gpt2_124m_qisa.yaml "$gpt2_corpus" train.device=cuda "${gpt2_ov[@]}"
step paper_csa_cpu 40 paper/csa_causal.yaml "$char_corpus" train.device=cpu
steps_json="{\"results\":[$results],\"errors\":[$errors],\"skipped\":[$skipped]}"
echo "$steps_json" >"$logs/steps.json"
secs+=",\"steps\":$(($(date +%s) - ts))"

ts=$(date +%s)
lab_ok=true
results="" errors="" skipped=""
if [[ -f $gpt2_corpus ]]; then
  collect gpt2_124m_csa_bf16_kernels "$(pre 60)" "${qisa[@]}" bench kernels "$here/configs/gpt2/gpt2_124m_csa.yaml" \
    "data.corpus=$gpt2_corpus" train.device=cuda "${gpt2_ov[@]}" || lab_ok=false
else
  skip gpt2_124m_csa_bf16_kernels "no corpus data/gpt2_random.h5 in the bundle"
fi
lab_json="{\"results\":[$results],\"errors\":[$errors],\"skipped\":[$skipped]}"
secs+=",\"kernel_lab\":$(($(date +%s) - ts))"

ts=$(date +%s)
torch_py=${QISA_TORCH_PYTHON:-python3}
results="" errors="" skipped=""
if ! command -v "$torch_py" >/dev/null 2>&1; then
  torch_json="{\"available\":false,\"note\":$(json_str "$torch_py not found: no PyTorch anchor")}"
elif ! sys_env timeout 60 "$torch_py" -c 'import torch' >"$logs/torch_import.log" 2>&1; then
  torch_json="{\"available\":false,\"note\":$(json_str "$torch_py cannot import torch: $(tail -n 3 "$logs/torch_import.log")")}"
elif [[ ! -f $here/torch_bench.py ]]; then
  torch_json='{"available":false,"note":"torch_bench.py is not in the bundle"}'
else
  # torch_run LABEL LIMIT ARGS...: every JSON line of the run, labelled (a killed run keeps its lines)
  torch_run() {
    local label=$1 lim=$2 rc line n=0
    shift 2
    sys_env timeout "$lim" "$torch_py" "$here/torch_bench.py" "$@" >"$logs/$label.jsonl" 2>"$logs/$label.err"
    rc=$?
    while IFS= read -r line; do
      results+="${results:+,}{\"label\":$(json_str "$label"),${line#\{}"
      n=$((n + 1))
    done < <(grep '^{"' "$logs/$label.jsonl")
    if ((rc != 0 || n == 0)); then
      errors+="${errors:+,}$(printf '{"label":%s,"rc":%d,"limit_s":%d,"stderr_tail":%s}' "$(json_str "$label")" \
        "$rc" "$lim" "$(json_str "$(tail -n 12 "$logs/$label.err")")")"
    fi
  }
  torch_run torch_gpt2_124m_bf16_eager "$(pre 60)" --preset gpt2-124m --dtype bf16 --steps 10 --warmup 3 \
    --modes eager --what step,attention
  torch_run torch_gpt2_124m_bf16_compile "$(pre 120)" --preset gpt2-124m --dtype bf16 --steps 10 --warmup 3 \
    --modes compile --what step
  torch_run torch_gpt1_fp32 "$(pre 60)" --preset gpt1 --dtype fp32 --steps 10 --warmup 3 --what step \
    --modes eager,compile
  torch_json="{\"available\":true,\"python\":$(json_str "$torch_py"),\"results\":[$results],\"errors\":[$errors]}"
fi
echo "$torch_json" >"$logs/torch.json"
secs+=",\"torch\":$(($(date +%s) - ts))"

# ---- 7. targets (python3; without it the report says so)
targets_json=$(sys_env timeout 30 python3 - "$logs/steps.json" "$logs/torch.json" 2>"$logs/targets.err" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))
torch = json.load(open(sys.argv[2]))
step = {r.get("label"): r for r in steps.get("results", [])}
def get(label, key):
    v = step.get(label, {}).get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None
compile_tps = None
for r in torch.get("results", []) or []:
    if r.get("bench") == "torch_step" and r.get("mode") == "compile" and r.get("preset") == "gpt2-124m" \
            and "error" not in r and isinstance(r.get("tokens_per_s"), (int, float)):
        compile_tps = r["tokens_per_s"]
sps = lambda label: ratio(1000.0, get(label, "ms_per_step"))
rows = [
    ("mfu_csa_124m", get("gpt2_124m_csa_bf16", "mfu"), 0.40, "steps gpt2_124m_csa_bf16: mfu"),
    ("mfu_qisa_124m", get("gpt2_124m_qisa_bf16", "mfu"), 0.40, "steps gpt2_124m_qisa_bf16: mfu"),
    ("qisa_over_csa_mfu_124m", ratio(get("gpt2_124m_qisa_bf16", "mfu"), get("gpt2_124m_csa_bf16", "mfu")), 0.9,
     "mfu of gpt2_124m_qisa_bf16 / gpt2_124m_csa_bf16"),
    ("csa_over_torch_compile_tokens_per_s_124m", ratio(get("gpt2_124m_csa_bf16", "tokens_per_s"), compile_tps), 1.1,
     "tokens_per_s of steps gpt2_124m_csa_bf16 / torch gpt2-124m bf16 compile"),
    ("gpt1_cuda_over_cpu_steps_per_s", ratio(sps("paper_csa_cuda"), sps("paper_csa_cpu")), 20.0,
     "1000/ms_per_step of steps paper_csa_cuda / paper_csa_cpu"),
]
out = {name: {"value": None if v is None else round(v, 4), "target": t, "met": None if v is None else v >= t, "from": f}
       for name, v, t, f in rows}
print(json.dumps(out))
PY
) && [[ $targets_json == \{* ]] ||
  targets_json="{\"error\":$(json_str "not computed (python3): $(tail -n 3 "$logs/targets.err")")}"

# ---- 8. compute-sanitizer
san=${COMPUTE_SANITIZER:-}   # a path, or "none" to skip; default: looked up
[[ $san == none ]] || [[ -n $san ]] || for c in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  command -v "$c" >/dev/null 2>&1 && { san=$(command -v "$c"); break; }
done
san_ok=true
if [[ -z $san || $san == none ]]; then
  san_json='{"available":false,"note":"compute-sanitizer not found (PATH, /usr/local/cuda) or COMPUTE_SANITIZER=none: not run"}'
else
  entries=""
  tools_left=3
  for tool in memcheck racecheck synccheck; do
    ts=$(date +%s)
    lim=$(cap 150)
    left=$((BUDGET_S - $(elapsed)))
    ((left / tools_left < lim)) && lim=$((left / tools_left))
    ((lim < 5)) && lim=5
    tools_left=$((tools_left - 1))
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
$gtest_ok || status=fail
((bench_rc == 0)) || status=fail
$steps_ok || status=fail
$lab_ok || status=fail
$san_ok || status=fail
write_report "$status"
echo "run.sh: $status: tests (kernels; backend) $tests_sum;" \
     "bench rc $bench_rc; steps $($steps_ok && echo ok || echo NOT ok); kernel lab $($lab_ok && echo ok || echo NOT ok);" \
     "sanitizers $($san_ok && echo ok || echo NOT ok); $(elapsed) s (report: $report)"
[[ $status == pass ]]
