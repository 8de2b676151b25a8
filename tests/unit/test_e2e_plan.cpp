// `qisa plan` through the executable, and the configs it is meant for: JSON that parses and
// agrees with a trained model's parameter count, the verdict flipping at --gpu-mem, ZeRO-1
// dividing the optimizer state over --gpus, bf16, one-line errors; every config under
// configs/ loads, and the GPT-2 configs have the parameter counts of their shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/config.h"
#include "io/model_file.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::run_command;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

nlohmann::json plan_json(const std::string& args) {
  auto r = run_command(test::qisa_bin() + " plan " + args + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  try {
    return nlohmann::json::parse(r.output);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what() << "\n" << r.output;
    return {};
  }
}

std::string exact(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

class PlanCli : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_file(tmp / "text.txt", test::make_training_text(400));
    auto r = run_command(test::qisa_bin() + " prepare --input " + (tmp / "text.txt") + " --out " + (tmp / "c.h5"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    test::write_file(cfg(), "model:\n  block_size: 16\n  n_embd: 24\n  n_head: 3\n  n_layer: 2\n  attention: qisa\n"
                            "  vocab_multiple: 16\n"
                            "data:\n  corpus: " + (tmp / "c.h5") + "\n"
                            "train:\n  batch_size: 32\n  micro_batch_size: 8\n  steps: 2\n  threads: 1\n"
                            "eval:\n  every: 0\n  windows: 2\n"
                            "log:\n  dir: " + (tmp / "run") + "\n");
  }
  std::string cfg() const { return tmp / "tiny.yaml"; }
  test::TempDir tmp;
};

TEST_F(PlanCli, JsonAgreesWithATrainedModel) {
  const auto j = plan_json(cfg());
  ASSERT_TRUE(j.is_object());
  // the parameter count of the model `qisa train` builds and saves
  auto r = run_command(test::qisa_bin() + " train " + cfg() + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  int64_t saved = 0;
  for (const auto& t : read_model_file(tmp / "run/final.h5").params) saved += static_cast<int64_t>(t.data.size());
  EXPECT_EQ(j["params"].get<int64_t>(), saved);
  int64_t groups = 0;
  for (const auto& [g, n] : j["param_groups"].items()) groups += n.get<int64_t>();
  EXPECT_EQ(groups, saved);
  EXPECT_EQ(j["vocab_size"].get<int64_t>() % 16, 0);
  EXPECT_LT(j["corpus_vocab_size"].get<int64_t>(), j["vocab_size"].get<int64_t>());
  EXPECT_EQ(j["tokens_per_step"].get<int64_t>(), 32 * 16);
  EXPECT_EQ(j["micro_batch"].get<int64_t>(), 8);
  EXPECT_EQ(j["micro_steps"].get<int64_t>(), 4);
  const auto& f = j["flops_per_token"];
  EXPECT_DOUBLE_EQ(f["training"].get<double>(), 3 * f["forward"].get<double>());
  double sum = 0;
  for (const auto& [name, v] : f["forward_by_component"].items()) sum += v.get<double>();
  EXPECT_NEAR(sum, f["forward"].get<double>(), 1e-9 * sum);
  const auto& m = j["memory_bytes_per_gpu"];
  EXPECT_DOUBLE_EQ(m["total"].get<double>(), m["weights"].get<double>() + m["gradients"].get<double>() +
                                                 m["optimizer"].get<double>() + m["activations"].get<double>());
  EXPECT_TRUE(j["fits"].get<bool>());
  EXPECT_EQ(j["device"]["name"], "h100");
  // the human-readable table says the same
  r = run_command(test::qisa_bin() + " plan " + cfg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"parameters", "FLOPs/token", "tokens/step", "memory/GPU", "activations", "verdict        fits"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
}

TEST_F(PlanCli, VerdictFlipsAtTheGpuMemory) {
  const auto j = plan_json(cfg() + " --headroom 0.5");
  const double need = j["memory_bytes_per_gpu"]["total"].get<double>() + 0.5 * kGiB;
  const auto fits = plan_json(cfg() + " --headroom 0.5 --gpu-mem " + exact(need * (1 + 1e-9) / kGiB));
  const auto tight = plan_json(cfg() + " --headroom 0.5 --gpu-mem " + exact(need * (1 - 1e-9) / kGiB));
  EXPECT_TRUE(fits["fits"].get<bool>());
  EXPECT_FALSE(tight["fits"].get<bool>());
  EXPECT_EQ(tight["device"]["name"], "custom");
  auto r = run_command(test::qisa_bin() + " plan " + cfg() + " --headroom 0.5 --gpu-mem " +
                       exact(need * (1 - 1e-9) / kGiB));
  EXPECT_EQ(r.exit_code, 0) << r.output;  // a verdict, not an error
  EXPECT_NE(r.output.find("does not fit"), std::string::npos) << r.output;
  // a model too big for an H100: the same tiny config at GPT-2 1558M's shape and micro-batch 64
  const auto big = plan_json(cfg() + " --vocab 50257 model.n_layer=48 model.n_embd=1600 model.n_head=25 "
                                     "model.block_size=1024 train.batch_size=64 train.micro_batch_size=64");
  EXPECT_FALSE(big["fits"].get<bool>());
  EXPECT_TRUE(plan_json(cfg() + " --vocab 50257 --device h200 model.n_layer=48 model.n_embd=1600 model.n_head=25 "
                                "model.block_size=1024 train.batch_size=64 train.micro_batch_size=2")["fits"]
                  .get<bool>());
}

TEST_F(PlanCli, ZeroOneDividesTheOptimizerStateOverTheGpus) {
  const auto one = plan_json(cfg() + " dist.zero=1");
  const auto four = plan_json(cfg() + " dist.zero=1 --gpus 4");
  const auto replicated = plan_json(cfg() + " --gpus 4");
  const int64_t params = one["params"].get<int64_t>();
  const int64_t flat4 = (params + 3) / 4 * 4;
  EXPECT_EQ(four["flat_params"].get<int64_t>(), flat4);
  EXPECT_EQ(four["optimizer_shard"].get<int64_t>(), flat4 / 4);
  EXPECT_DOUBLE_EQ(one["memory_bytes_per_gpu"]["optimizer"].get<double>(), 8.0 * params);
  EXPECT_DOUBLE_EQ(four["memory_bytes_per_gpu"]["optimizer"].get<double>(), 8.0 * flat4 / 4);
  EXPECT_DOUBLE_EQ(replicated["memory_bytes_per_gpu"]["optimizer"].get<double>(), 8.0 * params);
  EXPECT_FALSE(replicated["memory_bytes_per_gpu"].contains("zero1_buffers"));
  // 32 sequences over 4 GPUs: 8 each, one micro-batch of 8
  EXPECT_EQ(four["batch_per_gpu"].get<int64_t>(), 8);
  EXPECT_EQ(four["micro_steps"].get<int64_t>(), 1);
  // bf16: the activations shrink, the bf16 weight copy joins the fp32 masters (on every GPU:
  // the trainer all-gathers fp32 masters), the optimizer state stays m and v
  const auto bf = plan_json(cfg() + " dist.zero=1 --gpus 4 --precision bf16");
  EXPECT_LT(bf["memory_bytes_per_gpu"]["activations"].get<double>(),
            0.6 * four["memory_bytes_per_gpu"]["activations"].get<double>());
  EXPECT_DOUBLE_EQ(bf["memory_bytes_per_gpu"]["optimizer"].get<double>(), 8.0 * flat4 / 4);
  EXPECT_DOUBLE_EQ(bf["memory_bytes_per_gpu"]["weights"].get<double>(),
                   four["memory_bytes_per_gpu"]["weights"].get<double>() + 2.0 * flat4);
  EXPECT_EQ(bf["precision"], "bf16");
  // without --precision the plan follows the config's train.precision
  EXPECT_EQ(plan_json(cfg() + " dist.zero=1 --gpus 4 train.precision=bf16")["memory_bytes_per_gpu"],
            bf["memory_bytes_per_gpu"]);
}

TEST_F(PlanCli, OneLineErrors) {
  struct Case {
    std::string args;
    std::vector<std::string> says;
  };
  const Case cases[] = {
      {cfg() + " --gpus 3", {"train.batch_size = 32", "--gpus 3"}},
      {cfg() + " --gpus 2 train.micro_batch_size=16 train.batch_size=48", {"train.micro_batch_size = 16", "24"}},
      {cfg() + " --device h300", {"unknown device 'h300'", "h100", "h200"}},
      {cfg() + " data.corpus=" + (tmp / "none.h5"), {"data.corpus", "does not exist", "--vocab"}},
      {cfg() + " model.vocab_multiple=0", {"model.vocab_multiple = 0", "must be >= 1"}},
  };
  for (const auto& c : cases) {
    auto r = run_command(test::qisa_bin() + " plan " + c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.output;
    for (const auto& s : c.says) EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
}

// ------------------------------------------------------------------ configs/

std::vector<std::string> yaml_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(std::string(QISA_SOURCE_DIR) + "/" + dir))
    if (e.path().extension() == ".yaml" && e.path().filename() != "grid.yaml") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Configs, EveryConfigLoadsAndValidates) {
  for (const char* dir : {"configs/paper", "configs/gpt2"}) {
    const auto files = yaml_files(dir);
    EXPECT_FALSE(files.empty()) << dir;
    for (const auto& f : files) {
      SCOPED_TRACE(f);
      try {
        const Config c = load_config(f);
        EXPECT_FALSE(c.data.corpus.empty());
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    }
  }
}

// Our GPT at GPT-2's shapes (separate head.weight + head.bias; csa without q/k/v biases; qisa with
// q/k biases and an [H, C, C] value map, or one [C, C] map with qisa_value: shared), vocab 50257
// padded to 50304.
int64_t expected_params(const std::string& att, int64_t L, int64_t H, int64_t C) {
  const int64_t V = 50304, T = 1024;
  const int64_t per_layer = att == "csa"    ? 12 * C * C + 10 * C
                            : att == "qisa" ? (11 + H) * C * C + 12 * C
                                            : 12 * C * C + 12 * C;  // qisa_shared
  return V * C + T * C + L * per_layer + 2 * C + V * C + V;
}

TEST(Configs, Gpt2ConfigsPlanTheirShapes) {
  struct Size {
    const char* name;
    int64_t L, H, C;
  };
  const Size sizes[] = {{"124m", 12, 12, 768}, {"350m", 24, 16, 1024}, {"774m", 36, 20, 1280}, {"1558m", 48, 25, 1600}};
  const auto files = yaml_files("configs/gpt2");
  EXPECT_EQ(files.size(), 12u);
  for (const auto& s : sizes)
    for (const std::string att : {"csa", "qisa", "qisa_shared"}) {
      const std::string path = std::string(QISA_SOURCE_DIR) + "/configs/gpt2/gpt2_" + s.name + "_" + att + ".yaml";
      SCOPED_TRACE(path);
      const Config c = load_config(path);
      EXPECT_EQ(c.model.n_layer, s.L);
      EXPECT_EQ(c.model.n_head, s.H);
      EXPECT_EQ(c.model.n_embd, s.C);
      EXPECT_EQ(c.model.block_size, 1024);
      EXPECT_EQ(c.model.vocab_multiple, 128);
      EXPECT_EQ(std::string(to_string(c.model.attention)), att == "csa" ? "csa" : "qisa");
      EXPECT_EQ(c.model.qisa_value, att == "qisa_shared" ? QisaValue::shared : QisaValue::per_head);
      EXPECT_EQ(c.data.corpus, "data/gpt2/tinyshakespeare_gpt2.h5");
      // the plan of the configured run: 8 GPUs, fp32, fits an H100 (what the configs promise)
      const auto j = plan_json(path + " --vocab 50257 --gpus 8");
      EXPECT_EQ(j["params"].get<int64_t>(), expected_params(att, s.L, s.H, s.C));
      EXPECT_EQ(j["vocab_size"].get<int64_t>(), 50304);
      EXPECT_EQ(j["tokens_per_step"].get<int64_t>(), 524288);
      EXPECT_TRUE(j["fits"].get<bool>()) << j["memory_bytes_per_gpu"].dump();
    }
  // GPT-2 124M, csa: 163,132,032 with the untied head (OpenAI's tied GPT-2 has 124,439,808)
  EXPECT_EQ(expected_params("csa", 12, 12, 768), 163'132'032);
}

}  // namespace
}  // namespace qisa
