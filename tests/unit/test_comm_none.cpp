// The none communicator and make_communicator's choice, in one process that never
// initialises MPI (test_comm_singleton covers the MPI communicator without a launcher).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "test_comm_env.h"
#include "expect_error.h"
#include "test_util.h"
#include "trainer/comm/communicator.h"

namespace qisa {
namespace {

using test::error_of;

using test::LauncherEnv;

bool mpi_initialized() {
  int flag = 0;
  MPI_Initialized(&flag);  // allowed before MPI_Init
  return flag != 0;
}

// A plain `qisa train` (no launcher) must never touch MPI: MPI_Init can be slow, print
// warnings, or fail on a login node.
TEST(CommNone, AutoWithoutLauncherLeavesMpiAlone) {
  LauncherEnv env;
  ASSERT_FALSE(mpi_initialized());
  auto comm = make_communicator("auto");
  EXPECT_EQ(comm->name(), "none");
  std::vector<float> x = {1.5f, -2.f};
  comm->allreduce_sum(x.data(), x.size());
  comm->iallreduce_sum(x.data(), x.size())->wait();
  comm->barrier();
  comm.reset();
  EXPECT_FALSE(mpi_initialized());
}

TEST(CommNone, AutoUnderMpirunWithOneRankIsNone) {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "0").set("OMPI_COMM_WORLD_SIZE", "1");
  EXPECT_EQ(make_communicator("auto")->name(), "none");
  EXPECT_FALSE(mpi_initialized());
}

TEST(CommNone, Collectives) {
  LauncherEnv env;
  auto comm = make_communicator("none");
  EXPECT_EQ(comm->name(), "none");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->local_rank(), 0);

  std::vector<float> f = {1.f, -0.f, 3.25f};
  comm->allreduce_sum(f.data(), f.size());
  EXPECT_EQ(f, (std::vector<float>{1.f, -0.f, 3.25f}));
  std::vector<double> d = {1e300, -2.5};
  comm->allreduce_sum(d.data(), d.size());
  EXPECT_EQ(d, (std::vector<double>{1e300, -2.5}));
  std::vector<int64_t> m = {INT64_MIN, 7};
  comm->allreduce_max(m.data(), m.size());
  EXPECT_EQ(m, (std::vector<int64_t>{INT64_MIN, 7}));

  auto req = comm->iallreduce_sum(f.data(), f.size());
  EXPECT_TRUE(req->test());
  req->wait();
  EXPECT_EQ(f, (std::vector<float>{1.f, -0.f, 3.25f}));

  std::vector<float> out(3, 9.f);
  comm->reduce_scatter_sum(f.data(), out.data(), 3);
  EXPECT_EQ(out, f);
  std::fill(out.begin(), out.end(), 9.f);
  comm->all_gather(f.data(), out.data(), 3);
  EXPECT_EQ(out, f);
  comm->all_gather(f.data(), f.data(), 3);  // in place (the ZeRO-1 call shape)
  EXPECT_EQ(out, f);

  char bytes[4] = {'a', 'b', 'c', 'd'};
  comm->broadcast(bytes, sizeof bytes, 0);
  EXPECT_EQ(std::string(bytes, 4), "abcd");
  comm->barrier();
}

// Communicator's contract for empty buffers: null pointers are fine, nothing is read or
// written, the request is complete, and the arguments are still checked.
TEST(CommNone, EmptyBuffers) {
  LauncherEnv env;
  auto comm = make_communicator("none");
  EXPECT_NO_THROW(comm->allreduce_sum(static_cast<float*>(nullptr), 0));
  EXPECT_NO_THROW(comm->allreduce_sum(static_cast<double*>(nullptr), 0));
  EXPECT_NO_THROW(comm->allreduce_max(nullptr, 0));
  auto req = comm->iallreduce_sum(nullptr, 0);
  ASSERT_NE(req, nullptr);
  EXPECT_TRUE(req->test());
  EXPECT_NO_THROW(req->wait());
  EXPECT_NO_THROW(comm->reduce_scatter_sum(nullptr, nullptr, 0));
  EXPECT_NO_THROW(comm->all_gather(nullptr, nullptr, 0));
  EXPECT_NO_THROW(comm->broadcast(nullptr, 0, 0));
  // Real buffers with a count of 0 stay as they were.
  std::vector<float> send = {1.f, 2.f}, recv = {7.f, 8.f};
  comm->reduce_scatter_sum(send.data(), recv.data(), 0);
  EXPECT_EQ(recv, (std::vector<float>{7.f, 8.f}));
  comm->all_gather(send.data(), recv.data(), 0);
  EXPECT_EQ(recv, (std::vector<float>{7.f, 8.f}));
  comm->iallreduce_sum(recv.data(), 0)->wait();
  EXPECT_EQ(recv, (std::vector<float>{7.f, 8.f}));
  EXPECT_EQ(send, (std::vector<float>{1.f, 2.f}));
  // An empty broadcast still needs a root that exists.
  EXPECT_NE(error_of([&] { comm->broadcast(nullptr, 0, 1); }).find("broadcast from root 1"), std::string::npos);
  comm->barrier();
}

TEST(CommNone, NoPeers) {
  LauncherEnv env;
  auto comm = make_communicator("none");
  char b = 0;
  EXPECT_NE(error_of([&] { comm->broadcast(&b, 1, 1); }).find("broadcast from root 1"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->send(&b, 1, 0, 0); }).find("send to rank 0"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->recv(&b, 1, 1, 0); }).find("recv from rank 1"), std::string::npos);
}

TEST(CommNone, NoneInsideALauncherJobIsAnError) {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "1").set("OMPI_COMM_WORLD_SIZE", "2");
  const std::string msg = error_of([] { make_communicator("none"); });
  EXPECT_NE(msg.find("'none' in a job of 2 ranks"), std::string::npos) << msg;
  EXPECT_NE(msg.find("OMPI_COMM_WORLD_RANK=1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("OMPI_COMM_WORLD_SIZE=2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hint:"), std::string::npos) << msg;
  EXPECT_FALSE(mpi_initialized());
}

TEST(CommNone, UnknownKind) {
  LauncherEnv env;
  EXPECT_NE(error_of([] { make_communicator("nccl"); }).find("unknown communicator 'nccl'"), std::string::npos);
  EXPECT_NE(error_of([] { make_communicator(""); }).find("unknown communicator"), std::string::npos);
}

TEST(CommNone, MalformedLauncherVariablesFailEvenForAuto) {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "one").set("OMPI_COMM_WORLD_SIZE", "2");
  EXPECT_NE(error_of([] { make_communicator("auto"); }).find("OMPI_COMM_WORLD_RANK='one'"), std::string::npos);
}

// abort() exits with the code and keeps what stdio had buffered.
TEST(CommNoneDeathTest, AbortExitsWithCodeAfterFlushing) {
  LauncherEnv env;
  test::TempDir dir;
  const std::string out = dir / "stdout.txt";
  EXPECT_EXIT(
      {
        if (!std::freopen(out.c_str(), "w", stdout)) std::_Exit(99);
        std::printf("buffered, no newline");
        make_communicator("none")->abort(7);
      },
      testing::ExitedWithCode(7), "");
  EXPECT_EQ(test::read_file(out), "buffered, no newline");
}

}  // namespace
}  // namespace qisa
