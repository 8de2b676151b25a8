// The MPI communicator and collectives in a process started without a launcher (an MPI "singleton": a world
// of one), and the check of the launcher's world against MPI's. MPI can be initialised once
// per process, so this is one test in its own executable.
#include <gtest/gtest.h>
#include <mpi.h>

#include <functional>
#include <string>
#include <vector>

#include "expect_error.h"
#include "kernels/backend.h"
#include "kernels/error.h"
#include "test_comm_env.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"

namespace qisa {
namespace {

using test::error_of;

using test::LauncherEnv;

TEST(CommSingleton, MpiWithoutLauncherAndMismatchedWorlds) {
  LauncherEnv env;
  auto comm = make_communicator("mpi");
  int flag = 0;
  MPI_Initialized(&flag);
  EXPECT_TRUE(flag);
  EXPECT_EQ(comm->name(), "mpi");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->local_rank(), 0);

  auto be = make_cpu_backend(1);
  auto coll = make_collectives(*comm, *be);
  EXPECT_EQ(coll->name(), "mpi");
  EXPECT_EQ(coll->rank(), 0);
  EXPECT_EQ(coll->size(), 1);
  std::vector<float> f = {1.f, 2.5f, -3.f};
  coll->allreduce_sum(f.data(), f.size(), DType::f32, nullptr);
  EXPECT_EQ(f, (std::vector<float>{1.f, 2.5f, -3.f}));
  coll->iallreduce_sum(f.data(), f.size(), DType::f32, nullptr)->wait();
  EXPECT_EQ(f, (std::vector<float>{1.f, 2.5f, -3.f}));
  std::vector<float> out(3);
  coll->reduce_scatter_sum(f.data(), out.data(), 3, DType::f32, nullptr);
  EXPECT_EQ(out, f);
  coll->all_gather(f.data(), f.data(), 3, DType::f32, nullptr);  // in place
  EXPECT_EQ(out, f);
  std::vector<double> d = {0.25, -1e300};
  comm->allreduce_sum(d.data(), d.size());
  EXPECT_EQ(d, (std::vector<double>{0.25, -1e300}));
  comm->broadcast(f.data(), sizeof(float) * f.size(), 0);
  comm->barrier();
  char b = 0;
  EXPECT_NE(error_of([&] { comm->send(&b, 1, 0, 0); }).find("is this rank itself"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->recv(&b, 1, 1, 0); }).find("recv source 1 is not a rank of 1"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->broadcast(&b, 1, -1); }).find("broadcast root -1"), std::string::npos);

  // A launcher that claims 2 ranks while MPI sees 1 (e.g. variables inherited from an outer
  // job): "mpi" and "auto" both refuse, naming the variables.
  env.set("OMPI_COMM_WORLD_RANK", "0").set("OMPI_COMM_WORLD_SIZE", "2");
  for (const char* kind : {"mpi", "auto"}) {
    const std::string msg = error_of([&] { make_communicator(kind); });
    EXPECT_NE(msg.find("MPI sees rank 0 of 1 but the launcher environment says rank 0 of 2"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("OMPI_COMM_WORLD_SIZE=2"), std::string::npos) << msg;
  }

  coll.reset();  // collectives first: they free their MPI communicator
  comm.reset();  // the communicator owns the session: MPI is finalised now
  MPI_Finalized(&flag);
  EXPECT_TRUE(flag);
  EXPECT_NE(error_of([] { make_communicator("mpi"); }).find("already finalised"), std::string::npos);
}

}  // namespace
}  // namespace qisa
