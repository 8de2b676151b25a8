#!/usr/bin/env bash
# Builds the GPU acceptance bundle on a machine without a GPU and packs it into one tarball
# (at most 64 MiB, else it fails) for a GPU machine:
#   bash cluster/gpu/make_bundle.sh [BUILD_DIR]      (default build-gpu-bundle; JOBS=2)
#   -> BUILD_DIR/qisa-gpu-bundle.tgz, which holds qisa-gpu-bundle/ with
#      run.sh          the one command to run there: OUT=/dir bash qisa-gpu-bundle/run.sh
#      bin/            test_gpu_kernels, test_gpu_backend (the CUDA backend trains a tiny GPT
#                      against the CPU backend; it makes its own corpus), bench_gpu_kernels, qisa
#                      (`qisa info`, `qisa bench step`, `qisa bench kernels`)
#      configs/        this repository's configs/ (the benchmarks use paper/ and gpt2/)
#      golden/         tests/golden: the SPEC's float64 golden files, for the GPU suites' golden cases
#      data/           corpora made here by the freshly built qisa: tinyshakespeare.h5 (char,
#                      vocab 65, for configs/paper; from QISA_BUNDLE_TEXT, default
#                      <root>/../shared/data/tinyshakespeare.txt, skipped and noted in MANIFEST
#                      when absent) and gpt2_random.h5 (400k + 40k random GPT-2 ids, seed 1337,
#                      imported as raw uint16 files with a synthetic GPT-2-shaped vocabulary:
#                      cluster/gpu/gpt2_random_tokens.py; for the GPT-2 124M configs)
#      torch_bench.py  the PyTorch anchor (run.sh runs it with the GPU machine's python3)
#      lib/            every shared library they load except glibc and the driver: libcudart,
#                      OpenBLAS, libgomp, libstdc++, MPI, HDF5, ... (a GPU machine may lack them),
#                      except cuBLAS(Lt) and NCCL: libcublasLt alone is 540 MB, and the GPU machine
#                      has them (toolkit or PyTorch's NVIDIA wheels); run.sh finds them there
#      lib/glibc/      this machine's glibc and loader, used only if the binaries do not start
#                      on the GPU machine's own glibc
#      MANIFEST.json   commit, architectures, compiler, libraries
# Built for sm_90a only (H100/H200), in its own build directory, for x86-64-v3 instead of
# -march=native (QISA_BUNDLE_CXX_FLAGS): the CPU reference code runs on any AVX2+FMA host, and
# g++ contracts a*b+c into FMAs as in the builds here and as nvcc does on the GPU, which the
# bit-for-bit cases (AdamW, embedding, flat ops) rely on. The GPU tests compare with the CPU
# backend on random inputs, and with the golden files (golden/, through QISA_GOLDEN_DIR).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(realpath -m "${1:-$root/build-gpu-bundle}")
arch=${QISA_BUNDLE_ARCH:-90a}
cxx_flags=${QISA_BUNDLE_CXX_FLAGS:--march=x86-64-v3}
max_bytes=${QISA_BUNDLE_MAX_BYTES:-$((64 * 1024 * 1024))}   # the limit of what a GPU session carries
bins=(tests/test_gpu_kernels tests/test_gpu_backend tests/bench_gpu_kernels qisa)
text=${QISA_BUNDLE_TEXT:-$root/../shared/data/tinyshakespeare.txt}
host_re='^lib(cublas|cublasLt|nccl)\.so'   # found on the GPU machine by run.sh, not packed
host_libs=()
glibc_re='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|ld-linux-x86-64\.so\.2)$'

die() { echo "make_bundle.sh: $*" >&2; exit 1; }

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$arch" \
  -DQISA_NATIVE=OFF "-DCMAKE_CXX_FLAGS=$cxx_flags" >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; die "configure failed"; }
grep -q "qisa: CUDA parts ON" "$build.configure.log" || die "CUDA is off in this build (no nvcc or NCCL): nothing to bundle"
cmake --build "$build" -j"${JOBS:-2}" --target test_gpu_kernels test_gpu_backend bench_gpu_kernels qisa

stage_root=$build/bundle
stage=$stage_root/qisa-gpu-bundle
rm -rf "$stage_root"
mkdir -p "$stage/bin" "$stage/lib/glibc" "$stage/data"
for b in "${bins[@]}"; do cp "$build/$b" "$stage/bin/"; done
cp "$root/cluster/gpu/run.sh" "$stage/run.sh"
cp "$root/cluster/gpu/torch_bench.py" "$stage/torch_bench.py"
cp -r "$root/configs" "$stage/configs"
cp -r "$root/tests/golden" "$stage/golden"   # the golden cases of the GPU suites (QISA_GOLDEN_DIR)

# The corpora, made by the qisa just built (its format is the one the bundle's qisa reads).
data_notes=()
if [[ -f $text ]]; then
  "$build/qisa" prepare --input "$text" --out "$stage/data/tinyshakespeare.h5" >"$build.prepare.log" 2>&1 ||
    { cat "$build.prepare.log"; die "qisa prepare of $text failed"; }
  data_notes+=("\"tinyshakespeare.h5: char corpus of $(basename "$text") (configs/paper)\"")
else
  data_notes+=("\"tinyshakespeare.h5: NOT packed, no $text (the paper steps are skipped)\"")
fi
raw=$build/gpt2_random
rm -rf "$raw"
python3 "$root/cluster/gpu/gpt2_random_tokens.py" "$raw" || die "gpt2_random_tokens.py failed"
"$build/qisa" prepare --import-raw-u16 "$raw/train.bin" "$raw/val.bin" --gpt2-dir "$raw/vocab" \
  --out "$stage/data/gpt2_random.h5" >>"$build.prepare.log" 2>&1 || { cat "$build.prepare.log"; die "qisa prepare --import-raw-u16 failed"; }
data_notes+=("\"gpt2_random.h5: 400000 + 40000 uniform random ids in [0, 50257), seed 1337, synthetic GPT-2-shaped vocabulary (configs/gpt2)\"")

# The libraries the binaries load here, by the name they ask for.
while read -r name path; do
  if [[ $name =~ ^(libcuda\.so|libnvidia) ]]; then
    die "a binary links the driver ($name): cudart must load it at run time (toolchain.md §2)"
  elif [[ $name =~ $host_re ]]; then
    host_libs+=("\"$name\"")
  elif [[ $name =~ $glibc_re ]]; then
    cp -L "$path" "$stage/lib/glibc/$name"
  else
    cp -L "$path" "$stage/lib/$name"
  fi
done < <(for b in "${bins[@]}"; do ldd "$build/$b"; done |
         awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 } $1 ~ /^\/.*ld-linux/ { n = $1; sub(/.*\//, "", n); print n, $1 }' |
         sort -u)
[[ -e $stage/lib/glibc/ld-linux-x86-64.so.2 ]] || die "no ld-linux-x86-64.so.2 found in ldd's output"

# Check: with lib/ on the path, everything but glibc resolves inside the bundle.
for b in "${bins[@]}"; do
  outside=$(LD_LIBRARY_PATH="$stage/lib" ldd "$stage/bin/$(basename "$b")" |
            awk -v lib="$stage/lib/" '$2 == "=>" && index($3, lib) != 1 { print $1 " => " $3 }' |
            grep -Ev "^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libcublas\.so\.[0-9]+|libcublasLt\.so\.[0-9]+|libnccl\.so\.[0-9]+) " || true)
  [[ -z $outside ]] || die "$(basename "$b") loads libraries from outside the bundle: $outside"
done

nvcc_version=$(grep -o 'release [0-9.]*, V[0-9.]*' < <("$(grep -m1 '^CMAKE_CUDA_COMPILER:' "$build/CMakeCache.txt" | cut -d= -f2)" --version) || true)
libs=$(cd "$stage/lib" && find . -type f | sed 's|^\./||' | sort | sed 's/.*/"&"/' | paste -sd, -)
cat >"$stage/MANIFEST.json" <<JSON
{"commit":"$(git -C "$root" rev-parse HEAD)","dirty":$(git -C "$root" diff --quiet HEAD -- . ':!build*' && echo false || echo true),"built":"$(date -u +%FT%TZ)","build_host":"$(hostname)","cuda_architectures":"$arch","cxx_flags":"$cxx_flags","nvcc":"$nvcc_version","cxx":"$(c++ --version | head -n 1)","glibc":"$(ldd --version | head -n 1 | grep -o '[0-9.]*$')","bins":["test_gpu_kernels","test_gpu_backend","bench_gpu_kernels","qisa"],"data":[$(IFS=,; echo "${data_notes[*]}")],"libs":[$libs],"libs_from_gpu_machine":[$(IFS=,; echo "${host_libs[*]}")]}
JSON

tarball=$build/qisa-gpu-bundle.tgz
tar -C "$stage_root" -cf - qisa-gpu-bundle | gzip -9 >"$tarball"
size=$(stat -c %s "$tarball")
if ((size > max_bytes)); then
  rm -f "$tarball"
  die "the bundle is $size bytes, over the limit of $max_bytes bytes"
fi
echo "make_bundle.sh: $tarball: $size bytes ($(du -sh "$stage" | cut -f1) unpacked), sm_$arch"
