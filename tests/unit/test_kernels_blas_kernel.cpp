// The OpenBLAS kernel choice (kernels/cpu/blas_kernel.h): the decision table, that this very
// test binary runs on the chosen kernels (its main() chooses like qisa's), and qisa info /
// bench step name the kernels, keep a user's OPENBLAS_CORETYPE, and re-execute at most once.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "kernels/cpu/blas_kernel.h"
#include "test_util.h"

namespace qisa::cpu {
namespace {

CpuFeatures avx512_cpu() {
  CpuFeatures f;
  f.avx2 = f.fma = f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = true;
  return f;
}

TEST(BlasKernel, DecisionTable) {
  CpuFeatures avx2;
  avx2.avx2 = avx2.fma = true;
  CpuFeatures partial = avx512_cpu();
  partial.avx512bw = false;  // Knights Landing-like: no SkylakeX kernels
  struct Row {
    CpuFeatures cpu;
    const char* user;
    const char* loaded;
    const char* family;
    bool override_needed;
  } rows[] = {
      {avx512_cpu(), "", "Haswell", "SkylakeX", true},     // the case on this project's VM
      {avx512_cpu(), "", "Prescott", "SkylakeX", true},    // an unknown model (issue 17)
      {avx512_cpu(), "", "SkylakeX", "SkylakeX", false},   // OpenBLAS knows the CPU
      {avx512_cpu(), "", "Cooperlake", "Cooperlake", false},
      {avx512_cpu(), "Haswell", "Haswell", "Haswell", false},  // the user's choice is kept
      {avx2, "", "Haswell", "Haswell", false},
      {partial, "", "Haswell", "Haswell", false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(std::string(r.user) + "/" + r.loaded);
    const BlasKernelChoice c = choose_blas_kernel(r.cpu, r.user, r.loaded);
    EXPECT_EQ(c.family, r.family);
    EXPECT_EQ(c.override_needed, r.override_needed);
    EXPECT_FALSE(c.why.empty());
    if (*r.user) {
      EXPECT_NE(c.why.find("set by the user"), std::string::npos) << c.why;
    }
  }
}

// This binary's main() chose like qisa's: on an AVX-512 CPU (unless the user set the kernels
// before the tests started) the GEMMs of every test here run on AVX-512 kernels.
TEST(BlasKernel, ThisProcessRunsTheChosenKernels) {
  const bool we_set_it = std::getenv("QISA_BLAS_REEXEC") != nullptr;
  const bool user_set_it = !we_set_it && std::getenv("OPENBLAS_CORETYPE") != nullptr;
  const std::string loaded = blas_kernel_loaded();
  if (detect_cpu_features().avx512() && !user_set_it) {
    EXPECT_TRUE(loaded == "SkylakeX" || loaded == "Cooperlake" || loaded == "SapphireRapids") << loaded;
  }
  const std::string d = blas_kernel_description();
  EXPECT_NE(d.find("OpenBLAS"), std::string::npos) << d;
  EXPECT_NE(d.find(loaded), std::string::npos) << d;
}

// The restart itself, into a shell that prints what the new process sees (the real one execs
// /proc/self/exe, which this machine's OpenBLAS never needs: it knows the CPU or the user chose).
std::string restart_output(const char* exe) {
  int fd[2];
  EXPECT_EQ(pipe(fd), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 1), dup2(fd[1], 2);
    unsetenv("OPENBLAS_CORETYPE"), unsetenv("QISA_BLAS_REEXEC");
    char sh[] = "sh", c[] = "-c", cmd[] = "echo after restart: $OPENBLAS_CORETYPE $QISA_BLAS_REEXEC";
    char* argv[] = {sh, c, cmd, nullptr};
    restart_with_blas_kernel({"SkylakeX", "test", true}, "Haswell", exe, argv);
    std::printf("still here: OPENBLAS_CORETYPE=%s\n", std::getenv("OPENBLAS_CORETYPE") ? "set" : "unset");
    std::fflush(stdout);
    _exit(0);
  }
  close(fd[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = read(fd[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return out;
}

TEST(BlasKernel, RestartSetsTheKernelsOnceAndSurvivesAFailedExec) {
  EXPECT_EQ(restart_output("/bin/sh"), "after restart: SkylakeX Haswell\n");
  const std::string failed = restart_output("/nonexistent/qisa");
  EXPECT_NE(failed.find("qisa: warning: could not restart with OpenBLAS's SkylakeX kernels"), std::string::npos) << failed;
  EXPECT_NE(failed.find("still here: OPENBLAS_CORETYPE=unset"), std::string::npos) << failed;
}

nlohmann::json info(const std::string& env) {
  // env -u: start as a user would, without the marks this test binary's own start may have set
  const auto r = test::run_command("env -u QISA_BLAS_REEXEC -u OPENBLAS_CORETYPE " + env + " " + test::qisa_bin() + " info");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output.substr(r.output.find('{')));
}

TEST(BlasKernel, InfoNamesTheKernelsAndKeepsTheUsersChoice) {
  // Without OPENBLAS_CORETYPE: AVX-512 kernels on an AVX-512 CPU, OpenBLAS's own or qisa's choice.
  const std::string chosen = info("")["gemm_kernel"];
  if (detect_cpu_features().avx512()) {
    const bool avx512_kernels = chosen.find("SkylakeX (set by qisa") != std::string::npos ||
                                chosen.find("Cooperlake (OpenBLAS's own") != std::string::npos ||
                                chosen.find("SapphireRapids (OpenBLAS's own") != std::string::npos;
    EXPECT_TRUE(avx512_kernels) << chosen;
  }
  // A user's choice is kept, and a slower one is named as such.
  const std::string kept = info("OPENBLAS_CORETYPE=Haswell")["gemm_kernel"];
  EXPECT_NE(kept.find("Haswell ("), std::string::npos) << kept;
  EXPECT_NE(kept.find("OPENBLAS_CORETYPE=Haswell set by the user"), std::string::npos) << kept;
  if (detect_cpu_features().avx512()) {
    EXPECT_NE(kept.find("unset it"), std::string::npos) << kept;
  }
}

}  // namespace
}  // namespace qisa::cpu
