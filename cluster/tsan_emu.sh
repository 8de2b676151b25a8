#!/usr/bin/env bash
# The CUDA emulator suite (test_cuda_emu, ctest label cuda_emu) under ThreadSanitizer: the
# emulator runs every thread of a block as a real std::thread, so TSan checks that its barriers,
# warp collectives and block hand-over order every access the kernels make to shared memory,
# and that the kernels' own shared-memory traffic is race-free under those barriers.
# A separate build directory; only qisa_kernels and test_cuda_emu are built, without CUDA.
# The tests that skip a kernel's barrier on purpose (*Without*) race by design and are left out,
# and so are the bf16 instances of the typed kernel cases (CudaEmuKernels/1.*): a kernel's bf16
# instance has the float instance's barriers and shared-memory traffic (tiles are staged in fp32),
# and under TSan each case costs minutes.
#   bash cluster/tsan_emu.sh [GTEST_ARGS...]
# Environment: TSAN_BUILD_DIR (default build-tsan), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${TSAN_BUILD_DIR:-build-tsan}
JOBS=${JOBS:-$(nproc)}
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:${TSAN_OPTIONS:-}"
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQISA_SANITIZE=thread \
  -DQISA_ENABLE_CUDA=OFF >/dev/null
cmake --build "$BUILD_DIR" --target test_cuda_emu -j "$JOBS"
built=$(date +%s)
rc=0
# OMP_NUM_THREADS=1: the CPU reference runs on one thread (libgomp is not instrumented).
OMP_NUM_THREADS=1 "$BUILD_DIR/tests/test_cuda_emu" --gtest_filter='-*Without*:CudaEmuKernels/1.*' "$@" || rc=$?
echo "tsan_emu: build $((built - start)) s, tests $(($(date +%s) - built)) s ($BUILD_DIR, -j $JOBS)"
exit $rc
