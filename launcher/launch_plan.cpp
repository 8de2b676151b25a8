#include "launcher/launch_plan.h"

#include <algorithm>

#include "kernels/error.h"

namespace qisa::cli {

namespace {
bool has_override(const std::vector<std::string>& args, const std::string& key) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) { return a.rfind(key + "=", 0) == 0; });
}
}  // namespace

LaunchPlan plan_launch(const LaunchRequest& r) {
  QISA_CHECK(r.nodes >= 1, "--nodes " + std::to_string(r.nodes) + " is not a positive number", "use --nodes 1 or more");
  QISA_CHECK(!(r.gpus_per_node > 0 && r.procs_per_node > 0), "--gpus-per-node and --procs were both given",
             "one rank runs per GPU; give --procs only for CPU runs");
  QISA_CHECK(!r.train_args.empty(), "no config to train", "usage: qisa launch [options] -- CONFIG [key=value ...]");
  LaunchPlan p;
  p.ranks_per_node = r.gpus_per_node > 0 ? r.gpus_per_node : std::max(1, r.procs_per_node);
  p.ranks = r.nodes * p.ranks_per_node;
  p.threads = r.threads > 0 ? r.threads : std::max(1, r.cores_per_node / p.ranks_per_node);
  const std::string T = std::to_string(p.threads), P = std::to_string(p.ranks_per_node);
  const bool slurm = r.mode == LaunchRequest::Mode::slurm || (r.mode == LaunchRequest::Mode::automatic && r.in_slurm);

  auto& a = p.argv;
  if (slurm) {
    // Debian's and most sites' Open MPI talk to srun through PMIx; a rank that dies must end
    // the step (--kill-on-bad-exit) rather than leave the others waiting in a collective.
    a = {"srun", "--nodes=" + std::to_string(r.nodes), "--ntasks-per-node=" + P, "--cpus-per-task=" + T};
    if (r.gpus_per_node > 0) a.push_back("--gpus-per-node=" + std::to_string(r.gpus_per_node));
    a.insert(a.end(), {"--mpi=pmix", "--kill-on-bad-exit=1", "--cpu-bind=cores", "--export=ALL,OMP_NUM_THREADS=" + T});
  } else {
    QISA_CHECK(r.nodes == 1 || !r.hostfile.empty() || r.in_slurm,
               "--nodes " + std::to_string(r.nodes) + " with mpirun needs the hosts",
               "pass --hostfile FILE (one line per node: 'host slots=" + P + "'), or run inside a Slurm allocation");
    a = {"mpirun", "-np", std::to_string(p.ranks)};
    if (r.root) a.push_back("--allow-run-as-root");
    if (!r.hostfile.empty()) a.insert(a.end(), {"--hostfile", r.hostfile});
    // PE=T gives each rank T cores of its own, so its OpenMP threads do not share one core
    // (Open MPI's default for small jobs binds each rank to a single core).
    a.insert(a.end(), {"--map-by", "ppr:" + P + ":node:PE=" + T, "--bind-to", "core", "-x", "OMP_NUM_THREADS=" + T});
  }
  if (r.gpus_per_node > 0 && !slurm) a.insert(a.end(), {"-x", "CUDA_DEVICE_ORDER=PCI_BUS_ID"});
  a.push_back(r.qisa);
  a.push_back("train");
  a.insert(a.end(), r.train_args.begin(), r.train_args.end());
  if (!has_override(r.train_args, "train.threads")) a.push_back("train.threads=" + T);
  // A GPU job trains on the GPUs, gradients over NCCL, unless the overrides say otherwise.
  if (r.gpus_per_node > 0 && !has_override(r.train_args, "train.device")) a.push_back("train.device=cuda");
  if (r.gpus_per_node > 0 && !has_override(r.train_args, "dist.comm")) a.push_back("dist.comm=nccl");
  return p;
}

std::string shell_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& s : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                         "-_./=:,+@%") == std::string::npos;
    if (plain) {
      out += s;
      continue;
    }
    out += '\'';
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

}  // namespace qisa::cli
