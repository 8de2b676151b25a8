#include "kernels/cpu/blas_kernel.h"

#include <cpuid.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

namespace qisa::cpu {

namespace {

constexpr const char* kReexecMark = "QISA_BLAS_REEXEC";  // holds the family OpenBLAS chose itself

// Families whose kernels use AVX-512 (OpenBLAS 0.3.21 names).
bool is_avx512_family(const std::string& f) {
  return f == "SkylakeX" || f == "Cooperlake" || f == "SapphireRapids";
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid_count(1, 0, &a, &b, &c, &d)) return f;
  const bool osxsave = c & bit_OSXSAVE;
  f.fma = c & bit_FMA;
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool ymm_os = (xcr0 & 0x6) == 0x6;     // SSE and AVX state saved by the OS
  const bool zmm_os = (xcr0 & 0xE6) == 0xE6;   // and the AVX-512 opmask / ZMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = ymm_os && (b & bit_AVX2);
  f.avx512f = zmm_os && (b & bit_AVX512F);
  f.avx512dq = zmm_os && (b & bit_AVX512DQ);
  f.avx512bw = zmm_os && (b & bit_AVX512BW);
  f.avx512vl = zmm_os && (b & bit_AVX512VL);
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = zmm_os && (a & (1u << 5));
  return f;
}

BlasKernelChoice choose_blas_kernel(const CpuFeatures& cpu, const std::string& user_coretype,
                                    const std::string& loaded) {
  if (!user_coretype.empty()) {
    std::string why = "OPENBLAS_CORETYPE=" + user_coretype + " set by the user (kept)";
    if (cpu.avx512() && !is_avx512_family(loaded))  // never slower in silence
      why += "; this CPU has AVX-512: unset it to let qisa choose SkylakeX, about 2x faster";
    return {loaded, why, false};
  }
  if (cpu.avx512() && !is_avx512_family(loaded))
    return {"SkylakeX", "set by qisa: AVX-512 CPU; OpenBLAS chose " + loaded, true};
  return {loaded, "OpenBLAS's own choice for this CPU", false};
}

std::string blas_kernel_loaded() {
  const char* n = openblas_get_corename();
  return n ? n : "unknown";
}

void select_blas_kernel(char** argv) {
  if (std::getenv(kReexecMark)) return;  // this is the second start
  const std::string loaded = blas_kernel_loaded();
  const BlasKernelChoice c = choose_blas_kernel(detect_cpu_features(), env("OPENBLAS_CORETYPE"), loaded);
  restart_with_blas_kernel(c, loaded, "/proc/self/exe", argv);
}

void restart_with_blas_kernel(const BlasKernelChoice& c, const std::string& loaded, const char* exe, char** argv) {
  if (!c.override_needed) return;
  setenv("OPENBLAS_CORETYPE", c.family.c_str(), 1);
  setenv(kReexecMark, loaded.c_str(), 1);
  std::fflush(nullptr);
  execv(exe, argv);
  // still here: exec failed; go on with the loaded kernels and say so
  const int err = errno;
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kReexecMark);
  std::fprintf(stderr,
               "qisa: warning: could not restart with OpenBLAS's %s kernels (execv /proc/self/exe: %s); running "
               "on its %s kernels, slower (hint: set OPENBLAS_CORETYPE=%s before starting qisa)\n",
               c.family.c_str(), std::strerror(err), loaded.c_str(), c.family.c_str());
}

std::string blas_kernel_description() {
  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21"
  std::string version = openblas_get_config();
  const size_t second = version.find(' ', version.find(' ') + 1);
  if (second != std::string::npos) version.resize(second);
  const std::string loaded = blas_kernel_loaded();
  const std::string chose_itself = env(kReexecMark);
  std::string why;
  if (!chose_itself.empty() && chose_itself != loaded)
    why = "set by qisa: AVX-512 CPU; OpenBLAS chose " + chose_itself;
  else
    why = choose_blas_kernel(detect_cpu_features(), env("OPENBLAS_CORETYPE"), loaded).why;
  return version + " " + loaded + " (" + why + ")";
}

}  // namespace qisa::cpu
