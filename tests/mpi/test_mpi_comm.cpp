// The MPI communicator under mpiexec (np 1, 2 and 4; see tests/CMakeLists.txt). Its own
// main(): MPI is initialised through the communicator, ranks other than 0 print only their
// failures (to stderr), and the exit code is the worst over the ranks.
//
// Every collective runs twice: on a plain communicator and on one that moves at most 5
// elements per MPI call, so the split path for buffers over INT_MAX elements runs on small
// buffers. Checks that can differ between ranks go through agree() before the next
// collective, so a failure on one rank never leaves the others waiting.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "expect_error.h"
#include "test_util.h"
#include "trainer/comm/communicator.h"

namespace qisa {
namespace {

using test::error_of;

constexpr size_t kSplitCount = 5;  // max elements per MPI call of the split communicator

struct Comms {
  Communicator* plain = nullptr;
  Communicator* split = nullptr;
};
Comms& comms() {
  static Comms c;  // set once by main before the tests run
  return c;
}
Communicator& plain() { return *comms().plain; }

// True on every rank iff `ok` on every rank.
bool agree(bool ok) {
  int64_t bad = ok ? 0 : 1;
  plain().allreduce_max(&bad, 1);
  return bad == 0;
}

// True on every rank iff every rank holds the same bytes as rank 0.
bool same_on_all_ranks(const void* data, size_t bytes) {
  std::vector<char> root(static_cast<const char*>(data), static_cast<const char*>(data) + bytes);
  plain().broadcast(root.data(), bytes, 0);
  return agree(bytes == 0 || std::memcmp(root.data(), data, bytes) == 0);
}

// One seed for all ranks (fresh per run unless QISA_TEST_SEED pins it).
uint64_t shared_seed() {
  uint64_t s = test::fresh_seed();
  plain().broadcast(&s, sizeof s, 0);
  return s;
}

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Rank r's element i: signs and exponents (2^-20 .. 2^20) vary, so the order of a sum
// changes its bits and a rank that summed differently would show.
double value(uint64_t seed, int r, size_t i) {
  const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(r) * 0x100000001B3ull + i));
  const double mant = 0.5 + static_cast<double>(h >> 40) * 0x1p-25;  // 24 bits: exact in float
  const int e = static_cast<int>((h >> 8) % 41) - 20;
  return std::ldexp((h & 1) ? -mant : mant, e);
}

// Float sums of p terms in any order are within (p-1)*2^-24*sum|x| of the exact sum.
template <typename T>
void expect_sums(const std::vector<T>& got, uint64_t seed, int p, size_t first_index = 0) {
  const double eps = std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double exact = 0, mag = 0;
    for (int r = 0; r < p; ++r) {
      const double v = static_cast<double>(static_cast<T>(value(seed, r, first_index + i)));
      exact += v;
      mag += std::abs(v);
    }
    if (std::abs(static_cast<double>(got[i]) - exact) > (p * eps) * mag + 1e-300 && bad++ < 5)
      ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << exact;
  }
  EXPECT_EQ(bad, 0u);
}

template <typename T>
std::vector<T> inputs(uint64_t seed, int r, size_t n, size_t first_index = 0) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(value(seed, r, first_index + i));
  return v;
}

// ---------------------------------------------------------------- fixtures
class MpiComm : public testing::TestWithParam<bool> {  // param: split communicator
 protected:
  Communicator& comm() { return GetParam() ? *comms().split : plain(); }
  int rank() { return comm().rank(); }
  int p() { return comm().size(); }
  // Buffer sizes: odd ones, one not divisible by the world, and (plain only) sizes past
  // Open MPI's switch from recursive doubling to ring algorithms.
  std::vector<size_t> sizes() {
    std::vector<size_t> s = {0, 1, 3, kSplitCount, kSplitCount + 1, 2 * static_cast<size_t>(p()) + 1, 1001};
    if (!GetParam()) s.insert(s.end(), {12345, 262147});
    return s;
  }
};

INSTANTIATE_TEST_SUITE_P(Comm, MpiComm, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Split" : "Plain"; });

TEST(MpiWorld, MatchesLauncher) {
  const WorldInfo w = detect_world();
  EXPECT_EQ(plain().name(), "mpi");
  EXPECT_EQ(plain().size(), w.size);
  EXPECT_EQ(plain().rank(), w.rank);
  EXPECT_EQ(w.launcher, "mpirun");
  EXPECT_EQ(plain().local_rank(), w.local_rank);  // from MPI (shared-memory split) vs the launcher
  EXPECT_TRUE(agree(true));
}

// Under a launcher with more than one rank, auto is mpi; with one rank it never starts MPI
// (here MPI is already up, so it only shows that none is chosen).
TEST(MpiWorld, AutoFollowsTheLauncher) {
  auto c = make_communicator("auto");
  EXPECT_EQ(c->name(), plain().size() > 1 ? "mpi" : "none");
  EXPECT_EQ(c->size(), plain().size());
  EXPECT_EQ(c->rank(), plain().rank());
  c->barrier();
}

TEST_P(MpiComm, AllreduceSumFloatIsAccurateAndBitIdentical) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t n : sizes()) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> x = inputs<float>(seed, rank(), n);
    comm().allreduce_sum(x.data(), n);
    expect_sums(x, seed, p());
    EXPECT_TRUE(same_on_all_ranks(x.data(), n * sizeof(float)));
  }
}

TEST_P(MpiComm, AllreduceAvgIsTheSumOverTheWorldSize) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t n : sizes()) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> avg = inputs<float>(seed, rank(), n), sum = avg;
    comm().allreduce_avg(avg.data(), n);
    comm().allreduce_sum(sum.data(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(avg[i], sum[i] * (1.0f / static_cast<float>(p()))) << i;
    EXPECT_TRUE(same_on_all_ranks(avg.data(), n * sizeof(float)));
  }
}

TEST_P(MpiComm, AllreduceSumDoubleIsAccurateAndBitIdentical) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t n : sizes()) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<double> x = inputs<double>(seed, rank(), n);
    comm().allreduce_sum(x.data(), n);
    expect_sums(x, seed, p());
    EXPECT_TRUE(same_on_all_ranks(x.data(), n * sizeof(double)));
  }
}

TEST_P(MpiComm, AllreduceMaxInt64) {
  const uint64_t seed = shared_seed();
  auto v = [&](int r, size_t i) -> int64_t {
    if (i % 3 == 0) return INT64_MIN + r;                         // extremes
    return static_cast<int64_t>(mix(seed + i * 31 + r) >> 1) - (int64_t{1} << 61);  // beyond 2^53
  };
  for (size_t n : sizes()) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<int64_t> x(n), want(n, INT64_MIN);
    for (size_t i = 0; i < n; ++i) {
      x[i] = v(rank(), i);
      for (int r = 0; r < p(); ++r) want[i] = std::max(want[i], v(r, i));
    }
    comm().allreduce_max(x.data(), n);
    EXPECT_EQ(x, want);
  }
}

TEST_P(MpiComm, IallreduceOverlapsAndCompletes) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const size_t na = 1001, nb = GetParam() ? 37 : 262147;
  // Two buckets in flight at once, as the trainer hands them over; a different index range
  // for each so a mix-up shows.
  std::vector<float> a = inputs<float>(seed, rank(), na), b = inputs<float>(seed, rank(), nb, na);
  auto ra = comm().iallreduce_sum(a.data(), na);
  auto rb = comm().iallreduce_sum(b.data(), nb);
  while (!rb->test()) {
  }
  EXPECT_TRUE(rb->test());
  rb->wait();  // returns at once
  ra->wait();
  ra->wait();
  expect_sums(a, seed, p());
  expect_sums(b, seed, p(), na);
  EXPECT_TRUE(same_on_all_ranks(a.data(), na * sizeof(float)));
  EXPECT_TRUE(same_on_all_ranks(b.data(), nb * sizeof(float)));

  // A request destroyed unwaited completes first (MPI must not write into a freed buffer).
  std::vector<float> c = inputs<float>(seed, rank(), 13);
  comm().iallreduce_sum(c.data(), c.size()).reset();
  expect_sums(c, seed, p());
  comm().iallreduce_sum(nullptr, 0)->wait();
}

TEST_P(MpiComm, ReduceScatterSum) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t count : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{1000}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    const std::vector<float> send = inputs<float>(seed, rank(), p() * count);
    std::vector<float> recv(count, -1.f);
    comm().reduce_scatter_sum(send.data(), recv.data(), count);
    expect_sums(recv, seed, p(), rank() * count);

    // Output aliasing the input (our own block of it): same numbers.
    std::vector<float> inplace = send;
    comm().reduce_scatter_sum(inplace.data(), inplace.data() + rank() * count, count);
    if (count > 0) {  // memcmp of an empty vector's data() (null) is undefined behaviour
      EXPECT_EQ(0, std::memcmp(inplace.data() + rank() * count, recv.data(), count * sizeof(float)));
    }
  }
}

TEST_P(MpiComm, AllGather) {
  for (size_t count : {size_t{0}, size_t{1}, size_t{5}, size_t{333}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    std::vector<float> send(count), want(p() * count);
    for (size_t i = 0; i < count; ++i) send[i] = static_cast<float>(rank() * 100000 + i);
    for (int r = 0; r < p(); ++r)
      for (size_t i = 0; i < count; ++i) want[r * count + i] = static_cast<float>(r * 100000 + i);
    std::vector<float> recv(p() * count, -1.f);
    comm().all_gather(send.data(), recv.data(), count);
    EXPECT_EQ(recv, want);

    // In place: our shard already sits in the full buffer (ZeRO-1 parameters).
    std::vector<float> full(p() * count, -1.f);
    std::copy(send.begin(), send.end(), full.begin() + rank() * count);
    comm().all_gather(full.data() + rank() * count, full.data(), count);
    EXPECT_EQ(full, want);
  }
}

// reduce_scatter then all_gather is an allreduce. Integer-valued floats make every order of
// summation exact, so the two must agree bit for bit; n is padded up to a multiple of the
// world, as the trainer pads its flat gradient buffer.
TEST_P(MpiComm, ReduceScatterAllGatherRoundTrip) {
  for (size_t n : {size_t{1}, size_t{1001}, size_t{4099}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const size_t count = (n + p() - 1) / p();
    std::vector<float> x(p() * count, 0.f);
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>(mix(i * 7 + rank()) % 2001) - 1000);
    std::vector<float> reduced = x;
    comm().allreduce_sum(reduced.data(), n);

    std::vector<float> shard(count), full(p() * count);
    comm().reduce_scatter_sum(x.data(), shard.data(), count);
    comm().all_gather(shard.data(), full.data(), count);
    EXPECT_EQ(0, std::memcmp(full.data(), reduced.data(), n * sizeof(float)));
    for (size_t i = n; i < full.size(); ++i) EXPECT_EQ(full[i], 0.f) << "padding " << i;
  }
}

TEST_P(MpiComm, BroadcastFromEveryRoot) {
  std::vector<size_t> lengths = {0, 1, 13, 1001};
  if (!GetParam()) lengths.push_back(100001);
  for (int root : {p() - 1, 0, p() / 2}) {  // a non-zero root first (when there is one)
    for (size_t bytes : lengths) {
      SCOPED_TRACE("root " + std::to_string(root) + " bytes " + std::to_string(bytes));
      std::vector<unsigned char> buf(bytes), want(bytes);
      for (size_t i = 0; i < bytes; ++i) want[i] = static_cast<unsigned char>(mix(i + 1000 * root));
      if (rank() == root) buf = want;
      else std::fill(buf.begin(), buf.end(), 0xAB);
      comm().broadcast(buf.data(), bytes, root);
      EXPECT_TRUE(agree(buf == want));
    }
  }
}

TEST_P(MpiComm, SendRecv) {
  if (p() == 1) GTEST_SKIP() << "no peer at np 1";
  std::vector<size_t> lengths = {1, 13, 101};
  if (!GetParam()) lengths.push_back(70001);
  auto pattern = [](int from, size_t bytes) {
    std::vector<unsigned char> v(bytes);
    for (size_t i = 0; i < bytes; ++i) v[i] = static_cast<unsigned char>(mix(i * 3 + from));
    return v;
  };
  for (size_t bytes : lengths) {
    SCOPED_TRACE("bytes " + std::to_string(bytes));
    // A ring: even ranks send first and odd ranks receive first, so blocking calls pair up.
    const int next = (rank() + 1) % p(), prev = (rank() + p() - 1) % p();
    const std::vector<unsigned char> mine = pattern(rank(), bytes);
    std::vector<unsigned char> got(bytes);
    if (rank() % 2 == 0) {
      comm().send(mine.data(), bytes, next, 7);
      comm().recv(got.data(), bytes, prev, 7);
    } else {
      comm().recv(got.data(), bytes, prev, 7);
      comm().send(mine.data(), bytes, next, 7);
    }
    EXPECT_TRUE(agree(got == pattern(prev, bytes)));

    // A bounded-memory gather to rank 0, one peer at a time (the checkpoint pattern).
    if (rank() == 0) {
      bool ok = true;
      for (int r = 1; r < p(); ++r) {
        comm().recv(got.data(), bytes, r, 100 + r);
        ok = ok && got == pattern(r, bytes);
      }
      EXPECT_TRUE(agree(ok));
    } else {
      comm().send(mine.data(), bytes, 0, 100 + rank());
      EXPECT_TRUE(agree(true));
    }
  }
}

// Local mistakes are caught before MPI sees them; what MPI rejects comes back as a
// qisa::Error naming the call and MPI's error string.
TEST(MpiErrors, BecomeQisaErrors) {
  Communicator& c = plain();
  char b[8] = {};
  EXPECT_NE(error_of([&] { c.broadcast(b, 1, c.size()); }).find("is not a rank of"), std::string::npos);
  EXPECT_NE(error_of([&] { c.send(b, 1, -1, 0); }).find("send destination -1"), std::string::npos);
  EXPECT_NE(error_of([&] { c.send(b, 1, c.rank(), 0); }).find("is this rank itself"), std::string::npos);
  if (c.size() == 1) return;
  const int peer = c.rank() ^ 1;  // pairs (0,1), (2,3)
  const std::string tag = error_of([&] { c.send(b, 1, peer, -5); });
  EXPECT_NE(tag.find("MPI_Send failed: MPI_ERR_TAG"), std::string::npos) << tag;
  EXPECT_NE(tag.find("hint:"), std::string::npos) << tag;
  // A message shorter than the receiver expects, then a longer one (truncated).
  if (c.rank() % 2 == 0) {
    c.send(b, 3, peer, 1);
    c.send(b, 5, peer, 2);
    EXPECT_TRUE(agree(true));
  } else {
    const std::string shorter = error_of([&] { c.recv(b, 4, peer, 1); });
    const std::string longer = error_of([&] { c.recv(b, 4, peer, 2); });
    EXPECT_NE(shorter.find("got 3 bytes where 4 were expected"), std::string::npos) << shorter;
    EXPECT_NE(longer.find("MPI_Recv failed: MPI_ERR_TRUNCATE"), std::string::npos) << longer;
    EXPECT_TRUE(agree(true));
  }
  c.barrier();  // still usable afterwards
}

// Ranks other than 0: their failures, one line each, on stderr.
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                   r.summary());
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace qisa

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  std::unique_ptr<qisa::Communicator> comm, split;
  try {
    comm = qisa::make_communicator("mpi");
    split = qisa::make_communicator("mpi", qisa::CommOptions{qisa::kSplitCount});
  } catch (const qisa::Error& e) {
    std::fprintf(stderr, "test_mpi_comm: %s\n", e.message().c_str());
    if (comm) comm->abort(1);
    return 1;
  }
  qisa::comms() = {comm.get(), split.get()};
  if (comm->rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new qisa::RankFailurePrinter(comm->rank()));
    if (!std::freopen("/dev/null", "w", stdout)) return 1;
  }
  int64_t worst = RUN_ALL_TESTS();
  try {
    comm->allreduce_max(&worst, 1);
  } catch (const qisa::Error& e) {
    std::fprintf(stderr, "test_mpi_comm: %s\n", e.message().c_str());
    comm->abort(1);
  }
  if (comm->rank() == 0 && worst != 0) std::printf("test_mpi_comm: a test failed on some rank (see above)\n");
  split.reset();
  comm.reset();  // MPI_Finalize
  return worst != 0 ? 1 : 0;
}
