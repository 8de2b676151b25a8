// The MPI communicator and the MPI collectives under mpiexec (np 1, 2 and 4; see
// tests/CMakeLists.txt). Its own main(): MPI is initialised through the communicator, ranks
// other than 0 print only their failures (to stderr), and the exit code is the worst over the
// ranks.
//
// Every call runs on a plain communicator and on one that moves at most 5 elements per MPI
// call (the collectives inherit it), so the split path for buffers over INT_MAX elements runs
// on small buffers. Every collective also runs on host memory (the CPU backend) and staged
// (a fake device backend whose memory the host must not address: test::FakeDeviceBackend).
// Checks that can differ between ranks go through agree() before the next collective, so a
// failure on one rank never leaves the others waiting.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "expect_error.h"
#include "fake_device_backend.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/error.h"
#include "test_util.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"

namespace qisa {
namespace {

using test::error_of;

constexpr size_t kSplitCount = 5;  // max elements per MPI call of the split communicator

struct Comms {
  Communicator* plain = nullptr;
  Communicator* split = nullptr;
  Backend* cpu = nullptr;
  test::FakeDeviceBackend* device = nullptr;
  Collectives* coll[2][2] = {};  // [split][staged]: made from split or plain, on device or cpu
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

// ---------------------------------------------------------------- bf16 values
// Rank r's bf16 element i: mostly value() rounded to bf16, and three patterns that pin the
// contract (the first two matter from np 3 on):
//   i % 16 == 1: rank 0 gives 1, the others 2^-8 (half an ulp of 1). The fp32 sum rounded once
//                is 1 + 2^-7 at np 3; rounding after each addition would give 1 (ties to even).
//   i % 16 == 2: ranks 0, 1, 2 give 2^24, 1, -2^24 (the others +0). In rank order the fp32 sum
//                is (2^24 + 1) - 2^24 = 0; in the order 1, -2^24, 2^24 it would be 1.
//   i % 16 == 3: -0 everywhere: the sum starts from rank 0's value, so it stays -0.
bf16 bvalue(uint64_t seed, int r, size_t i) {
  switch (i % 16) {
    case 1: return float_to_bf16(r == 0 ? 1.0f : 0x1p-8f);
    case 2: return float_to_bf16(r == 0 ? 0x1p24f : r == 1 ? 1.0f : r == 2 ? -0x1p24f : 0.0f);
    case 3: return float_to_bf16(-0.0f);
    default: return float_to_bf16(static_cast<float>(value(seed, r, i)));
  }
}

std::vector<bf16> binputs(uint64_t seed, int r, size_t n, size_t first_index = 0) {
  std::vector<bf16> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = bvalue(seed, r, first_index + i);
  return v;
}

std::vector<uint16_t> bits(const std::vector<bf16>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = v[i].bits;
  return b;
}

// The contract's bf16 sum of element i before rounding: fp32, in rank order, from rank 0's value.
float rank_order_sum(uint64_t seed, int p, size_t i) {
  float acc = bf16_to_float(bvalue(seed, 0, i));
  for (int r = 1; r < p; ++r) acc += bf16_to_float(bvalue(seed, r, i));
  return acc;
}

// got[i] must be the contract's sum of element first_index + i rounded once, bit for bit.
// Long buffers at np >= 2 must have needed rounding somewhere, or the test could not tell.
void expect_bf16_sums(const std::vector<bf16>& got, uint64_t seed, int p, size_t first_index = 0) {
  size_t bad = 0, rounded = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const size_t e = first_index + i;
    const float sum = rank_order_sum(seed, p, e);
    const bf16 want = float_to_bf16(sum);
    rounded += bf16_to_float(want) != sum;
    if (got[i].bits != want.bits && bad++ < 5)
      ADD_FAILURE() << "element " << e << ": got bits 0x" << std::hex << got[i].bits << ", want 0x" << want.bits
                    << std::dec << " (fp32 sum " << sum << ")";
    // The patterns, against values worked out by hand.
    if (e % 16 == 3) {
      EXPECT_EQ(got[i].bits, 0x8000) << "-0 summed to +0 at " << e;
    }
    if (p == 3 && e % 16 == 1) {
      EXPECT_EQ(got[i].bits, float_to_bf16(1.0f + 0x1p-7f).bits) << "rounded twice at " << e;
    }
    if (p == 3 && e % 16 == 2) {
      EXPECT_EQ(got[i].bits, 0x0000) << "not in rank order at " << e;
    }
  }
  EXPECT_EQ(bad, 0u);
  if (p >= 2 && got.size() >= 64) {
    EXPECT_GT(rounded, 0u) << "no sum needed rounding";
  }
}

// Stands for the event the trainer records after the backward kernels that write a gradient
// bucket (a cudaEvent_t on a GPU): until the host has waited on it, those kernels may still be
// running and the bucket holds stale values. Here the buffer holds NaN until wait(), which is
// when the "kernels" finish: it writes the real values (through the backend) and counts the
// waits. A collective that read its input before waiting would send the NaNs.
class LateWriteEvent final : public Event {
 public:
  LateWriteEvent(Backend& be, void* dst, std::vector<std::byte> values) : be_(be), dst_(dst), values_(std::move(values)) {}
  void wait() override {
    ++waits_;
    if (!written_ && !values_.empty()) be_.upload(dst_, values_.data(), values_.size());
    written_ = true;
  }
  bool query() override { return written_; }
  int waits() const { return waits_; }

 private:
  Backend& be_;
  void* dst_;
  std::vector<std::byte> values_;
  bool written_ = false;
  int waits_ = 0;
};

template <typename T>
std::vector<std::byte> as_bytes(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// ---------------------------------------------------------------- fixtures
class MpiComm : public testing::TestWithParam<bool> {  // param: split communicator
 protected:
  Communicator& comm() { return GetParam() ? *comms().split : plain(); }
  int rank() { return comm().rank(); }
  int p() { return comm().size(); }
  std::vector<size_t> sizes() {
    std::vector<size_t> s = {0, 1, 3, kSplitCount, kSplitCount + 1, 2 * static_cast<size_t>(p()) + 1, 1001};
    if (!GetParam()) s.insert(s.end(), {12345, 262147});
    return s;
  }
};

INSTANTIATE_TEST_SUITE_P(Comm, MpiComm, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Split" : "Plain"; });

// Collectives: made from the plain or the split communicator, on the CPU backend (host
// memory) or staged (the fake device backend).
class MpiColl : public testing::TestWithParam<std::tuple<bool, bool>> {  // split, staged
 protected:
  bool split() const { return std::get<0>(GetParam()); }
  bool staged() const { return std::get<1>(GetParam()); }
  Collectives& coll() { return *comms().coll[split()][staged()]; }
  Backend& be() { return staged() ? static_cast<Backend&>(*comms().device) : *comms().cpu; }
  int rank() { return coll().rank(); }
  int p() { return coll().size(); }
  // Buffer sizes: odd ones, one not divisible by the world, and (plain only) sizes past
  // Open MPI's switch from recursive doubling to ring algorithms.
  std::vector<size_t> sizes() {
    std::vector<size_t> s = {0, 1, 3, kSplitCount, kSplitCount + 1, 2 * static_cast<size_t>(p()) + 1, 1001};
    if (!split()) s.insert(s.end(), {12345, 262147});
    return s;
  }

  // A backend buffer holding v.
  template <typename T>
  Buffer<T> on_backend(const std::vector<T>& v) {
    Buffer<T> b(be(), v.size());
    if (!v.empty()) be().upload(b.get(), v.data(), b.bytes());
    return b;
  }
  // n elements of backend memory at ptr, read back.
  template <typename T>
  std::vector<T> to_host(const T* ptr, size_t n) {
    std::vector<T> v(n);
    if (n > 0) be().download(v.data(), ptr, n * sizeof(T));
    return v;
  }
  template <typename T>
  std::vector<T> to_host(const Buffer<T>& b) {
    return to_host(b.get(), b.size());
  }
};

INSTANTIATE_TEST_SUITE_P(Coll, MpiColl, testing::Combine(testing::Bool(), testing::Bool()),
                         [](const testing::TestParamInfo<std::tuple<bool, bool>>& i) {
                           return std::string(std::get<0>(i.param) ? "Split" : "Plain") +
                                  (std::get<1>(i.param) ? "Staged" : "Host");
                         });

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
  auto coll = make_collectives(*c, *comms().cpu);
  EXPECT_EQ(coll->name(), c->name());
  EXPECT_EQ(coll->size(), c->size());
  EXPECT_EQ(coll->rank(), c->rank());
  coll.reset();  // before its communicator
  c->barrier();
}

// ---------------------------------------------------------------- host communicator
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

// ---------------------------------------------------------------- collectives, fp32
TEST_P(MpiColl, IsOverTheCommunicatorsRanks) {
  EXPECT_EQ(coll().name(), "mpi");
  EXPECT_EQ(coll().rank(), plain().rank());
  EXPECT_EQ(coll().size(), plain().size());
  EXPECT_EQ(be().host_addressable(), !staged());
}

TEST_P(MpiColl, AllreduceSumF32IsAccurateAndBitIdentical) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t n : sizes()) {
    SCOPED_TRACE("n " + std::to_string(n));
    Buffer<float> buf = on_backend(inputs<float>(seed, rank(), n));
    coll().allreduce_sum(buf.get(), n, DType::f32, nullptr);
    const std::vector<float> x = to_host(buf);
    expect_sums(x, seed, p());
    EXPECT_TRUE(same_on_all_ranks(x.data(), n * sizeof(float)));
  }
}

TEST_P(MpiColl, IallreduceOverlapsAndCompletes) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const size_t na = 1001, nb = split() ? 37 : 262147;
  // Two buckets in flight at once, as the trainer hands them over; a different index range
  // for each so a mix-up shows.
  Buffer<float> a = on_backend(inputs<float>(seed, rank(), na)), b = on_backend(inputs<float>(seed, rank(), nb, na));
  auto ra = coll().iallreduce_sum(a.get(), na, DType::f32, nullptr);
  auto rb = coll().iallreduce_sum(b.get(), nb, DType::f32, nullptr);
  while (!rb->test()) {
  }
  EXPECT_TRUE(rb->test());
  rb->wait();  // returns at once
  ra->wait();
  ra->wait();
  const std::vector<float> ha = to_host(a), hb = to_host(b);
  expect_sums(ha, seed, p());
  expect_sums(hb, seed, p(), na);
  EXPECT_TRUE(same_on_all_ranks(ha.data(), na * sizeof(float)));
  EXPECT_TRUE(same_on_all_ranks(hb.data(), nb * sizeof(float)));

  // A request destroyed unwaited completes first (MPI must not write into a freed buffer), and
  // its result is in the buffer (staged: uploaded).
  Buffer<float> c = on_backend(inputs<float>(seed, rank(), 13));
  coll().iallreduce_sum(c.get(), c.size(), DType::f32, nullptr).reset();
  expect_sums(to_host(c), seed, p());
  EXPECT_TRUE(coll().iallreduce_sum(nullptr, 0, DType::f32, nullptr)->test());
}

TEST_P(MpiColl, ReduceScatterSumF32) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t count : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{1000}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    const std::vector<float> send = inputs<float>(seed, rank(), p() * count);
    Buffer<float> sendb = on_backend(send), recvb = on_backend(std::vector<float>(count, -1.f));
    coll().reduce_scatter_sum(sendb.get(), recvb.get(), count, DType::f32, nullptr);
    const std::vector<float> recv = to_host(recvb);
    expect_sums(recv, seed, p(), rank() * count);
    EXPECT_EQ(to_host(sendb), send);  // the input is left as it was

    // Output inside the input (our own block of it): the same numbers.
    Buffer<float> inplace = on_backend(send);
    float* mine = inplace.get() + rank() * count;
    coll().reduce_scatter_sum(inplace.get(), mine, count, DType::f32, nullptr);
    EXPECT_EQ(to_host(mine, count), recv);
  }
}

TEST_P(MpiColl, AllGatherF32) {
  for (size_t count : {size_t{0}, size_t{1}, size_t{5}, size_t{333}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    std::vector<float> send(count), want(p() * count);
    for (size_t i = 0; i < count; ++i) send[i] = static_cast<float>(rank() * 100000 + i);
    for (int r = 0; r < p(); ++r)
      for (size_t i = 0; i < count; ++i) want[r * count + i] = static_cast<float>(r * 100000 + i);
    Buffer<float> sendb = on_backend(send), recvb = on_backend(std::vector<float>(p() * count, -1.f));
    coll().all_gather(sendb.get(), recvb.get(), count, DType::f32, nullptr);
    EXPECT_EQ(to_host(recvb), want);

    // In place: our shard already sits in the full buffer (ZeRO-1 parameters).
    std::vector<float> full(p() * count, -1.f);
    std::copy(send.begin(), send.end(), full.begin() + rank() * count);
    Buffer<float> fullb = on_backend(full);
    coll().all_gather(fullb.get() + rank() * count, fullb.get(), count, DType::f32, nullptr);
    EXPECT_EQ(to_host(fullb), want);
  }
}

// reduce_scatter then all_gather is an allreduce. Integer-valued floats make every order of
// summation exact, so the two must agree bit for bit; n is padded up to a multiple of the
// world, as the trainer pads its flat gradient buffer.
TEST_P(MpiColl, ReduceScatterAllGatherRoundTripF32) {
  for (size_t n : {size_t{1}, size_t{1001}, size_t{4099}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const size_t count = (n + p() - 1) / p();
    std::vector<float> x(p() * count, 0.f);
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>(mix(i * 7 + rank()) % 2001) - 1000);
    Buffer<float> reduced = on_backend(x), xb = on_backend(x), shard(be(), count), full(be(), p() * count);
    coll().allreduce_sum(reduced.get(), n, DType::f32, nullptr);
    coll().reduce_scatter_sum(xb.get(), shard.get(), count, DType::f32, nullptr);
    coll().all_gather(shard.get(), full.get(), count, DType::f32, nullptr);
    const std::vector<float> got = to_host(full), want = to_host(reduced);
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), n * sizeof(float)));
    for (size_t i = n; i < got.size(); ++i) EXPECT_EQ(got[i], 0.f) << "padding " << i;
  }
}

// ---------------------------------------------------------------- collectives, bf16
TEST_P(MpiColl, AllreduceSumBf16RoundsTheRankOrderFp32SumOnce) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t n : sizes()) {
    SCOPED_TRACE("n " + std::to_string(n));
    Buffer<bf16> buf = on_backend(binputs(seed, rank(), n));
    coll().allreduce_sum(buf.get(), n, DType::bf16, nullptr);
    const std::vector<bf16> got = to_host(buf);
    expect_bf16_sums(got, seed, p());
    EXPECT_TRUE(same_on_all_ranks(got.data(), n * sizeof(bf16)));

    // The started form gives the same bits.
    Buffer<bf16> started = on_backend(binputs(seed, rank(), n));
    coll().iallreduce_sum(started.get(), n, DType::bf16, nullptr)->wait();
    EXPECT_EQ(bits(to_host(started)), bits(got));
  }
}

TEST_P(MpiColl, ReduceScatterSumBf16RoundsTheRankOrderFp32SumOnce) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (size_t count : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{1000}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    const std::vector<bf16> send = binputs(seed, rank(), p() * count);
    Buffer<bf16> sendb = on_backend(send), recvb(be(), count);
    coll().reduce_scatter_sum(sendb.get(), recvb.get(), count, DType::bf16, nullptr);
    const std::vector<bf16> recv = to_host(recvb);
    expect_bf16_sums(recv, seed, p(), rank() * count);
    EXPECT_EQ(bits(to_host(sendb)), bits(send));  // the input is left as it was

    Buffer<bf16> inplace = on_backend(send);
    bf16* mine = inplace.get() + rank() * count;
    coll().reduce_scatter_sum(inplace.get(), mine, count, DType::bf16, nullptr);
    EXPECT_EQ(bits(to_host(mine, count)), bits(recv));
  }
}

// bf16 all-gathers move bits: every 16-bit pattern (NaN payloads, -0, subnormals) arrives as sent.
TEST_P(MpiColl, AllGatherBf16MovesBits) {
  for (size_t count : {size_t{0}, size_t{1}, size_t{5}, size_t{333}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    auto pattern = [](int r, size_t i) { return bf16{static_cast<uint16_t>(mix(i * 1000003 + r))}; };
    std::vector<bf16> send(count), want(p() * count);
    for (size_t i = 0; i < count; ++i) send[i] = pattern(rank(), i);
    for (int r = 0; r < p(); ++r)
      for (size_t i = 0; i < count; ++i) want[r * count + i] = pattern(r, i);
    Buffer<bf16> sendb = on_backend(send), recvb(be(), p() * count);
    coll().all_gather(sendb.get(), recvb.get(), count, DType::bf16, nullptr);
    EXPECT_EQ(bits(to_host(recvb)), bits(want));

    std::vector<bf16> full(p() * count, bf16{0xFFFF});
    std::copy(send.begin(), send.end(), full.begin() + rank() * count);
    Buffer<bf16> fullb = on_backend(full);
    coll().all_gather(fullb.get() + rank() * count, fullb.get(), count, DType::bf16, nullptr);
    EXPECT_EQ(bits(to_host(fullb)), bits(want));
  }
}

// ---------------------------------------------------------------- after, empty buffers
// Every call reads its input only after `after`'s work: with LateWriteEvent the input holds
// NaN until the collective waits on the event, so each result must equal the same call's on
// the real input (given with no event), bit for bit.
TEST_P(MpiColl, ReadsItsInputOnlyAfterTheAfterEvent) {
  const uint64_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const size_t count = 7, n = p() * count;
  for (DType t : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(t));
    const size_t eb = dtype_bytes(t);
    const std::vector<std::byte> in =
        t == DType::f32 ? as_bytes(inputs<float>(seed, rank(), n)) : as_bytes(binputs(seed, rank(), n));
    const std::vector<std::byte> shard(in.begin(), in.begin() + static_cast<ptrdiff_t>(count * eb));
    const std::vector<std::byte> nan =
        t == DType::f32 ? as_bytes(std::vector<float>(n, std::nanf(""))) : as_bytes(std::vector<bf16>(n, bf16{0x7FC0}));
    auto stale = [&](size_t elems) {  // a backend buffer of `elems` NaNs
      return on_backend(std::vector<std::byte>(nan.begin(), nan.begin() + static_cast<ptrdiff_t>(elems * eb)));
    };
    auto check = [&](const char* call, const LateWriteEvent& ev, const Buffer<std::byte>& got,
                     const Buffer<std::byte>& want) {
      SCOPED_TRACE(call);
      EXPECT_GE(ev.waits(), 1);
      EXPECT_EQ(to_host(got), to_host(want));
    };
    {
      Buffer<std::byte> want = on_backend(in), got = stale(n);
      coll().allreduce_sum(want.get(), n, t, nullptr);
      LateWriteEvent ev(be(), got.get(), in);
      coll().allreduce_sum(got.get(), n, t, &ev);
      check("allreduce_sum", ev, got, want);
    }
    {
      Buffer<std::byte> want = on_backend(in), got = stale(n);
      coll().iallreduce_sum(want.get(), n, t, nullptr)->wait();
      LateWriteEvent ev(be(), got.get(), in);
      coll().iallreduce_sum(got.get(), n, t, &ev)->wait();
      check("iallreduce_sum", ev, got, want);
    }
    {
      Buffer<std::byte> send = on_backend(in), want(be(), count * eb), late = stale(n), got(be(), count * eb);
      coll().reduce_scatter_sum(send.get(), want.get(), count, t, nullptr);
      LateWriteEvent ev(be(), late.get(), in);
      coll().reduce_scatter_sum(late.get(), got.get(), count, t, &ev);
      check("reduce_scatter_sum", ev, got, want);
    }
    {
      Buffer<std::byte> send = on_backend(shard), want(be(), n * eb), late = stale(count), got(be(), n * eb);
      coll().all_gather(send.get(), want.get(), count, t, nullptr);
      LateWriteEvent ev(be(), late.get(), shard);
      coll().all_gather(late.get(), got.get(), count, t, &ev);
      check("all_gather", ev, got, want);
    }
  }
}

// Empty buffers: null pointers are fine, nothing is read or written, `after` is not waited
// for, and the request is complete.
TEST_P(MpiColl, EmptyBuffers) {
  LateWriteEvent never(be(), nullptr, {});
  for (DType t : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(t));
    EXPECT_NO_THROW(coll().allreduce_sum(nullptr, 0, t, &never));
    auto req = coll().iallreduce_sum(nullptr, 0, t, &never);
    ASSERT_NE(req, nullptr);
    EXPECT_TRUE(req->test());
    EXPECT_NO_THROW(req->wait());
    EXPECT_NO_THROW(coll().reduce_scatter_sum(nullptr, nullptr, 0, t, &never));
    EXPECT_NO_THROW(coll().all_gather(nullptr, nullptr, 0, t, &never));
  }
  // Real buffers with a count of 0 stay as they were.
  Buffer<float> send = on_backend(std::vector<float>{1.f, 2.f}), recv = on_backend(std::vector<float>{7.f, 8.f});
  coll().reduce_scatter_sum(send.get(), recv.get(), 0, DType::f32, &never);
  coll().all_gather(send.get(), recv.get(), 0, DType::f32, &never);
  coll().allreduce_sum(recv.get(), 0, DType::f32, &never);
  coll().iallreduce_sum(recv.get(), 0, DType::f32, &never)->wait();
  EXPECT_EQ(to_host(recv), (std::vector<float>{7.f, 8.f}));
  EXPECT_EQ(to_host(send), (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(never.waits(), 0);
  EXPECT_TRUE(agree(true));  // every rank is still in step
}

// ---------------------------------------------------------------- host communicator: broadcast, p2p
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
  const int peer = c.rank() ^ 1;  // pairs (0,1), (2,3); with an odd size the last rank has none
  if (peer < c.size()) {
    const std::string tag = error_of([&] { c.send(b, 1, peer, -5); });
    EXPECT_NE(tag.find("MPI_Send failed: MPI_ERR_TAG"), std::string::npos) << tag;
    EXPECT_NE(tag.find("hint:"), std::string::npos) << tag;
    // A message shorter than the receiver expects, then a longer one (truncated).
    if (c.rank() % 2 == 0) {
      c.send(b, 3, peer, 1);
      c.send(b, 5, peer, 2);
    } else {
      const std::string shorter = error_of([&] { c.recv(b, 4, peer, 1); });
      const std::string longer = error_of([&] { c.recv(b, 4, peer, 2); });
      EXPECT_NE(shorter.find("got 3 bytes where 4 were expected"), std::string::npos) << shorter;
      EXPECT_NE(longer.find("MPI_Recv failed: MPI_ERR_TRUNCATE"), std::string::npos) << longer;
    }
  }
  EXPECT_TRUE(agree(true));  // every rank, paired or not: the same collectives
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
  std::unique_ptr<qisa::Backend> cpu = qisa::make_cpu_backend(1);
  qisa::test::FakeDeviceBackend device;
  std::unique_ptr<qisa::Communicator> comm, split;
  std::unique_ptr<qisa::Collectives> coll[2][2];  // destroyed before the communicators
  try {
    comm = qisa::make_communicator("mpi");
    split = qisa::make_communicator("mpi", qisa::CommOptions{qisa::kSplitCount});
    for (int s = 0; s < 2; ++s)
      for (int staged = 0; staged < 2; ++staged)
        coll[s][staged] = qisa::make_collectives(s ? *split : *comm, staged ? static_cast<qisa::Backend&>(device) : *cpu);
  } catch (const qisa::Error& e) {
    std::fprintf(stderr, "test_mpi_comm: %s\n", e.message().c_str());
    if (comm) comm->abort(1);
    return 1;
  }
  qisa::Comms& c = qisa::comms();
  c.plain = comm.get();
  c.split = split.get();
  c.cpu = cpu.get();
  c.device = &device;
  for (int s = 0; s < 2; ++s)
    for (int staged = 0; staged < 2; ++staged) c.coll[s][staged] = coll[s][staged].get();
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
  for (auto& row : coll)
    for (auto& x : row) x.reset();
  split.reset();
  comm.reset();  // MPI_Finalize
  return worst != 0 ? 1 : 0;
}
