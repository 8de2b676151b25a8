// qisa inspect CKPT [--json]: what a checkpoint holds, and whether every checksum in it holds.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "kernels/error.h"
#include "launcher/commands.h"

namespace qisa::cli {

namespace {

void print_human(const CheckpointSummary& s) {
  const TrainState& t = s.state;
  std::printf("checkpoint     %s\n", s.path.c_str());
  std::printf("written by     qisa %s\n", s.code_version.empty() ? "?" : s.code_version.c_str());
  std::printf("step           %lld\n", static_cast<long long>(t.step));
  std::printf("epoch          %lld\n", static_cast<long long>(t.epoch));
  std::printf("samples seen   %lld\n", static_cast<long long>(t.samples_seen));
  std::printf("tokens seen    %lld\n", static_cast<long long>(t.tokens_seen));
  std::printf("seed           %llu\n", static_cast<unsigned long long>(t.seed));
  std::printf("world size     %lld (at save)\n", static_cast<long long>(t.world_size));
  std::printf("skipped steps  %lld non-finite (train.on_nonfinite), %lld of %lld spikes (train.on_spike)\n",
              static_cast<long long>(t.skipped_nonfinite), static_cast<long long>(t.skipped_spikes),
              static_cast<long long>(t.spikes));
  std::printf("parameters     %lld in %lld tensors\n", static_cast<long long>(s.parameters),
              static_cast<long long>(s.tensors));
  std::printf("optimizer      %lld AdamW moment tensors\n", static_cast<long long>(s.optim_tensors));
  std::printf("pauli strings  %lld datasets\n", static_cast<long long>(s.string_datasets));
  std::printf("vocabulary     %lld entries\n", static_cast<long long>(s.vocab_size));
  std::printf("checksums      %s\n", s.checksums_ok ? "ok" : ("BAD: " + s.checksum_error).c_str());
  std::printf("config:\n");
  std::string indented = "  ";
  for (char c : s.config_yaml) indented += c == '\n' ? std::string("\n  ") : std::string(1, c);
  while (!indented.empty() && (indented.back() == ' ' || indented.back() == '\n')) indented.pop_back();
  std::printf("%s\n", indented.c_str());
}

std::string to_json(const CheckpointSummary& s) {
  const TrainState& t = s.state;
  nlohmann::json j{{"path", s.path},
                   {"code_version", s.code_version},
                   {"step", t.step},
                   {"epoch", t.epoch},
                   {"samples_seen", t.samples_seen},
                   {"tokens_seen", t.tokens_seen},
                   {"seed", t.seed},
                   {"world_size", t.world_size},
                   {"skipped_nonfinite", t.skipped_nonfinite},
                   {"spikes", t.spikes},
                   {"skipped_spikes", t.skipped_spikes},
                   {"parameters", s.parameters},
                   {"tensors", s.tensors},
                   {"optim_tensors", s.optim_tensors},
                   {"string_datasets", s.string_datasets},
                   {"vocab_size", s.vocab_size},
                   {"checksums", s.checksums_ok ? "ok" : "bad"},
                   {"config", s.config_yaml}};
  if (!s.checksums_ok) j["checksum_error"] = s.checksum_error;
  // Replace, not throw, on invalid UTF-8: the report must come out for a damaged file too.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "inspect",
      "Show what a checkpoint holds (config, step, epoch, tokens seen, world size at save, parameter and tensor "
      "counts) and check every checksum in it; exits non-zero when a checksum fails");
  struct Args {
    std::string path;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("checkpoint", args->path, "checkpoint file (RUN_DIR/checkpoints/ckpt_<step>.h5)")->required();
  cmd->add_flag("--json", args->json, "print one JSON line instead of the human-readable report");
  cmd->callback([args] {
    const CheckpointSummary s = inspect_checkpoint(args->path);
    if (args->json)
      std::printf("%s\n", to_json(s).c_str());
    else
      print_human(s);
    std::fflush(stdout);
    QISA_CHECK(s.checksums_ok, "checkpoint '" + args->path + "' is damaged (checksums: bad, see the report)",
               "do not resume from it; train.resume: auto skips it and takes the newest one that verifies");
  });
}

}  // namespace qisa::cli
