// The kernel lab (trainer/kernel_lab.h) on the CPU backend at a tiny model's shapes, and
// `qisa bench kernels` end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "forwarding_backend.h"
#include "kernels/error.h"
#include "test_util.h"
#include "trainer/kernel_lab.h"
#include "trainer/param_table.h"

namespace qisa {
namespace {

ModelConfig tiny_model(AttentionKind attention) {
  ModelConfig m;
  m.block_size = 8, m.n_embd = 16, m.n_head = 2, m.n_layer = 1, m.vocab_size = 11;
  m.attention = attention;
  return m;
}

KernelLabOptions tiny_options() {
  KernelLabOptions o;
  o.reps = 2, o.warmup = 1, o.gemm_size = 32, o.copy_bytes = 1 << 16;
  return o;
}

const std::vector<std::string> kCommonKernels = {
    "embedding_forward", "embedding_backward", "layernorm_forward", "layernorm_backward",
    "linear_qkv_forward", "linear_qkv_backward", "linear_mlp_fc_forward", "linear_mlp_fc_backward",
    "gelu_forward", "gelu_backward", "dropout_add_forward", "dropout_add_backward", "csa_forward", "csa_backward",
    "gaussian_attention_causal_forward", "gaussian_attention_causal_backward",
    "gaussian_attention_reference_forward", "gaussian_attention_reference_backward", "pauli_value_forward",
    "pauli_value_backward", "cross_entropy_forward", "cross_entropy_backward", "adamw_update", "sum_squares"};

std::map<std::string, KernelTiming> by_name(const KernelLabReport& r) {
  std::map<std::string, KernelTiming> m;
  for (const KernelTiming& k : r.kernels) {
    EXPECT_EQ(m.count(k.kernel), 0u) << k.kernel << " twice";
    m[k.kernel] = k;
  }
  return m;
}

void expect_sane(const KernelLabReport& r) {
  EXPECT_GT(r.copy_gbps, 0);
  EXPECT_TRUE(std::isfinite(r.copy_gbps));
  EXPECT_GT(r.gemm_tflops, 0);
  EXPECT_TRUE(std::isfinite(r.gemm_tflops));
  for (const KernelTiming& k : r.kernels) {
    SCOPED_TRACE(k.kernel);
    EXPECT_GT(k.ms, 0);
    EXPECT_TRUE(std::isfinite(k.ms));
    EXPECT_GT(k.bytes, 0);
    EXPECT_GT(k.gbps, 0);
    EXPECT_TRUE(std::isfinite(k.fraction_of_ceiling));
    EXPECT_GT(k.fraction_of_ceiling, 0);
    if (k.bound == Bound::compute) {
      EXPECT_GT(k.flops, 0);
      EXPECT_NEAR(k.fraction_of_ceiling, k.tflops / r.gemm_tflops, 1e-12 * k.fraction_of_ceiling);
    } else {
      EXPECT_EQ(k.flops, 0);
      EXPECT_NEAR(k.fraction_of_ceiling, k.gbps / r.copy_gbps, 1e-12 * k.fraction_of_ceiling);
    }
    EXPECT_NEAR(k.gbps, k.bytes / (k.ms / 1e3) / 1e9, 1e-9 * k.gbps);
  }
}

TEST(KernelLab, EveryKernelOnceWithPositiveFiniteFiguresFp32) {
  auto be = make_cpu_backend(1);
  const ModelConfig m = tiny_model(AttentionKind::qisa);
  const KernelLabReport r = run_kernel_lab(*be, m, 2, DType::f32, tiny_options());
  auto k = by_name(r);
  ASSERT_EQ(k.size(), kCommonKernels.size());
  for (const std::string& name : kCommonKernels) EXPECT_EQ(k.count(name), 1u) << name;
  EXPECT_EQ(k.count("qisa_a_forward"), 0u);  // only for qisa_a models
  expect_sane(r);
  EXPECT_EQ(r.N, 16);
  EXPECT_EQ(r.D, 8);
  EXPECT_EQ(r.n_qubits, 4);
  EXPECT_EQ(r.params, ParamTable(m).total());

  // Hand-computed (N = 16, C = 16, fp32: a = 4):
  // layernorm forward: in + out 2*16*16*4 = 2048, w, b 2*16*4 = 128, mean, rstd 2*16*4 = 128
  EXPECT_EQ(k["layernorm_forward"].bytes, 2304);
  EXPECT_EQ(k["layernorm_forward"].bound, Bound::memory);
  // qkv forward: in 16*16 + w 48*16 + out 16*48 = 1792 elements x 4, no bias; 2*16*16*48 FLOPs
  EXPECT_EQ(k["linear_qkv_forward"].bytes, 7168);
  EXPECT_EQ(k["linear_qkv_forward"].flops, 24576);
  EXPECT_EQ(k["linear_qkv_backward"].flops, 49152);
  // csa forward: B*H*T(T+1)/2 = 2*2*36 = 144 pairs x 4D (D = 8) = 4608; backward 10D: 11520
  EXPECT_EQ(k["csa_forward"].flops, 4608);
  EXPECT_EQ(k["csa_backward"].flops, 11520);
  EXPECT_EQ(k["gaussian_attention_causal_forward"].flops, 5760);
  // adamw: 7 fp32 streams over the parameters
  EXPECT_EQ(k["adamw_update"].bytes, 28.0 * static_cast<double>(ParamTable(m).total()));
  // pauli forward: N * H*D strings * 2^4 amplitudes * 3 = 16*16*16*3
  EXPECT_EQ(k["pauli_value_forward"].flops, 12288);
}

TEST(KernelLab, Bf16HalvesActivationTrafficAndQisaAAddsItsKernels) {
  auto be = make_cpu_backend(1);
  const KernelLabReport r = run_kernel_lab(*be, tiny_model(AttentionKind::qisa_a), 2, DType::bf16, tiny_options());
  auto k = by_name(r);
  EXPECT_EQ(k.size(), kCommonKernels.size() + 2);
  EXPECT_EQ(k.count("qisa_a_forward"), 1u);
  EXPECT_EQ(k.count("qisa_a_backward"), 1u);
  expect_sane(r);
  // layernorm forward with a = 2: 2*16*16*2 + 128 + 128
  EXPECT_EQ(k["layernorm_forward"].bytes, 1280);
  // cross-entropy backward: logits + dlogits 2*16*11*2 + targets 16*4
  EXPECT_EQ(k["cross_entropy_backward"].bytes, 768);
  EXPECT_EQ(k["linear_qkv_forward"].flops, 24576);  // FLOPs do not depend on storage
}

// The harness times what it says: warmup + reps calls of each op, and the mean per call.
class SlowLayerNorm : public test::ForwardingBackend {
 public:
  int calls = 0;
  void layernorm_forward(Act o, float* m, float* r, CAct i, const float* w, const float* b, int64_t N, int C) override {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ForwardingBackend::layernorm_forward(o, m, r, i, w, b, N, C);
  }
};

TEST(KernelLab, TimesWarmupPlusRepsCallsAndReportsTheMeanPerCall) {
  SlowLayerNorm be;
  KernelLabOptions o = tiny_options();
  o.reps = 3, o.warmup = 2;
  const KernelLabReport r = run_kernel_lab(be, tiny_model(AttentionKind::qisa), 2, DType::f32, o);
  EXPECT_EQ(be.calls, 5);
  const double ms = by_name(r)["layernorm_forward"].ms;
  EXPECT_GE(ms, 20.0);
  EXPECT_LT(ms, 200.0);  // a mean per call, not the sum of the three
}

TEST(KernelLab, BadOptionsAreErrorsNamingTheValue) {
  auto be = make_cpu_backend(1);
  KernelLabOptions o = tiny_options();
  o.reps = 0;
  try {
    run_kernel_lab(*be, tiny_model(AttentionKind::qisa), 2, DType::f32, o);
    FAIL() << "reps 0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reps 0"), std::string::npos) << e.what();
  }
  ModelConfig m = tiny_model(AttentionKind::qisa);
  m.vocab_size = 0;
  EXPECT_THROW(run_kernel_lab(*be, m, 2, DType::f32, tiny_options()), Error);
}

TEST(KernelLab, BenchKernelsCommandPrintsOneJsonLine) {
  test::TempDir tmp;
  test::write_file(tmp / "text.txt", test::make_training_text(300));
  auto p = test::run_command(test::qisa_bin() + " prepare --input " + (tmp / "text.txt") + " --out " + (tmp / "c.h5"));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const std::string cfg = tmp / "tiny.yaml";
  test::write_file(cfg, "model:\n  block_size: 8\n  n_embd: 16\n  n_head: 2\n  n_layer: 1\n  attention: qisa\n"
                        "data:\n  corpus: " + (tmp / "c.h5") + "\n"
                        "train:\n  batch_size: 4\n  micro_batch_size: 2\n  threads: 1\n"
                        "log:\n  dir: " + (tmp / "run") + "\n");
  auto r = test::run_command(test::qisa_bin() + " bench kernels " + cfg +
                             " train.precision=bf16 --reps 2 --warmup 1 --gemm-size 48 --copy-mb 0.25");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["bench"], "kernels");
  EXPECT_EQ(j["config"], cfg);
  EXPECT_EQ(j["backend"], "cpu");
  EXPECT_TRUE(j["device"].is_string());
  EXPECT_EQ(j["emulated"], false);
  EXPECT_EQ(j["precision"], "bf16");
  EXPECT_EQ(j["shape"]["B"], 2);  // train.micro_batch_size
  EXPECT_EQ(j["shape"]["T"], 8);
  EXPECT_EQ(j["shape"]["C"], 16);
  EXPECT_EQ(j["shape"]["H"], 2);
  EXPECT_EQ(j["shape"]["D"], 8);
  EXPECT_GT(j["shape"]["V"].get<int64_t>(), 0);
  EXPECT_GT(j["ceilings"]["copy_gbps"].get<double>(), 0);
  EXPECT_GT(j["ceilings"]["gemm_tflops"].get<double>(), 0);
  ASSERT_EQ(j["kernels"].size(), kCommonKernels.size());
  for (const auto& k : j["kernels"]) {
    SCOPED_TRACE(k.dump());
    for (const char* f : {"kernel", "ms", "bytes", "gbps", "flops", "tflops", "fraction_of_ceiling", "bound"})
      EXPECT_TRUE(k.contains(f)) << f;
    EXPECT_GT(k["ms"].get<double>(), 0);
    EXPECT_GT(k["fraction_of_ceiling"].get<double>(), 0);
    const bool compute = k["bound"] == "compute";
    EXPECT_TRUE(compute || k["bound"] == "memory");
    EXPECT_EQ(k["flops"].is_null(), !compute);  // null where FLOPs are not meaningful
  }
  EXPECT_EQ(j["kernels"][2]["kernel"], "layernorm_forward");
  EXPECT_EQ(j["kernels"][2]["bytes"].get<double>(), 1280);  // bf16: see the Bf16 test above

  auto help = test::run_command(test::qisa_bin() + " bench kernels --help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  for (const char* opt : {"--reps", "--warmup", "--gemm-size", "--copy-mb", "--threads"})
    EXPECT_NE(help.output.find(opt), std::string::npos) << opt;
}

}  // namespace
}  // namespace qisa
