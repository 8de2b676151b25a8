// Which OpenBLAS kernel family runs our GEMMs, and choosing it before the library does.
//
// OpenBLAS (DYNAMIC_ARCH) picks its kernels once, in a constructor when the library loads, from
// the CPU model it knows. Debian's 0.3.21 does not know newer CPUs and falls back to older
// kernels: on an AVX-512 machine it may run its AVX2 (Haswell) or even SSE3 (Prescott) kernels
// at a fraction of the speed (docs/perf.md). OPENBLAS_CORETYPE overrides the choice, but only
// when it is set before the library loads, so qisa sets it and re-executes itself, first thing
// in main() (before MPI or any thread starts). A user's own OPENBLAS_CORETYPE is always kept:
// some machines set it because a kernel computes wrong results or crashes on their processor.
#pragma once
#include <string>

namespace qisa::cpu {

struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_bf16 = false;
  bool avx512() const { return avx512f && avx512bw && avx512dq && avx512vl; }  // what SkylakeX kernels use
};
CpuFeatures detect_cpu_features();  // cpuid and the OS's saved-state bits (XGETBV)

// The kernel family to load and why. A pure function of its inputs (tested on every case).
//   user_coretype: OPENBLAS_CORETYPE as the user set it ("" when unset) - always kept;
//   loaded: the family OpenBLAS chose for itself (openblas_get_corename(), e.g. "Haswell").
struct BlasKernelChoice {
  std::string family;  // what should run, e.g. "SkylakeX"
  std::string why;     // one line for `qisa info` / `qisa bench`
  bool override_needed = false;  // family != loaded: set OPENBLAS_CORETYPE and re-execute
};
BlasKernelChoice choose_blas_kernel(const CpuFeatures& cpu, const std::string& user_coretype,
                                    const std::string& loaded);

// The family OpenBLAS runs in this process.
std::string blas_kernel_loaded();

// First thing in main(): when choose_blas_kernel() wants another family than the loaded one,
// set OPENBLAS_CORETYPE and execv("/proc/self/exe", argv) (QISA_BLAS_REEXEC marks the second
// start, so it happens at most once). Returns only when no re-execution is needed or it failed
// (then one warning line on stderr, and the run goes on with the loaded kernels).
void select_blas_kernel(char** argv);
// Its second half: with c.override_needed, set OPENBLAS_CORETYPE = c.family and the mark (the
// family `loaded`), then execv(exe, argv); returns only if that failed (warning on stderr, the
// environment as it was).
void restart_with_blas_kernel(const BlasKernelChoice& c, const std::string& loaded, const char* exe, char** argv);

// What runs and why, e.g. "OpenBLAS 0.3.21 SkylakeX (set by qisa: AVX-512 CPU; OpenBLAS chose
// Haswell)". The same on every start of the process.
std::string blas_kernel_description();

}  // namespace qisa::cpu
