// qisa: train GPT models with quantum-inspired self-attention.
#include <cstdio>
#include <exception>

#include "kernels/cpu/blas_kernel.h"
#include "kernels/error.h"
#include "launcher/commands.h"

int main(int argc, char** argv) {
  qisa::cpu::select_blas_kernel(argv);  // may re-execute qisa with faster GEMM kernels; before anything starts
  CLI::App app{"qisa: GPT training with quantum-inspired self-attention (QISA)", "qisa"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("qisa ") + QISA_VERSION);
  qisa::cli::add_prepare(app);
  qisa::cli::add_train(app);
  qisa::cli::add_eval(app);
  qisa::cli::add_probe_leak(app);
  qisa::cli::add_probe_attention(app);
  qisa::cli::add_bench(app);
  qisa::cli::add_sample(app);
  qisa::cli::add_launch(app);
  qisa::cli::add_info(app);
  qisa::cli::add_inspect(app);
  qisa::cli::add_experiment(app);
  qisa::cli::add_plot(app);
  qisa::cli::add_plan(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const qisa::Error& e) {
    std::fprintf(stderr, "qisa: error: %s [%s]\n", e.message().c_str(), e.where().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qisa: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
