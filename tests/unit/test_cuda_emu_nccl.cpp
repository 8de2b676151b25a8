// The NCCL collectives (trainer/comm/nccl_collectives.cpp, the product's code) on the emulated
// CUDA backend, with the NCCL test double (tests/cuda_emu/nccl_double.h: the documented semantics
// of the NCCL calls qisa makes, ranks as threads, faults on request) and a host communicator of
// threads (tests/thread_world.h). What it shows (issue 16 items 1, 3, 4):
//  - all-reduce, reduce-scatter and all-gather give every rank the reference result, fp32 and
//    bf16, in place and not, at odd sizes and world sizes 1 to 3, several all-reduces in flight;
//  - init waits for every rank, polled, with a deadline;
//  - an asynchronous NCCL error, a collective that never completes and a rank that stops all
//    end every rank within dist.timeout_s with one line naming the rank, the collective and the
//    cause, and the communicators are aborted (ncclCommAbort), never left waiting;
//  - the CPU backend is refused with a hint;
//  - the trainer on two ranks over NCCL: many gradient buckets give the bits of one, np=2 equals
//    np=1 within fp32 summation-order tolerance, ZeRO-1 (reduce-scatter, AdamW on the shard,
//    all-gather) equals plain all-reduce, and every rank holds the same parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "backend_training_cases.h"
#include "cuda_backend_emu.h"
#include "expect_error.h"
#include "forwarding_backend.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "nccl_double.h"
#include "test_util.h"
#include "thread_world.h"
#include "trainer/comm/collectives.h"
#include "trainer/trainer.h"
#include "trainer_fixture.h"

namespace qisa {
namespace {

using test::error_of;
using test::expect_mentions;
using Clock = std::chrono::steady_clock;

// Random values of rank r, as dtype's bits (bf16: rounded).
std::vector<unsigned char> random_values(DType t, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<unsigned char> bytes(n * dtype_bytes(t));
  for (size_t i = 0; i < n; ++i) {
    const float v = u(rng);
    if (t == DType::bf16) {
      const bf16 h = float_to_bf16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    } else {
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    }
  }
  return bytes;
}
float value(const std::vector<unsigned char>& b, DType t, size_t i) {
  if (t == DType::bf16) {
    bf16 h;
    std::memcpy(&h, b.data() + 2 * i, 2);
    return bf16_to_float(h);
  }
  float f;
  std::memcpy(&f, b.data() + 4 * i, 4);
  return f;
}
void put(std::vector<unsigned char>& b, DType t, size_t i, float v) {
  if (t == DType::bf16) {
    const bf16 h = float_to_bf16(v);
    std::memcpy(b.data() + 2 * i, &h, 2);
  } else {
    std::memcpy(b.data() + 4 * i, &v, 4);
  }
}
// The contract's sum (collectives.h): fp32, in rank order, rounded once to the type.
std::vector<unsigned char> rank_order_sum(const std::vector<std::vector<unsigned char>>& in, DType t, size_t offset,
                                          size_t n) {
  std::vector<unsigned char> out(n * dtype_bytes(t));
  for (size_t i = 0; i < n; ++i) {
    float s = value(in[0], t, offset + i);
    for (size_t r = 1; r < in.size(); ++r) s += value(in[r], t, offset + i);
    put(out, t, i, s);
  }
  return out;
}

struct Device {
  std::unique_ptr<Backend> be = test::make_emulated_cuda_backend();
  void* fresh(size_t bytes) { return be->alloc(bytes); }  // NaN-filled by the runtime double
  void* with(const std::vector<unsigned char>& b) {
    void* p = be->alloc(b.size());
    be->upload(p, b.data(), b.size());
    return p;
  }
  std::vector<unsigned char> read(const void* p, size_t bytes) {
    std::vector<unsigned char> b(bytes);
    be->download(b.data(), p, bytes);
    return b;
  }
};

class NcclEmu : public ::testing::TestWithParam<std::tuple<int, DType>> {};

TEST_P(NcclEmu, CollectivesMatchTheReference) {
  const auto [world, t] = GetParam();
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  test::NcclDouble nccl;
  test::ThreadWorld threads(world);
  std::vector<Device> dev(static_cast<size_t>(world));  // made here: one backend per rank
  const size_t n = 1001, eb = dtype_bytes(t);
  std::vector<std::vector<unsigned char>> a(world), b(world), c(world), shard(world);
  for (int r = 0; r < world; ++r) {
    a[r] = random_values(t, n, seed + r);
    b[r] = random_values(t, n, seed + 100 + r);
    c[r] = random_values(t, n * world, seed + 200 + r);
    shard[r] = random_values(t, n, seed + 300 + r);
  }
  threads.run([&](int r) {
    Device& d = dev[static_cast<size_t>(r)];
    Backend& be = *d.be;
    auto coll = make_nccl_collectives(threads.comm(r), be, 30.0);
    EXPECT_EQ(coll->name(), "nccl");
    EXPECT_EQ(coll->rank(), r);
    EXPECT_EQ(coll->size(), world);
    void* pa = d.with(a[r]);
    void* pb = d.with(b[r]);
    auto after = be.make_event();
    be.record(*after);
    auto ra = coll->iallreduce_sum(pa, n, t, after.get());  // two in flight, waited in reverse
    auto rb = coll->iallreduce_sum(pb, n, t, after.get());
    rb->wait();
    ra->wait();
    EXPECT_TRUE(ra->test());
    EXPECT_EQ(d.read(pa, n * eb), rank_order_sum(a, t, 0, n));
    EXPECT_EQ(d.read(pb, n * eb), rank_order_sum(b, t, 0, n));
    // reduce-scatter: out of place into poisoned memory, then in place.
    void* pc = d.with(c[r]);
    void* out = d.fresh(n * eb);
    coll->reduce_scatter_sum(pc, out, n, t, nullptr);
    const auto expect_rs = rank_order_sum(c, t, static_cast<size_t>(r) * n, n);
    EXPECT_EQ(d.read(out, n * eb), expect_rs);
    void* in_place = static_cast<char*>(pc) + static_cast<size_t>(r) * n * eb;
    coll->reduce_scatter_sum(pc, in_place, n, t, nullptr);
    EXPECT_EQ(d.read(in_place, n * eb), expect_rs);
    // all-gather: into poisoned memory, then in place.
    void* ps = d.with(shard[r]);
    void* gathered = d.fresh(world * n * eb);
    coll->all_gather(ps, gathered, n, t, nullptr);
    std::vector<unsigned char> all;
    for (const auto& s : shard) all.insert(all.end(), s.begin(), s.end());
    EXPECT_EQ(d.read(gathered, world * n * eb), all);
    void* mine = static_cast<char*>(pc) + static_cast<size_t>(r) * n * eb;
    be.upload(mine, shard[r].data(), shard[r].size());
    coll->all_gather(mine, pc, n, t, nullptr);
    EXPECT_EQ(d.read(pc, world * n * eb), all);
    // Empty buffers are valid and touch nothing.
    coll->allreduce_sum(nullptr, 0, t, nullptr);
    EXPECT_TRUE(coll->iallreduce_sum(nullptr, 0, t, nullptr)->test());
    for (void* p : {pa, pb, pc, out, ps, gathered}) be.release(p);
  });
  EXPECT_EQ(nccl.aborted(), 0);
  EXPECT_EQ(nccl.destroyed(), world);  // finalized and destroyed, not aborted
  EXPECT_EQ(nccl.live(), 0);
}

INSTANTIATE_TEST_SUITE_P(WorldsAndTypes, NcclEmu,
                         ::testing::Combine(::testing::Values(1, 2, 3), ::testing::Values(DType::f32, DType::bf16)),
                         [](const auto& info) {
                           return "np" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) == DType::bf16 ? "_bf16" : "_fp32");
                         });

// Runs body on `world` thread ranks, each with its own emulated device and NCCL collectives
// (rank r's dist.timeout_s: timeout_s[r], or the last one), and returns each rank's error message ("" when it threw none) and the seconds
// until the last rank finished.
struct FaultRun {
  std::vector<std::string> errors;
  double seconds = 0;
};
template <class Body>
FaultRun run_ranks(int world, std::vector<double> timeout_s, Body body) {
  test::ThreadWorld threads(world);
  std::vector<Device> dev(static_cast<size_t>(world));
  FaultRun out;
  out.errors.resize(static_cast<size_t>(world));
  const auto t0 = Clock::now();
  threads.run([&](int r) {
    try {
      const double t = timeout_s[std::min(static_cast<size_t>(r), timeout_s.size() - 1)];
      auto coll = make_nccl_collectives(threads.comm(r), *dev[static_cast<size_t>(r)].be, t);
      body(r, *coll, dev[static_cast<size_t>(r)]);
    } catch (const Error& e) {
      out.errors[static_cast<size_t>(r)] = e.message();
    }
  });
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

// Five all-reduces of 5 floats, the way the trainer sends buckets.
void five_allreduces(Collectives& coll, Device& d) {
  Buffer<float> p(*d.be, 5);
  d.be->zero(p.get(), p.bytes());
  for (int i = 0; i < 5; ++i) coll.allreduce_sum(p.get(), 5, DType::f32, nullptr);
}

TEST(NcclEmuFaults, InitWaitsForEveryRankUntilTheDeadline) {
  test::NcclDouble nccl;
  nccl.never_join(1);
  const FaultRun run = run_ranks(2, {0.3}, [](int, Collectives&, Device&) {});
  for (int r = 0; r < 2; ++r)
    expect_mentions(run.errors[r], {"NCCL rank " + std::to_string(r) + " of 2: NCCL communicator init (2 ranks): "
                                    "did not finish within dist.timeout_s = 0.3 s (communicator aborted)",
                                    "hint: a peer rank died"});
  EXPECT_LT(run.seconds, 10.0);
  EXPECT_EQ(nccl.aborted(), 2);
  EXPECT_EQ(nccl.live(), 0);
}

TEST(NcclEmuFaults, AnAsynchronousErrorAbortsEveryRankAndNamesTheCollective) {
  test::NcclDouble nccl;
  nccl.fail_at_call(1, 2, ncclSystemError);  // rank 1's third collective
  const FaultRun run = run_ranks(2, {20.0}, [](int, Collectives& coll, Device& d) { five_allreduces(coll, d); });
  expect_mentions(run.errors[1], {"NCCL rank 1 of 2: ncclAllReduce #3 (fp32, 5 elements): unhandled system error",
                                  "injected asynchronous error", "(communicator aborted)"});
  // Rank 0 learns it from NCCL (the peer aborted), long before its timeout: in its wait for #3,
  // or still polling #2 (the error is asynchronous: it names the call the rank is waiting on).
  expect_mentions(run.errors[0], {"NCCL rank 0 of 2: ncclAllReduce #", " (fp32, 5 elements): remote process exited or "
                                  "there was a network error"});
  EXPECT_LT(run.seconds, 10.0);
  EXPECT_EQ(nccl.aborted(), 2);
  EXPECT_EQ(nccl.live(), 0);
}

TEST(NcclEmuFaults, ACollectiveThatNeverCompletesTimesOut) {
  test::NcclDouble nccl;
  nccl.stall_at_call(0, 1);
  // Rank 0 (whose call stalls) times out first; rank 1 then hears of its abort from NCCL.
  const FaultRun run = run_ranks(2, {0.5, 20.0}, [](int, Collectives& coll, Device& d) { five_allreduces(coll, d); });
  expect_mentions(run.errors[0], {"NCCL rank 0 of 2: ncclAllReduce #2 (fp32, 5 elements): did not complete within "
                                  "dist.timeout_s = 0.5 s (communicator aborted)"});
  EXPECT_NE(run.errors[1].find("NCCL rank 1 of 2: ncclAllReduce #2"), std::string::npos) << run.errors[1];
  EXPECT_LT(run.seconds, 10.0);
  EXPECT_EQ(nccl.aborted(), 2);
}

TEST(NcclEmuFaults, ARankThatStopsEndsItsPeersWithinTheTimeout) {
  test::NcclDouble nccl;
  std::atomic<int> finished{0};  // peers done: only then may rank 2's communicator go
  const FaultRun run = run_ranks(3, {0.5}, [&](int r, Collectives& coll, Device& d) {
    if (r != 2) {
      struct Done {
        std::atomic<int>& n;
        ~Done() { ++n; }
      } done{finished};
      five_allreduces(coll, d);
      return;
    }
    Buffer<float> p(*d.be, 5);  // rank 2 makes one all-reduce, then stops
    d.be->zero(p.get(), p.bytes());
    coll.allreduce_sum(p.get(), 5, DType::f32, nullptr);
    while (finished.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  });
  for (int r = 0; r < 2; ++r)
    EXPECT_NE(run.errors[r].find("NCCL rank " + std::to_string(r) + " of 3: ncclAllReduce #2 (fp32, 5 elements)"),
              std::string::npos)
        << run.errors[r];
  EXPECT_EQ(run.errors[2], "");  // its destructor finds the peers gone, says so on stderr, aborts
  EXPECT_LT(run.seconds, 10.0);
  EXPECT_EQ(nccl.aborted(), 3);
  EXPECT_EQ(nccl.live(), 0);
}

TEST(NcclEmuFaults, TheCpuBackendIsRefused) {
  test::NcclDouble nccl;
  test::ThreadWorld threads(1);
  auto cpu = make_cpu_backend(1);
  expect_mentions(error_of([&] { make_nccl_collectives(threads.comm(0), *cpu, 1.0); }),
                  {"dist.comm = nccl needs a device backend (this one is cpu)", "hint: set train.device: cuda"});
  EXPECT_EQ(nccl.live(), 0);
}

// ---- the trainer over NCCL on thread ranks (one emulated device each)

struct RankRun {
  std::vector<double> losses;             // rank 0's
  std::vector<std::vector<float>> params;  // by rank, after the steps
};

// `world` ranks as threads, NCCL collectives between them, `steps` training steps. Communicators
// are made in parallel (init waits for every rank); trainers are made and destroyed on this
// thread (they open and close the corpus: HDF5 is serial), and step in parallel.
RankRun train_over_nccl(const Config& cfg, int world, int steps, int save_after = -1, const std::string& ckpt = "") {
  test::NcclDouble nccl;
  test::ThreadWorld threads(world);
  std::vector<Device> dev(static_cast<size_t>(world));
  std::vector<std::unique_ptr<Collectives>> coll(static_cast<size_t>(world));
  threads.run([&](int r) { coll[r] = make_nccl_collectives(threads.comm(r), *dev[r].be, 60.0); });
  std::vector<std::unique_ptr<Trainer>> trainers;
  for (int r = 0; r < world; ++r) trainers.push_back(std::make_unique<Trainer>(cfg, *dev[r].be, threads.comm(r), *coll[r]));
  RankRun out;
  threads.run([&](int r) {
    for (int i = 0; i < steps; ++i) {
      const double loss = trainers[r]->step().loss;
      if (r == 0) out.losses.push_back(loss);
      if (i + 1 == save_after) {
        EXPECT_EQ(trainers[r]->save_checkpoint(ckpt), "");  // collective; rank 0 writes
      }
    }
  });
  for (auto& t : trainers) out.params.push_back(t->model().params_host());
  trainers.clear();
  coll.clear();
  EXPECT_GT(nccl.collectives(), 0);
  EXPECT_EQ(nccl.aborted(), 0);
  return out;
}

class NcclEmuTraining : public test::CorpusSuite {};

TEST_F(NcclEmuTraining, TwoRanksEqualOneAndZeroOneEqualsAllReduce) {
  Config cfg = test::training_cases::tiny_config(corpus(), "csa");
  cfg.dist.bucket_mb = 300.0 * sizeof(float) / (1024.0 * 1024.0);  // 300 floats: many buckets
  const RankRun many = train_over_nccl(cfg, 2, 1);
  Config one_bucket = cfg;
  one_bucket.dist.bucket_mb = 1000;
  const RankRun one = train_over_nccl(one_bucket, 2, 1);
  Config zero1 = cfg;
  zero1.dist.zero = 1;
  const RankRun sharded = train_over_nccl(zero1, 2, 1);
  auto be = test::make_emulated_cuda_backend();
  const test::training_cases::Run single = test::training_cases::train(cfg, *be, 1);

  for (const RankRun* run : {&many, &one, &sharded}) EXPECT_EQ(run->params[0], run->params[1]);  // every rank alike
  EXPECT_EQ(many.params[0], one.params[0]);  // a sum per element: the bucket split changes no bit
  EXPECT_EQ(many.losses, one.losses);
  // np=1 sums the two micro-batches' gradients in its own order (kernels accumulate): fp32
  // summation-order differences only.
  EXPECT_NEAR(many.losses[0], single.losses[0], 1e-6 * std::abs(single.losses[0]));
  EXPECT_LT(test::max_rel_err(many.params[0], single.params), 1e-5);
  EXPECT_GT(test::max_rel_err(many.params[0], test::training_cases::train(cfg, *be, 0).params), 1e-3);  // it moved
  // ZeRO-1: the same sums (reduce-scatter), AdamW per element on the shard, the bits gathered;
  // only the gradient norm's sum differs in order (two shard partials summed on the host).
  EXPECT_EQ(sharded.losses, many.losses);
  EXPECT_LT(test::max_rel_err(sharded.params[0], many.params[0]), 1e-6);
}

// Overlap order (issue 16 item 1): the trainer hands a gradient bucket to NCCL as soon as
// backward has written it, from the last bucket down, so reducing it overlaps the backward of
// the layers below. Each rank's log holds the backward ops that write parameter gradients and
// the all-reduces as they are launched.
class OrderLog {
 public:
  void add(std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(std::move(what));
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

class LoggedBackend final : public test::ForwardingBackend {
 public:
  LoggedBackend(std::unique_ptr<Backend> be, OrderLog& log) : ForwardingBackend(std::move(be)), log_(log) {}
  void linear_backward(Act di, float* dw, float* db, CAct g, CAct i, CAct w, int64_t N, int IC, int OC, GradMode m1,
                       GradMode m2) override {
    log_.add("linear_backward");
    ForwardingBackend::linear_backward(di, dw, db, g, i, w, N, IC, OC, m1, m2);
  }
  void embedding_backward(float* dt, float* dp, CAct g, const int32_t* i, int64_t B, int T, int C, int V,
                          GradMode m) override {
    log_.add("embedding_backward");
    ForwardingBackend::embedding_backward(dt, dp, g, i, B, T, C, V, m);
  }

 private:
  OrderLog& log_;
};

class LoggedCollectives final : public Collectives {
 public:
  LoggedCollectives(std::unique_ptr<Collectives> c, OrderLog& log) : c_(std::move(c)), log_(log) {}
  std::string name() const override { return c_->name(); }
  int rank() const override { return c_->rank(); }
  int size() const override { return c_->size(); }
  void allreduce_sum(void* b, size_t n, DType t, Event* e) override { c_->allreduce_sum(b, n, t, e); }
  std::unique_ptr<CommRequest> iallreduce_sum(void* b, size_t n, DType t, Event* e) override {
    log_.add("allreduce " + std::to_string(reinterpret_cast<uintptr_t>(b)));
    return c_->iallreduce_sum(b, n, t, e);
  }
  void reduce_scatter_sum(const void* s, void* r, size_t n, DType t, Event* e) override {
    c_->reduce_scatter_sum(s, r, n, t, e);
  }
  void all_gather(const void* s, void* r, size_t n, DType t, Event* e) override { c_->all_gather(s, r, n, t, e); }

 private:
  std::unique_ptr<Collectives> c_;
  OrderLog& log_;
};

TEST_F(NcclEmuTraining, BucketsAreReducedWhileBackwardGoesOn) {
  Config cfg = test::training_cases::tiny_config(corpus(), "csa");
  cfg.dist.bucket_mb = 300.0 * sizeof(float) / (1024.0 * 1024.0);
  test::NcclDouble nccl;
  test::ThreadWorld threads(2);
  OrderLog logs[2];
  std::vector<std::unique_ptr<Backend>> dev;
  for (int r = 0; r < 2; ++r) dev.push_back(std::make_unique<LoggedBackend>(test::make_emulated_cuda_backend(), logs[r]));
  std::vector<std::unique_ptr<Collectives>> coll(2);
  threads.run([&](int r) {
    coll[r] = std::make_unique<LoggedCollectives>(make_nccl_collectives(threads.comm(r), *dev[r], 60.0), logs[r]);
  });
  std::vector<std::unique_ptr<Trainer>> trainers;
  for (int r = 0; r < 2; ++r) trainers.push_back(std::make_unique<Trainer>(cfg, *dev[r], threads.comm(r), *coll[r]));
  threads.run([&](int r) { trainers[r]->step(); });
  const int64_t flat = trainers[0]->model().flat_size(), buckets = (flat + 299) / 300;
  const auto grads = reinterpret_cast<uintptr_t>(trainers[0]->model().grads());
  trainers.clear();
  coll.clear();

  const std::vector<std::string> log = logs[0].lines();
  std::vector<int64_t> launched;  // bucket indices, in launch order
  size_t first_launch = log.size(), last_backward = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].rfind("allreduce ", 0) == 0) {
      launched.push_back(static_cast<int64_t>((std::stoull(log[i].substr(10)) - grads) / sizeof(float) / 300));
      first_launch = std::min(first_launch, i);
    } else {
      last_backward = i;
    }
  }
  ASSERT_EQ(static_cast<int64_t>(launched.size()), buckets);
  for (size_t i = 0; i < launched.size(); ++i) EXPECT_EQ(launched[i], buckets - 1 - static_cast<int64_t>(i));
  // The last bucket went to NCCL while layers below still had their backward to run.
  EXPECT_LT(first_launch, last_backward);
  int backward_after = 0;
  for (size_t i = first_launch; i < log.size(); ++i) backward_after += log[i].find("backward") != std::string::npos;
  EXPECT_GE(backward_after, 2) << "only " << backward_after << " backward ops after the first bucket was launched";
}

// Checkpoints across devices and world sizes (issue 16 item 5): one written by two NCCL ranks
// under ZeRO-1 on the (emulated) device resumes on one CPU rank without ZeRO, and one written by
// the CPU resumes on the device; each resumed step lands where the writer's own next step did,
// within the CPU-vs-device tolerance of one fp32 step (backend_training_cases.h: 1e-4).
TEST_F(NcclEmuTraining, CheckpointsMoveBetweenDevicesAndWorldSizes) {
  Config cfg = test::training_cases::tiny_config(corpus(), "qisa", "  eps: 1.0e-6\n");
  Config zero1 = cfg;
  zero1.dist.zero = 1;
  const std::string from_device = dir() / "nccl_zero1.h5", from_cpu = dir() / "cpu.h5";
  const RankRun device = train_over_nccl(zero1, 2, 2, 1, from_device);
  std::vector<std::string> warnings;
  const auto warn = [&](const std::string& w) { warnings.push_back(w); };
  auto none = make_communicator("none");
  auto cpu = make_cpu_backend(1);
  auto cpu_coll = make_collectives(*none, *cpu);
  {
    Trainer resumed(cfg, *cpu, *none, *cpu_coll);
    resumed.load_checkpoint(from_device, warn);
    resumed.step();
    EXPECT_LT(test::max_rel_err(resumed.model().params_host(), device.params[0]), 1e-4);
  }
  const auto said = [&](const std::string& what) {
    return std::any_of(warnings.begin(), warnings.end(), [&](const std::string& w) { return w.find(what) != std::string::npos; });
  };
  EXPECT_TRUE(said("dist.zero")) << "no warning names the changed dist.zero";
  std::vector<float> cpu_straight;
  {
    Trainer a(cfg, *cpu, *none, *cpu_coll);
    a.step();
    ASSERT_EQ(a.save_checkpoint(from_cpu), "");
    a.step();
    cpu_straight = a.model().params_host();
  }
  auto emu = test::make_emulated_cuda_backend();
  auto emu_coll = make_collectives(*none, *emu);
  Trainer resumed(cfg, *emu, *none, *emu_coll);
  resumed.load_checkpoint(from_cpu, warn);
  resumed.step();
  EXPECT_LT(test::max_rel_err(resumed.model().params_host(), cpu_straight), 1e-4);
  EXPECT_GT(test::max_rel_err(resumed.model().params_host(), device.params[0]), 0.0);  // two different runs
}

// The same under precision bf16 (bf16 activations and GEMM operands, fp32 masters and moments in
// the checkpoint): two NCCL ranks under ZeRO-1 on the device write it, one CPU rank resumes it and
// rebuilds the bf16 weight copy from the masters; its step lands where the writers' own next step
// did. The general bf16 tolerance (backend_training_cases.h, 1e-2 of max |param|) is looser than
// one step (3.1e-3 here), so this fixed case is held to 1e-4 (measured 4.6e-9, 2026-12-07): a
// checkpoint that lost the moments or the step count moves the parameters by about lr.
TEST_F(NcclEmuTraining, Bf16CheckpointsMoveFromTheDeviceToTheCpu) {
  Config zero1 = test::training_cases::tiny_config(corpus(), "csa", "  precision: bf16\n");
  zero1.dist.zero = 1;
  const std::string path = dir() / "nccl_zero1_bf16.h5";
  const RankRun device = train_over_nccl(zero1, 2, 2, 1, path);
  EXPECT_EQ(device.params[0], device.params[1]);
  Config cfg = zero1;
  cfg.dist.zero = 0;
  auto none = make_communicator("none");
  auto cpu = make_cpu_backend(1);
  auto cpu_coll = make_collectives(*none, *cpu);
  Trainer resumed(cfg, *cpu, *none, *cpu_coll);
  resumed.load_checkpoint(path, [](const std::string&) {});
  EXPECT_EQ(resumed.steps_done(), 1);
  const double loss = resumed.step().loss;
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_LE(test::max_rel_err(resumed.model().params_host(), device.params[0]), 1e-4);
}

}  // namespace
}  // namespace qisa
