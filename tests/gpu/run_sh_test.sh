#!/usr/bin/env bash
# Checks cluster/gpu/run.sh's report without a GPU: run.sh runs from a scratch bundle whose bin/
# holds stand-ins (shell scripts) for qisa (info, bench step, bench kernels), test_gpu_kernels,
# test_gpu_backend and bench_gpu_kernels, a stand-in torch_bench.py run by a stand-in python
# (QISA_TORCH_PYTHON: answers `-c 'import torch'`, forwards the rest to python3), stand-in corpora,
# and a stand-in compute-sanitizer; each scenario checks the exit status and gpu_report.json's fields.
#   run_sh_test.sh SOURCE_DIR
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
b=$tmp/bundle
mkdir -p "$b/bin" "$b/lib" "$b/data" "$tmp/path"
cp "$src/cluster/gpu/run.sh" "$b/run.sh"
cp -r "$src/configs" "$b/configs"
touch "$b/data/tinyshakespeare.h5" "$b/data/gpt2_random.h5"
echo '{"commit":"test"}' >"$b/MANIFEST.json"

cat >"$b/bin/qisa" <<'SH'
#!/usr/bin/env bash
# bench step|kernels CONFIG OVERRIDES... --steps N --warmup W: one JSON line by the config's name
# and train.device= (ms_per_step: paper cuda 2, paper cpu 100; 124M: mfu csa 0.45, qisa 0.36)
if [[ $1 == bench ]]; then
  what=$2 config=$(basename "$3") device=cpu corpus=""
  for a in "${@:4}"; do
    [[ $a == train.device=* ]] && device=${a#train.device=}
    [[ $a == data.corpus=* ]] && corpus=${a#data.corpus=}
  done
  [[ -f $corpus ]] || { echo "qisa: error: no corpus '$corpus'" >&2; exit 1; }
  if [[ $what == kernels ]]; then
    echo '{"bench":"kernels","backend":"cuda","kernels":[{"kernel":"linear_fwd","ms":0.5}]}'
    exit 0
  fi
  if [[ ${FAKE_STEP_FAIL:-0} == 1 && $config == qisa_causal.yaml ]]; then
    echo "qisa: error: CUDA error: an illegal memory access was encountered" >&2
    exit 1
  fi
  case $config:$device in
    csa_causal.yaml:cuda) echo '{"bench":"step","attention":"csa","backend":"cuda","ms_per_step":2.0,"tokens_per_s":8192000.0}' ;;
    csa_causal.yaml:cpu) echo '{"bench":"step","attention":"csa","backend":"cpu","ms_per_step":100.0,"tokens_per_s":163840.0}' ;;
    qisa_causal.yaml:cuda) echo '{"bench":"step","attention":"qisa","backend":"cuda","ms_per_step":4.0,"tokens_per_s":4096000.0}' ;;
    gpt2_124m_csa.yaml:cuda) echo '{"bench":"step","attention":"csa","backend":"cuda","ms_per_step":45.5,"tokens_per_s":360000.0,"mfu":0.45}' ;;
    gpt2_124m_qisa.yaml:cuda) echo '{"bench":"step","attention":"qisa","backend":"cuda","ms_per_step":80.0,"tokens_per_s":200000.0,"mfu":0.36}' ;;
    *) echo "qisa: error: unexpected $config on $device" >&2; exit 1 ;;
  esac
  exit 0
fi
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
cat >"$b/bin/test_gpu_backend" <<'SH'
#!/usr/bin/env bash
echo "[       OK ] GpuBackend.TrainsLikeCpu (900 ms)"
if [[ ${FAKE_BACKEND_FAIL:-0} == 1 ]]; then
  echo "[  FAILED  ] GpuBackend.Bf16LossClose (20 ms)"
  exit 1
fi
exit 0
SH
cat >"$b/torch_bench.py" <<'PY'
import json, sys
a = sys.argv[1:]
opt = lambda k: a[a.index(k) + 1]
preset, modes, what = opt("--preset"), opt("--modes").split(","), opt("--what").split(",")
for m in modes:
    if "step" in what:
        tps = {"gpt2-124m": 300000.0, "gpt1": 5000000.0}[preset] * (1.0 if m == "compile" else 0.5)
        print(json.dumps({"bench": "torch_step", "mode": m, "preset": preset, "dtype": opt("--dtype"), "tokens_per_s": tps}))
if "attention" in what:
    print(json.dumps({"bench": "torch_attention", "kernel": "sdpa_causal", "preset": preset, "ms": 1.0}))
PY
cat >"$tmp/path/fakepy" <<'SH'
#!/usr/bin/env bash
if [[ ${1:-} == -c && $2 == *"import torch"* ]]; then
  [[ ${FAKE_NO_TORCH:-0} == 1 ]] && { echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1; }
  exit 0
fi
exec python3 "$@"
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
chmod +x "$b/bin/"* "$tmp/path/compute-sanitizer" "$tmp/path/fakepy"
export QISA_TORCH_PYTHON=$tmp/path/fakepy

field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'r': r}))" "$@"; }
fail() { echo "run_sh_test: FAIL: $*" >&2; exit 1; }
expect() {  # expect REPORT PYTHON_EXPR WANT
  local got
  got=$(field "$1" "$2") || fail "report $1 is not valid JSON or lacks $2"
  [[ $got == "$3" ]] || fail "$2 = '$got', want '$3'"
}

# Scenarios 3 to 8 run without the stand-in PyTorch (FAKE_NO_TORCH=1): fewer python starts; 7 checks that.
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

# 2. a device, everything passes (cuBLASLt found where QISA_CUDA_LIB_DIR says)
mkdir -p "$tmp/cudalib" && touch "$tmp/cudalib/libcublasLt.so.13"
OUT=$tmp/o2 FAKE_DEVICE=1 QISA_CUDA_LIB_DIR="$tmp/cudalib" COMPUTE_SANITIZER="$tmp/path/compute-sanitizer" \
  bash "$b/run.sh" >"$tmp/out2" || fail "pass: exit $?: $(cat "$tmp/out2")"
r=$tmp/o2/gpu_report.json
expect "$r" "r['cublaslt_dir']" "$tmp/cudalib"
expect "$r" "r['status']" "pass"
expect "$r" "(r['tests']['passed'], r['tests']['failed'], r['tests']['skipped'])" "(2, 0, 0)"
expect "$r" "r['tests']['passed_names']" "['GpuFlat.A', 'GpuKernels/0.B']"
expect "$r" "[x['gbps'] for x in r['benchmarks']['results']]" "[1.5, 2.5]"
expect "$r" "[(x['tool'], x['status']) for x in r['sanitizers']['runs']]" \
  "[('memcheck', 'clean'), ('racecheck', 'clean'), ('synccheck', 'clean')]"
expect "$r" "r['qisa_info']['cuda_devices'][0]['name']" "Fake H100"
expect "$r" "(r['backend_tests']['passed'], r['backend_tests']['failed'], r['backend_tests']['passed_names'])" \
  "(1, 0, ['GpuBackend.TrainsLikeCpu'])"
expect "$r" "[x['label'] for x in r['steps']['results']]" \
  "['paper_csa_cuda', 'paper_csa_cuda_nccl', 'paper_qisa_cuda', 'gpt2_124m_csa_bf16', 'gpt2_124m_qisa_bf16', 'paper_csa_cpu']"
expect "$r" "(r['steps']['errors'], r['steps']['skipped'])" "([], [])"
expect "$r" "[x['ms_per_step'] for x in r['steps']['results']]" "[2.0, 2.0, 4.0, 45.5, 80.0, 100.0]"
expect "$r" "[(x['label'], x['bench']) for x in r['kernel_lab']['results']]" "[('gpt2_124m_csa_bf16_kernels', 'kernels')]"
expect "$r" "r['torch']['available']" "True"
expect "$r" "[(x['label'], x['bench'], x.get('mode')) for x in r['torch']['results']]" \
  "[('torch_gpt2_124m_bf16_eager', 'torch_step', 'eager'), ('torch_gpt2_124m_bf16_eager', 'torch_attention', None), ('torch_gpt2_124m_bf16_compile', 'torch_step', 'compile'), ('torch_gpt1_fp32', 'torch_step', 'eager'), ('torch_gpt1_fp32', 'torch_step', 'compile')]"
expect "$r" "{k: (v['value'], v['target'], v['met']) for k, v in r['targets'].items()}" \
  "{'mfu_csa_124m': (0.45, 0.4, True), 'mfu_qisa_124m': (0.36, 0.4, False), 'qisa_over_csa_mfu_124m': (0.8, 0.9, False), 'csa_over_torch_compile_tokens_per_s_124m': (1.2, 1.1, True), 'gpt1_cuda_over_cpu_steps_per_s': (50.0, 20.0, True)}"
expect "$r" "sorted(r['seconds'])" \
  "['backend_tests', 'bench', 'kernel_lab', 'query', 'steps', 'tests', 'torch', 'total']"

# 3. a failing test and sanitizer errors: exit 1, named
set +e
OUT=$tmp/o3 FAKE_DEVICE=1 FAKE_NO_TORCH=1 FAKE_FAIL=1 COMPUTE_SANITIZER="$tmp/path/compute-sanitizer" bash "$b/run.sh" >"$tmp/out3"
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
OUT=$tmp/o4 FAKE_DEVICE=1 FAKE_NO_TORCH=1 COMPUTE_SANITIZER=none bash "$b/run.sh" >"$tmp/out4" || fail "no sanitizer: exit $?"
expect "$tmp/o4/gpu_report.json" "r['sanitizers']['available']" "False"

# 5. a failing test alone (no sanitizer) fails the run
set +e
OUT=$tmp/o5 FAKE_DEVICE=1 FAKE_NO_TORCH=1 FAKE_FAIL=1 COMPUTE_SANITIZER=none bash "$b/run.sh" >"$tmp/out5"
rc=$?
set -e
((rc == 1)) || fail "a failing test: exit $rc, want 1"
expect "$tmp/o5/gpu_report.json" "r['status']" "fail"

# 6. a failing bench step (stderr recorded) and a failing backend test fail the run; the other
# steps still run and the targets that do not need the failed line are computed
set +e
OUT=$tmp/o6 FAKE_DEVICE=1 FAKE_NO_TORCH=1 FAKE_STEP_FAIL=1 FAKE_BACKEND_FAIL=1 COMPUTE_SANITIZER=none bash "$b/run.sh" >"$tmp/out6"
rc=$?
set -e
((rc == 1)) || fail "a failing bench step: exit $rc, want 1"
r=$tmp/o6/gpu_report.json
expect "$r" "r['status']" "fail"
expect "$r" "[(x['label'], x['rc']) for x in r['steps']['errors']]" "[('paper_qisa_cuda', 1)]"
expect "$r" "'illegal memory access' in r['steps']['errors'][0]['stderr_tail']" "True"
expect "$r" "len(r['steps']['results'])" "5"
expect "$r" "r['backend_tests']['failed_names']" "['GpuBackend.Bf16LossClose']"
expect "$r" "r['targets']['gpt1_cuda_over_cpu_steps_per_s']['met']" "True"

# 7. no PyTorch: noted, not a failure; the torch target is null
OUT=$tmp/o7 FAKE_DEVICE=1 FAKE_NO_TORCH=1 COMPUTE_SANITIZER=none bash "$b/run.sh" >"$tmp/out7" || fail "no torch: exit $?"
r=$tmp/o7/gpu_report.json
expect "$r" "r['status']" "pass"
expect "$r" "(r['torch']['available'], 'No module named' in r['torch']['note'])" "(False, True)"
expect "$r" "(r['targets']['csa_over_torch_compile_tokens_per_s_124m']['value'], r['targets']['csa_over_torch_compile_tokens_per_s_124m']['met'])" "(None, None)"
expect "$r" "r['targets']['mfu_csa_124m']['met']" "True"

# 8. no char corpus in the bundle: the paper steps are skipped (noted), not failed; the GPT-1
# target is null
mv "$b/data/tinyshakespeare.h5" "$tmp/ts.h5"
OUT=$tmp/o8 FAKE_DEVICE=1 FAKE_NO_TORCH=1 COMPUTE_SANITIZER=none bash "$b/run.sh" >"$tmp/out8" || fail "no char corpus: exit $?"
mv "$tmp/ts.h5" "$b/data/tinyshakespeare.h5"
r=$tmp/o8/gpu_report.json
expect "$r" "[x['label'] for x in r['steps']['skipped']]" "['paper_csa_cuda', 'paper_csa_cuda_nccl', 'paper_qisa_cuda', 'paper_csa_cpu']"
expect "$r" "r['targets']['gpt1_cuda_over_cpu_steps_per_s']['met']" "None"
echo "run_sh_test: 8 scenarios ok"
