#!/usr/bin/env bash
# The whole default test suite: install what is missing, build, run ctest (slow suites,
# label `slow`, are left out; run them with: ctest --test-dir build -L slow).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
bash cluster/setup.sh
ctest --test-dir "$BUILD_DIR" -LE slow -j "${JOBS:-$(nproc)}" --output-on-failure --no-tests=error
