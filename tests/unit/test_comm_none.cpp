// The none communicator, the none collectives, and make_communicator's and make_collectives'
// choices, in one process that never initialises MPI (test_comm_singleton covers the MPI
// communicator and collectives without a launcher).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "expect_error.h"
#include "fake_device_backend.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/error.h"
#include "test_comm_env.h"
#include "test_util.h"
#include "trainer/comm/collectives.h"
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
  auto be = make_cpu_backend(1);
  auto comm = make_communicator("auto");
  EXPECT_EQ(comm->name(), "none");
  auto coll = make_collectives(*comm, *be);
  EXPECT_EQ(coll->name(), "none");
  std::vector<float> x = {1.5f, -2.f};
  coll->allreduce_sum(x.data(), x.size(), DType::f32, nullptr);
  coll->iallreduce_sum(x.data(), x.size(), DType::f32, nullptr)->wait();
  double d = 3;
  comm->allreduce_sum(&d, 1);
  comm->barrier();
  coll.reset();
  comm.reset();
  EXPECT_FALSE(mpi_initialized());
}

TEST(CommNone, AutoUnderMpirunWithOneRankIsNone) {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_RANK", "0").set("OMPI_COMM_WORLD_SIZE", "1");
  EXPECT_EQ(make_communicator("auto")->name(), "none");
  EXPECT_FALSE(mpi_initialized());
}

TEST(CommNone, HostCalls) {
  LauncherEnv env;
  auto comm = make_communicator("none");
  EXPECT_EQ(comm->name(), "none");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->local_rank(), 0);

  std::vector<double> d = {1e300, -2.5, -0.0};
  comm->allreduce_sum(d.data(), d.size());
  EXPECT_EQ(d, (std::vector<double>{1e300, -2.5, -0.0}));
  EXPECT_TRUE(std::signbit(d[2]));
  std::vector<int64_t> m = {INT64_MIN, 7};
  comm->allreduce_max(m.data(), m.size());
  EXPECT_EQ(m, (std::vector<int64_t>{INT64_MIN, 7}));

  char bytes[4] = {'a', 'b', 'c', 'd'};
  comm->broadcast(bytes, sizeof bytes, 0);
  EXPECT_EQ(std::string(bytes, 4), "abcd");
  std::string s = "kept";
  broadcast_string(*comm, s);
  EXPECT_EQ(s, "kept");
  comm->barrier();
}

// Communicator's contract for empty buffers: null pointers are fine, nothing is read or
// written, and the arguments are still checked.
TEST(CommNone, HostEmptyBuffers) {
  LauncherEnv env;
  auto comm = make_communicator("none");
  EXPECT_NO_THROW(comm->allreduce_sum(nullptr, 0));
  EXPECT_NO_THROW(comm->allreduce_max(nullptr, 0));
  EXPECT_NO_THROW(comm->broadcast(nullptr, 0, 0));
  // An empty broadcast still needs a root that exists.
  EXPECT_NE(error_of([&] { comm->broadcast(nullptr, 0, 1); }).find("broadcast from root 1"), std::string::npos);
  comm->barrier();
}

// The none collectives on host memory (cpu) and on memory the host must not address (the
// fake device: a copy done on the host instead of by the backend would scramble the values).
class NoneColl : public testing::TestWithParam<bool> {  // param: fake device
 protected:
  void SetUp() override {
    comm_ = make_communicator("none");
    coll_ = make_collectives(*comm_, be());
  }
  Backend& be() { return GetParam() ? static_cast<Backend&>(device_) : *cpu_; }
  Collectives& coll() { return *coll_; }
  template <typename T>
  Buffer<T> on_backend(const std::vector<T>& v) {
    Buffer<T> b(be(), v.size());
    if (!v.empty()) be().upload(b.get(), v.data(), b.bytes());
    return b;
  }
  template <typename T>
  std::vector<T> to_host(const T* p, size_t n) {
    std::vector<T> v(n);
    if (n > 0) be().download(v.data(), p, n * sizeof(T));
    return v;
  }
  template <typename T>
  std::vector<T> to_host(const Buffer<T>& b) {
    return to_host(b.get(), b.size());
  }

  LauncherEnv env_;
  std::unique_ptr<Backend> cpu_ = make_cpu_backend(1);
  test::FakeDeviceBackend device_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Collectives> coll_;
};

INSTANTIATE_TEST_SUITE_P(None, NoneColl, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Device" : "Host"; });

std::vector<uint16_t> bits(const std::vector<bf16>& v) {
  std::vector<uint16_t> b;
  for (bf16 x : v) b.push_back(x.bits);
  return b;
}

TEST_P(NoneColl, SumsOverOneRankLeaveTheBufferAsItWas) {
  EXPECT_EQ(coll().name(), "none");
  EXPECT_EQ(coll().rank(), 0);
  EXPECT_EQ(coll().size(), 1);
  const std::vector<float> f = {1.f, -0.f, 3.25f, std::nanf("")};
  Buffer<float> fb = on_backend(f);
  coll().allreduce_sum(fb.get(), f.size(), DType::f32, nullptr);
  auto req = coll().iallreduce_sum(fb.get(), f.size(), DType::f32, nullptr);
  EXPECT_TRUE(req->test());
  req->wait();
  const std::vector<float> got = to_host(fb);
  EXPECT_EQ(0, std::memcmp(got.data(), f.data(), f.size() * sizeof(float)));  // bits: -0 and NaN too
  // bf16: the bits themselves, not re-rounded (a signalling NaN stays one).
  const std::vector<bf16> h = {bf16{0x3F81}, bf16{0x8000}, bf16{0x7F81}, bf16{0x0001}};
  Buffer<bf16> hb = on_backend(h);
  coll().allreduce_sum(hb.get(), h.size(), DType::bf16, nullptr);
  coll().iallreduce_sum(hb.get(), h.size(), DType::bf16, nullptr)->wait();
  EXPECT_EQ(bits(to_host(hb)), bits(h));
}

TEST_P(NoneColl, ReduceScatterAndAllGatherCopy) {
  const std::vector<float> f = {1.f, -0.f, 3.25f};
  Buffer<float> send = on_backend(f), out = on_backend(std::vector<float>(3, 9.f));
  coll().reduce_scatter_sum(send.get(), out.get(), 3, DType::f32, nullptr);
  EXPECT_EQ(to_host(out), f);
  Buffer<float> gathered = on_backend(std::vector<float>(3, 9.f));
  coll().all_gather(send.get(), gathered.get(), 3, DType::f32, nullptr);
  EXPECT_EQ(to_host(gathered), f);
  coll().all_gather(send.get(), send.get(), 3, DType::f32, nullptr);  // in place (the ZeRO-1 call shape)
  coll().reduce_scatter_sum(send.get(), send.get(), 3, DType::f32, nullptr);
  EXPECT_EQ(to_host(send), f);

  const std::vector<bf16> h = {bf16{0x7FC1}, bf16{0x8000}, bf16{0x4049}};
  Buffer<bf16> hs = on_backend(h), hr = on_backend(std::vector<bf16>(3, bf16{0}));
  coll().all_gather(hs.get(), hr.get(), 3, DType::bf16, nullptr);
  EXPECT_EQ(bits(to_host(hr)), bits(h));
  Buffer<bf16> hr2 = on_backend(std::vector<bf16>(3, bf16{0}));
  coll().reduce_scatter_sum(hs.get(), hr2.get(), 3, DType::bf16, nullptr);
  EXPECT_EQ(bits(to_host(hr2)), bits(h));
}

// Collectives' contract for empty buffers: null pointers are fine, nothing is read or
// written, the request is complete.
TEST_P(NoneColl, EmptyBuffers) {
  for (DType t : {DType::f32, DType::bf16}) {
    EXPECT_NO_THROW(coll().allreduce_sum(nullptr, 0, t, nullptr));
    auto req = coll().iallreduce_sum(nullptr, 0, t, nullptr);
    ASSERT_NE(req, nullptr);
    EXPECT_TRUE(req->test());
    EXPECT_NO_THROW(req->wait());
    EXPECT_NO_THROW(coll().reduce_scatter_sum(nullptr, nullptr, 0, t, nullptr));
    EXPECT_NO_THROW(coll().all_gather(nullptr, nullptr, 0, t, nullptr));
  }
  // Real buffers with a count of 0 stay as they were.
  Buffer<float> send = on_backend(std::vector<float>{1.f, 2.f}), recv = on_backend(std::vector<float>{7.f, 8.f});
  coll().reduce_scatter_sum(send.get(), recv.get(), 0, DType::f32, nullptr);
  coll().all_gather(send.get(), recv.get(), 0, DType::f32, nullptr);
  coll().iallreduce_sum(recv.get(), 0, DType::f32, nullptr)->wait();
  EXPECT_EQ(to_host(recv), (std::vector<float>{7.f, 8.f}));
  EXPECT_EQ(to_host(send), (std::vector<float>{1.f, 2.f}));
}

// make_collectives follows the host communicator; the MPI collectives refuse another one
// (without starting MPI).
TEST(CommNone, CollectivesFollowTheHostCommunicator) {
  LauncherEnv env;
  auto be = make_cpu_backend(1);
  auto none = make_communicator("none");
  const std::string msg = error_of([&] { detail::make_mpi_collectives(*none, *be); });
  EXPECT_NE(msg.find("the MPI collectives need the MPI communicator; this one is 'none'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hint:"), std::string::npos) << msg;

  // A communicator of another kind (a test double named "loopback").
  class Loopback final : public Communicator {
   public:
    std::string name() const override { return "loopback"; }
    int rank() const override { return 0; }
    int size() const override { return 1; }
    int local_rank() const override { return 0; }
    void allreduce_sum(double*, size_t) override {}
    void allreduce_max(int64_t*, size_t) override {}
    void broadcast(void*, size_t, int) override {}
    void send(const void*, size_t, int, int) override {}
    void recv(void*, size_t, int, int) override {}
    void barrier() override {}
    [[noreturn]] void abort(int code) noexcept override { std::_Exit(code); }
  } loopback;
  const std::string other = error_of([&] { make_collectives(loopback, *be); });
  EXPECT_NE(other.find("no collectives for the 'loopback' communicator"), std::string::npos) << other;
  EXPECT_FALSE(mpi_initialized());
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
