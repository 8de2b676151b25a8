// qisa launch: the mpirun / srun commands it composes (--dry-run), its errors, and a real
// 2-rank run through it.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace qisa {
namespace {

using test::run_command;

std::string launch(const std::string& args) { return test::qisa_bin() + " launch " + args; }

// The command line printed by --dry-run (its second line).
std::string command_of(const test::CommandResult& r) {
  const auto nl = r.output.find('\n');
  return r.output.substr(nl + 1, r.output.find('\n', nl + 1) - nl - 1);
}

TEST(Launch, OneNodeEightGpusWithSrun) {
  auto r = run_command(launch("--slurm --gpus-per-node 8 --threads 6 --dry-run -- cfg.yaml train.steps=9"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("qisa launch: 8 ranks (8 per node), 6 threads each"), std::string::npos) << r.output;
  EXPECT_EQ(command_of(r),
            "srun --nodes=1 --ntasks-per-node=8 --cpus-per-task=6 --gpus-per-node=8 --mpi=pmix --kill-on-bad-exit=1 "
            "--cpu-bind=cores --export=ALL,OMP_NUM_THREADS=6 " +
                test::qisa_bin() + " train cfg.yaml train.steps=9 train.threads=6 train.device=cuda dist.comm=nccl");
}

TEST(Launch, FourNodesEightGpusWithSrunAndWithMpirun) {
  auto s = run_command(launch("--slurm --nodes 4 --gpus-per-node 8 --threads 4 --dry-run -- cfg.yaml"));
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_NE(s.output.find("32 ranks (8 per node)"), std::string::npos) << s.output;
  EXPECT_EQ(command_of(s),
            "srun --nodes=4 --ntasks-per-node=8 --cpus-per-task=4 --gpus-per-node=8 --mpi=pmix --kill-on-bad-exit=1 "
            "--cpu-bind=cores --export=ALL,OMP_NUM_THREADS=4 " +
                test::qisa_bin() + " train cfg.yaml train.threads=4 train.device=cuda dist.comm=nccl");
  test::TempDir tmp;
  test::write_file(tmp / "hosts", "n1 slots=8\nn2 slots=8\nn3 slots=8\nn4 slots=8\n");
  auto m = run_command(launch("--mpirun --nodes 4 --gpus-per-node 8 --threads 4 --hostfile " + (tmp / "hosts") +
                              " --dry-run -- cfg.yaml"));
  ASSERT_EQ(m.exit_code, 0) << m.output;
  const std::string root = geteuid() == 0 ? " --allow-run-as-root" : "";
  EXPECT_EQ(command_of(m), "mpirun -np 32" + root + " --hostfile " + (tmp / "hosts") +
                               " --map-by ppr:8:node:PE=4 --bind-to core -x OMP_NUM_THREADS=4 -x "
                               "CUDA_DEVICE_ORDER=PCI_BUS_ID " +
                               test::qisa_bin() + " train cfg.yaml train.threads=4 train.device=cuda dist.comm=nccl");
}

// A GPU job trains on the GPUs over NCCL by default; overrides given after the config win, and
// are not repeated.
TEST(Launch, GpuJobsUseCudaAndNcclUnlessTheOverridesSayOtherwise) {
  auto r = run_command(launch("--slurm --gpus-per-node 2 --threads 1 --dry-run -- cfg.yaml dist.comm=mpi"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string cmd = command_of(r);
  EXPECT_NE(cmd.find(" train cfg.yaml dist.comm=mpi train.threads=1 train.device=cuda"), std::string::npos) << cmd;
  EXPECT_EQ(cmd.find("dist.comm=nccl"), std::string::npos) << cmd;
  auto cpu = run_command(launch("--mpirun --procs 2 --threads 1 --dry-run -- cfg.yaml"));
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_EQ(command_of(cpu).find("train.device"), std::string::npos) << command_of(cpu);
}

TEST(Launch, CpuRanksKeepAThreadCountGivenAsAnOverride) {
  auto r = run_command(launch("--mpirun --procs 2 --dry-run -- cfg.yaml train.threads=3"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string cmd = command_of(r);
  EXPECT_NE(cmd.find("-np 2 "), std::string::npos) << cmd;
  EXPECT_NE(cmd.find(" train cfg.yaml train.threads=3"), std::string::npos) << cmd;
  EXPECT_EQ(cmd.find("train.threads=3 train.threads"), std::string::npos) << cmd;
  if (geteuid() == 0) {
    EXPECT_NE(cmd.find("--allow-run-as-root"), std::string::npos) << cmd;
  }
}

TEST(Launch, ImpossibleRequestsAreOneLineErrors) {
  auto several = run_command("env -u SLURM_JOB_ID " + launch("--mpirun --nodes 2 --procs 2 --dry-run -- cfg.yaml"));
  EXPECT_NE(several.exit_code, 0);
  EXPECT_NE(several.output.find("--hostfile"), std::string::npos) << several.output;
  auto both = run_command(launch("--gpus-per-node 2 --procs 2 --dry-run -- cfg.yaml"));
  EXPECT_NE(both.exit_code, 0);
  auto none = run_command(launch("--dry-run"));
  EXPECT_NE(none.exit_code, 0);
}

TEST(Launch, RunsTwoRanksOfTrain) {
  test::TempDir tmp;
  test::write_file(tmp / "t.txt", test::make_training_text(500));
  ASSERT_EQ(run_command(test::qisa_bin() + " prepare --input " + (tmp / "t.txt") + " --out " + (tmp / "c.h5")).exit_code, 0);
  test::write_file(tmp / "c.yaml", "model: {block_size: 8, n_embd: 8, n_head: 1, n_layer: 1}\ndata: {corpus: " +
                                       (tmp / "c.h5") + "}\ntrain: {batch_size: 8, steps: 3}\neval: {windows: 4}\n"
                                                        "log: {dir: " + (tmp / "run") + "}\n");
  auto r = run_command("env OMPI_MCA_rmaps_base_oversubscribe=1 " +
                       launch("--mpirun --procs 2 --threads 1 -- " + (tmp / "c.yaml") + " --quiet"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 ranks (mpi)"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(tmp / "run/final.h5"));
}

}  // namespace
}  // namespace qisa
