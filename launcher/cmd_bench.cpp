// qisa bench step CONFIG [a.b=value ...]: time training steps (no disk output).
// qisa bench kernels CONFIG [a.b=value ...]: time every backend op at the config's shapes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kernels/cpu/blas_kernel.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "launcher/run_setup.h"
#include "trainer/flops.h"
#include "trainer/kernel_lab.h"
#include "trainer/trainer.h"

namespace qisa::cli {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A figure that is not meaningful (no FLOPs for a memory-bound op) is null, not 0.
nlohmann::json figure(double v, bool meaningful) { return meaningful ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json kernels_json(const Config& cfg, const Backend& be, const KernelLabReport& r, const KernelLabOptions& o) {
  nlohmann::json ks = nlohmann::json::array();
  for (const KernelTiming& k : r.kernels)
    ks.push_back({{"kernel", k.kernel},
                  {"ms", k.ms},
                  {"bytes", k.bytes},
                  {"gbps", k.gbps},
                  {"flops", figure(k.flops, k.flops > 0)},
                  {"tflops", figure(k.tflops, k.flops > 0)},
                  {"fraction_of_ceiling", k.fraction_of_ceiling},
                  {"bound", to_string(k.bound)}});
  return {{"bench", "kernels"},
          {"config", cfg.source},
          {"backend", be.name()},
          {"device", be.device_model()},
          {"threads", be.threads()},
          {"emulated", r.emulated},
          {"precision", to_string(cfg.train.precision)},
          {"attention", to_string(cfg.model.attention)},
          {"shape", {{"B", r.B}, {"T", r.T}, {"C", r.C}, {"H", r.H}, {"D", r.D}, {"V", r.V}, {"N", r.N},
                     {"n_qubits", r.n_qubits}, {"params", r.params}}},
          {"timing", "mean ms per call of reps calls between two synchronize() calls, after warmup calls"},
          {"reps", o.reps},
          {"warmup", o.warmup},
          {"ceilings", {{"copy_gbps", r.copy_gbps}, {"copy_bytes", o.copy_bytes}, {"copy_ms", r.copy_ms},
                        {"gemm_tflops", r.gemm_tflops}, {"gemm_size", o.gemm_size}, {"gemm_ms", r.gemm_ms}}},
          {"kernels", ks}};
}

void add_bench_kernels(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "kernels",
      "Time every backend op (embedding, layernorm, linear, gelu, dropout_add, attention, Pauli value, qisa_a for "
      "qisa_a models, cross-entropy, AdamW, sum of squares) at a config's shapes, with GB/s, TFLOP/s and the "
      "fraction of the backend's measured copy and GEMM ceilings; one JSON line");
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    int reps = 10;
    int warmup = 2;
    int64_t gemm_size = 4096;
    double copy_mb = 256;
    int threads = 0;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("config", args->config, "YAML config (model shapes; B = train.micro_batch_size, else batch_size; "
                  "vocab_size from its corpus)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("overrides", args->overrides, "key overrides, e.g. model.n_layer=1 train.micro_batch_size=2");
  cmd->add_option("--reps", args->reps, "timed calls per op (the mean is reported)")->transform(count_in(1, 100000));
  cmd->add_option("--warmup", args->warmup, "untimed calls per op first")->transform(count_in(0, 100000));
  cmd->add_option("--gemm-size", args->gemm_size, "the GEMM ceiling's N = IC = OC (in the run's precision)")
      ->transform(count_in(1, 65536));
  cmd->add_option("--copy-mb", args->copy_mb, "the copy ceiling's size in MiB (device to device)")
      ->transform(real_in(0, 65536, true));
  cmd->add_option("--threads", args->threads, "CPU threads (default: OMP_NUM_THREADS, else the cores this process may use)")
      ->transform(count_in(0, 100000));
  cmd->callback([args] {
    const Config cfg = load_checked_config(args->config, args->overrides, args->threads);
    auto backend = make_backend(cfg);
    KernelLabOptions o;
    o.reps = args->reps;
    o.warmup = args->warmup;
    o.gemm_size = args->gemm_size;
    o.copy_bytes = std::max<int64_t>(1, std::llround(args->copy_mb * 1048576.0));
    o.seed = cfg.train.seed;
    const int64_t B = cfg.train.micro_batch_size > 0 ? std::min(cfg.train.micro_batch_size, cfg.train.batch_size)
                                                     : cfg.train.batch_size;
    const KernelLabReport r =
        run_kernel_lab(*backend, cfg.model, B, activation_dtype(cfg.train.precision), o);
    std::printf("%s\n", kernels_json(cfg, *backend, r, o).dump().c_str());
  });
}
}  // namespace

void add_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks; each prints one JSON line");
  bench->require_subcommand(1);
  auto* cmd = bench->add_subcommand(
      "step", "Time full training steps (forward, backward, AdamW; under mpirun also the gradient reduction) of a config");
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    int64_t steps = 20;
    int64_t warmup = 3;
    int threads = 0;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("config", args->config, "YAML config (its corpus supplies the tokens)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("overrides", args->overrides, "key overrides, e.g. model.attention=csa");
  cmd->add_option("--steps", args->steps, "timed steps")->transform(count_in(1, 100000));
  cmd->add_option("--warmup", args->warmup, "untimed steps first")->transform(count_in(0, 100000));
  cmd->add_option("--threads", args->threads, "CPU threads (default: OMP_NUM_THREADS, else the cores this process may use)")
      ->transform(count_in(0, 100000));
  add_bench_kernels(*bench);
  add_bench_tokenizer(*bench);
  cmd->callback([args] {
    std::vector<std::string> ov = args->overrides;
    ov.push_back("train.steps=" + std::to_string(args->steps + args->warmup));
    Config cfg = load_checked_config(args->config, ov, args->threads);
    auto backend = make_backend(cfg);
    with_communicator(cfg, *backend, [&](Communicator& comm, Collectives& coll) {
      Trainer trainer(cfg, *backend, comm, coll);
      for (int64_t i = 0; i < args->warmup; ++i) trainer.step();
      std::vector<double> ms, data, compute, net, allreduce, exposed;
      double loss = 0;
      for (int64_t i = 0; i < args->steps; ++i) {
        StepStats s = trainer.step();
        ms.push_back(s.ms);
        data.push_back(s.data_ms);
        compute.push_back(s.compute_ms);
        net.push_back(s.comm_ms);
        allreduce.push_back(s.allreduce_ms);
        exposed.push_back(s.allreduce_ms > 0 ? s.allreduce_exposed_ms / s.allreduce_ms : 0.0);
        loss = s.loss;
      }
      if (comm.rank() != 0) return;
      const double med = median(ms);
      const int64_t tokens = cfg.train.batch_size * cfg.model.block_size;
      const double tokens_per_s = static_cast<double>(tokens) / (med / 1000.0);
      const double flops_per_token = forward_flops(cfg.model).training();
      const RankPeak peak =
          resolve_peak(cfg.train.peak_tflops, backend->device_model(), math_precision(cfg.train.precision));
      nlohmann::json j{{"bench", "step"},
                       {"config", cfg.source},
                       {"attention", to_string(cfg.model.attention)},
                       {"mask", to_string(cfg.model.mask)},
                       {"dropout", cfg.model.dropout},
                       {"precision", to_string(cfg.train.precision)},
                       {"batch_size", cfg.train.batch_size},
                       {"block_size", cfg.model.block_size},
                       {"n_embd", cfg.model.n_embd},
                       {"n_head", cfg.model.n_head},
                       {"n_layer", cfg.model.n_layer},
                       {"params", trainer.model().num_params()},
                       {"backend", backend->name()},
                       {"threads", backend->threads()},
                       {"gemm_kernel", cpu::blas_kernel_description()},
                       {"world_size", comm.size()},
                       {"zero", cfg.dist.zero},
                       {"steps", args->steps},
                       {"warmup", args->warmup},
                       {"ms_per_step", med},
                       {"ms_min", *std::min_element(ms.begin(), ms.end())},
                       {"ms_max", *std::max_element(ms.begin(), ms.end())},
                       {"data_ms", median(data)},
                       {"compute_ms", median(compute)},
                       {"comm_ms", median(net)},
                       {"tokens_per_s", tokens_per_s},
                       {"flops_per_token", flops_per_token},
                       {"tflops_per_rank", flops_per_token * tokens_per_s / comm.size() / 1e12},
                       {"last_loss", loss}};
      if (median(allreduce) > 0) {  // buckets reduced while backward ran (dist.zero 0, > 1 rank)
        j["allreduce_ms"] = median(allreduce);
        j["allreduce_exposed_fraction"] = median(exposed);
      }
      if (peak.flops > 0) {
        j["peak_tflops_per_rank"] = peak.flops / 1e12;
        j["mfu"] = model_flops_utilization(flops_per_token, tokens_per_s, comm.size(), peak.flops);
      }
      std::printf("%s\n", j.dump().c_str());
    });
  });
}

}  // namespace qisa::cli
