// qisa launch [options] -- CONFIG [key=value ...]: run `qisa train` under mpirun or srun.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"
#include "launcher/launch_plan.h"
#include "launcher/run_setup.h"

namespace qisa::cli {

void add_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch",
      "Compose and run the mpirun or srun command for a data-parallel `qisa train`: one rank per GPU (or --procs "
      "per node), OpenMP threads per rank on cores of their own, root flags when needed. Prints the exact command.");
  auto req = std::make_shared<LaunchRequest>();
  auto dry = std::make_shared<bool>(false);
  auto slurm = std::make_shared<bool>(false), mpi = std::make_shared<bool>(false);
  cmd->add_option("--nodes", req->nodes, "nodes")->transform(count_in(1, 100000))->capture_default_str();
  auto* gpus = cmd->add_option("--gpus-per-node", req->gpus_per_node, "GPUs per node: one rank each, training with train.device=cuda dist.comm=nccl unless the overrides set them")
                   ->transform(count_in(1, 64));
  cmd->add_option("--procs", req->procs_per_node, "CPU ranks per node (default 1)")
      ->transform(count_in(1, 4096))
      ->excludes(gpus);
  cmd->add_option("--threads", req->threads,
                  "OpenMP threads per rank (default: cores per node / ranks per node; in Slurm SLURM_CPUS_ON_NODE)")
      ->transform(count_in(1, 100000));
  auto* s = cmd->add_flag("--slurm", *slurm, "use srun (default inside a Slurm allocation)");
  cmd->add_flag("--mpirun", *mpi, "use mpirun (default outside Slurm)")->excludes(s);
  cmd->add_option("--hostfile", req->hostfile, "mpirun hostfile for several nodes outside Slurm")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--dry-run", *dry, "print the command, do not run it");
  // --device: train.device for every rank (an unknown name is refused here, by name)
  auto device = std::make_shared<Device>(Device::cpu);
  auto* dev = add_device_option(*cmd, *device);
  cmd->add_option("args", req->train_args, "-- CONFIG [key=value ...]: what qisa train gets")->required();
  cmd->footer(
      "Examples:\n"
      "  qisa launch --procs 2 --threads 1 -- configs/paper/qisa_reference.yaml\n"
      "  qisa launch --slurm --nodes 4 --gpus-per-node 8 --dry-run -- configs/gpt2.yaml");
  cmd->callback([req, dry, slurm, mpi, device, dev] {
    LaunchRequest r = *req;
    if (dev->count() > 0) r.train_args.push_back(std::string("train.device=") + to_string(*device));
    r.mode = *slurm ? LaunchRequest::Mode::slurm : *mpi ? LaunchRequest::Mode::mpirun : LaunchRequest::Mode::automatic;
    r.root = ::geteuid() == 0;
    r.in_slurm = std::getenv("SLURM_JOB_ID") != nullptr;
    const char* slurm_cpus = std::getenv("SLURM_CPUS_ON_NODE");
    r.cores_per_node = slurm_cpus && std::atoi(slurm_cpus) > 0 ? std::atoi(slurm_cpus)
                                                               : static_cast<int>(std::thread::hardware_concurrency());
    std::error_code ec;
    r.qisa = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (r.qisa.empty()) r.qisa = "qisa";
    const LaunchPlan p = plan_launch(r);
    std::printf("qisa launch: %d rank%s (%d per node), %d thread%s each\n%s\n", p.ranks, p.ranks == 1 ? "" : "s",
                p.ranks_per_node, p.threads, p.threads == 1 ? "" : "s", shell_command(p.argv).c_str());
    std::fflush(stdout);
    if (*dry) return;
    std::vector<char*> argv;
    for (const auto& a : p.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    throw Error("cannot run " + p.argv[0] + ": " + std::strerror(errno),
                p.argv[0] == "srun" ? "is Slurm installed and are you on a node of the cluster?"
                                    : "install Open MPI (apt-get install openmpi-bin) or put mpirun on PATH");
  });
}

}  // namespace qisa::cli
