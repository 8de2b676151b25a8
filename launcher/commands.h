// One small file per subcommand; each adds itself to the root CLI11 app. Callbacks parse and
// validate, then call into trainer/ and io/. They throw qisa::Error; main prints it.
#pragma once
#include <CLI/CLI.hpp>

namespace qisa::cli {

void add_prepare(CLI::App& app);      // cmd_prepare.cpp
void add_train(CLI::App& app);        // cmd_train.cpp
void add_eval(CLI::App& app);         // cmd_eval.cpp
void add_probe_leak(CLI::App& app);   // cmd_probe.cpp
void add_probe_attention(CLI::App& app);  // cmd_probe.cpp
void add_bench(CLI::App& app);        // cmd_bench.cpp
void add_bench_tokenizer(CLI::App& bench);  // cmd_bench_tokenizer.cpp (under qisa bench)
void add_sample(CLI::App& app);       // cmd_sample.cpp
void add_launch(CLI::App& app);       // cmd_launch.cpp
void add_info(CLI::App& app);         // cmd_info.cpp
void add_inspect(CLI::App& app);      // cmd_inspect.cpp
void add_experiment(CLI::App& app);   // cmd_experiment.cpp
void add_plot(CLI::App& app);         // cmd_plot.cpp
void add_plan(CLI::App& app);         // cmd_plan.cpp

}  // namespace qisa::cli
