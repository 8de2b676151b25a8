// detect_world(): the launcher's variables, read before any MPI call.
#include <gtest/gtest.h>

#include <string>

#include "kernels/error.h"
#include "test_comm_env.h"
#include "trainer/comm/communicator.h"

namespace qisa {
namespace {

using test::LauncherEnv;

// The message of the qisa::Error detect_world() throws ("" when it throws none).
std::string world_error() {
  try {
    detect_world();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

TEST(CommWorld, NoVariablesIsOneProcess) {
  LauncherEnv env;
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.local_size, 1);
  EXPECT_EQ(w.launcher, "none");
  EXPECT_EQ(w.variables, "");
}

TEST(CommWorld, EmptyValueCountsAsUnset) {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "").set("OMPI_COMM_WORLD_SIZE", "");
  EXPECT_EQ(detect_world().launcher, "none");
}

TEST(CommWorld, OpenMpiMpirun) {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "3").set("OMPI_COMM_WORLD_SIZE", "4");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "1").set("OMPI_COMM_WORLD_LOCAL_SIZE", "2");
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.launcher, "mpirun");
  EXPECT_EQ(w.rank, 3);
  EXPECT_EQ(w.size, 4);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_size, 2);
  EXPECT_NE(w.variables.find("OMPI_COMM_WORLD_RANK=3"), std::string::npos) << w.variables;
  EXPECT_NE(w.variables.find("OMPI_COMM_WORLD_SIZE=4"), std::string::npos) << w.variables;
}

TEST(CommWorld, MissingLocalVariablesMeanOneNode) {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "2").set("OMPI_COMM_WORLD_SIZE", "3");
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.local_size, 3);
}

TEST(CommWorld, PmixUnderSrun) {
  LauncherEnv env;
  env.set("PMIX_RANK", "5").set("SLURM_PROCID", "5").set("SLURM_STEP_NUM_TASKS", "8").set("SLURM_LOCALID", "1");
  env.set("SLURM_STEP_TASKS_PER_NODE", "4(x2)").set("SLURM_NODEID", "1");
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.launcher, "pmix");
  EXPECT_EQ(w.rank, 5);
  EXPECT_EQ(w.size, 8);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_size, 4);
}

TEST(CommWorld, PmixRankAloneIsNoLauncherWeKnow) {
  LauncherEnv env;
  env.set("PMIX_RANK", "0");
  EXPECT_EQ(detect_world().launcher, "none");
}

TEST(CommWorld, MpichHydra) {
  LauncherEnv env;
  env.set("PMI_RANK", "1").set("PMI_SIZE", "2").set("MPI_LOCALRANKID", "1").set("MPI_LOCALNRANKS", "2");
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.launcher, "pmi");
  EXPECT_EQ(w.rank, 1);
  EXPECT_EQ(w.size, 2);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_size, 2);
}

TEST(CommWorld, SrunStepOnAnUnevenAllocation) {
  LauncherEnv env;
  env.set("SLURM_PROCID", "2").set("SLURM_STEP_NUM_TASKS", "3").set("SLURM_NTASKS", "3").set("SLURM_LOCALID", "0");
  env.set("SLURM_STEP_TASKS_PER_NODE", "2,1").set("SLURM_NODEID", "1");
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.launcher, "slurm");
  EXPECT_EQ(w.rank, 2);
  EXPECT_EQ(w.size, 3);
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.local_size, 1);
}

// Slurm compresses per-node counts: "2(x3)" is three nodes of 2. Not an error.
TEST(CommWorld, SlurmCompressedTaskCounts) {
  struct Case {
    const char* list;
    const char* node;  // nullptr: SLURM_NODEID unset
    int local_size;
  };
  for (const Case& c : {Case{"2(x3)", "2", 2}, Case{"2(x3)", nullptr, 2}, Case{"4(x2),3", "2", 3},
                        Case{"1,2(x2),5", "0", 1}, Case{"1,2(x2),5", "2", 2}, Case{"1,2(x2),5", "3", 5},
                        Case{"8", nullptr, 8}}) {
    SCOPED_TRACE(std::string(c.list) + " node " + (c.node ? c.node : "unset"));
    LauncherEnv env;
    env.set("SLURM_PROCID", "0").set("SLURM_STEP_NUM_TASKS", "16").set("SLURM_LOCALID", "0");
    env.set("SLURM_STEP_TASKS_PER_NODE", c.list);
    if (c.node) env.set("SLURM_NODEID", c.node);
    EXPECT_EQ(detect_world().local_size, c.local_size);
  }
}

// The step's list describes the tasks that run; the job's and the request are fallbacks.
TEST(CommWorld, SlurmListPrecedence) {
  LauncherEnv env;
  env.set("SLURM_PROCID", "0").set("SLURM_STEP_NUM_TASKS", "8").set("SLURM_NODEID", "0");
  env.set("SLURM_NTASKS_PER_NODE", "6").set("SLURM_TASKS_PER_NODE", "5(x2)");
  EXPECT_EQ(detect_world().local_size, 5);
  env.set("SLURM_STEP_TASKS_PER_NODE", "4(x2)");
  EXPECT_EQ(detect_world().local_size, 4);
  env.unset("SLURM_STEP_TASKS_PER_NODE").unset("SLURM_TASKS_PER_NODE");
  EXPECT_EQ(detect_world().local_size, 6);
  // A job-wide list larger than a smaller step is clamped to the step.
  env.set("SLURM_STEP_NUM_TASKS", "2");
  EXPECT_EQ(detect_world().local_size, 2);
}

// An sbatch script's shell has SLURM_PROCID=0 and SLURM_NTASKS=N but is one process: only
// srun (SLURM_STEP_NUM_TASKS) makes it a rank of N.
TEST(CommWorld, SbatchShellIsOneProcess) {
  LauncherEnv env;
  env.set("SLURM_PROCID", "0").set("SLURM_NTASKS", "4").set("SLURM_LOCALID", "0").set("SLURM_NODEID", "0");
  env.set("SLURM_NTASKS_PER_NODE", "2(x2)").set("SLURM_TASKS_PER_NODE", "2(x2)");
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.launcher, "none");
  EXPECT_EQ(w.size, 1);
}

TEST(CommWorld, Precedence) {
  LauncherEnv env;
  env.set("SLURM_PROCID", "0").set("SLURM_STEP_NUM_TASKS", "1");
  EXPECT_EQ(detect_world().launcher, "slurm");
  env.set("PMI_RANK", "1").set("PMI_SIZE", "3");
  EXPECT_EQ(detect_world().launcher, "pmi");
  env.set("PMIX_RANK", "0");
  EXPECT_EQ(detect_world().launcher, "pmix");
  // mpirun inside a Slurm job: the OMPI values describe the MPI job.
  env.set("OMPI_COMM_WORLD_RANK", "1").set("OMPI_COMM_WORLD_SIZE", "2");
  const WorldInfo w = detect_world();
  EXPECT_EQ(w.launcher, "mpirun");
  EXPECT_EQ(w.rank, 1);
  EXPECT_EQ(w.size, 2);
}

TEST(CommWorld, MalformedIntegersAreErrors) {
  for (const char* bad : {"abc", "-1", "3x", " 3", "+3", "1e3", "0x2", "99999999999999999999"}) {
    SCOPED_TRACE(bad);
    LauncherEnv env;
    env.set("OMPI_COMM_WORLD_RANK", bad).set("OMPI_COMM_WORLD_SIZE", "4");
    const std::string msg = world_error();
    EXPECT_NE(msg.find("OMPI_COMM_WORLD_RANK='" + std::string(bad) + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("hint:"), std::string::npos) << msg;
  }
  LauncherEnv env;
  env.set("PMI_RANK", "0").set("PMI_SIZE", "two");
  EXPECT_NE(world_error().find("PMI_SIZE='two'"), std::string::npos);
}

TEST(CommWorld, MalformedSlurmListsAreErrors) {
  for (const char* bad : {"2(x", "2(3)", "(x2)", "2,,1", "0", "2(x0)", "2)", "2(x3),", "2(x3)junk", "x", "-2",
                          "1(x999999999999)"}) {
    SCOPED_TRACE(bad);
    LauncherEnv env;
    env.set("SLURM_PROCID", "0").set("SLURM_STEP_NUM_TASKS", "2").set("SLURM_NODEID", "0");
    env.set("SLURM_STEP_TASKS_PER_NODE", bad);
    const std::string msg = world_error();
    EXPECT_NE(msg.find("SLURM_STEP_TASKS_PER_NODE='" + std::string(bad) + "'"), std::string::npos) << msg;
  }
}

TEST(CommWorld, InconsistentValuesAreErrors) {
  {
    LauncherEnv env;
    env.set("OMPI_COMM_WORLD_RANK", "4").set("OMPI_COMM_WORLD_SIZE", "4");
    EXPECT_NE(world_error().find("OMPI_COMM_WORLD_RANK=4 is not below OMPI_COMM_WORLD_SIZE=4"), std::string::npos);
  }
  {
    LauncherEnv env;  // a half-configured launcher must not become a silent 1-rank run
    env.set("OMPI_COMM_WORLD_RANK", "1");
    EXPECT_NE(world_error().find("OMPI_COMM_WORLD_SIZE is not"), std::string::npos) << world_error();
  }
  {
    LauncherEnv env;
    env.set("PMI_RANK", "0").set("PMI_SIZE", "0");
    EXPECT_NE(world_error().find("PMI_SIZE is 0"), std::string::npos) << world_error();
  }
  {
    LauncherEnv env;
    env.set("OMPI_COMM_WORLD_RANK", "1").set("OMPI_COMM_WORLD_SIZE", "4");
    env.set("OMPI_COMM_WORLD_LOCAL_RANK", "2").set("OMPI_COMM_WORLD_LOCAL_SIZE", "2");
    EXPECT_NE(world_error().find("OMPI_COMM_WORLD_LOCAL_RANK=2 does not fit"), std::string::npos) << world_error();
  }
  {
    LauncherEnv env;
    env.set("SLURM_PROCID", "0").set("SLURM_STEP_NUM_TASKS", "4").set("SLURM_STEP_TASKS_PER_NODE", "2(x2)");
    env.set("SLURM_NODEID", "2");
    EXPECT_NE(world_error().find("SLURM_NODEID=2 is past the 2 nodes"), std::string::npos) << world_error();
  }
  {
    LauncherEnv env;  // uneven nodes and no SLURM_NODEID: this node's count is unknown
    env.set("SLURM_PROCID", "0").set("SLURM_STEP_NUM_TASKS", "3").set("SLURM_STEP_TASKS_PER_NODE", "2,1");
    EXPECT_NE(world_error().find("SLURM_NODEID is not set"), std::string::npos) << world_error();
  }
}

}  // namespace
}  // namespace qisa
