// A gradient bucket whose all-reduce fails names itself: the trainer adds "gradient bucket k of
// n (elements [a, b))" to the collective's own line (the NCCL collectives name the rank, the call
// and the cause; tests/unit/test_cuda_emu_nccl.cpp), so a user sees which parameters were lost.
//
// The job is rank 0 of two whose peer holds the same values: the communicator's sums and the
// collectives' all-reduce double each value (the documented sum over two ranks with equal
// inputs), on the CPU backend; the collectives' third request fails when waited for.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "backend_training_cases.h"
#include "expect_error.h"
#include "kernels/backend.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/trainer.h"
#include "trainer_fixture.h"

namespace qisa {
namespace {

class MirroredPeer final : public Communicator {
 public:
  std::string name() const override { return "mirrored"; }
  int rank() const override { return 0; }
  int size() const override { return 2; }
  int local_rank() const override { return 0; }
  void allreduce_sum(double* buf, size_t n) override {
    for (size_t i = 0; i < n; ++i) buf[i] *= 2;
  }
  void allreduce_max(int64_t*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void send(const void*, size_t, int, int) override {}
  void recv(void*, size_t, int, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) noexcept override { std::_Exit(code); }
};

class FailingThirdRequest final : public Collectives {
 public:
  std::string name() const override { return "mirrored"; }
  int rank() const override { return 0; }
  int size() const override { return 2; }
  void allreduce_sum(void* buf, size_t count, DType dtype, Event* after) override {
    iallreduce_sum(buf, count, dtype, after)->wait();
  }
  std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType, Event*) override {
    class Request final : public CommRequest {
     public:
      Request(float* p, size_t n, bool fails) : p_(p), n_(n), fails_(fails) {}
      void wait() override {
        if (fails_) throw Error("ncclAllReduce #3 (fp32, 1 elements): injected failure", "a hint");
        for (size_t i = 0; i < n_; ++i) p_[i] *= 2;
        n_ = 0;
      }
      bool test() override { return !fails_; }

     private:
      float* p_;
      size_t n_;
      bool fails_;
    };
    return std::make_unique<Request>(static_cast<float*>(buf), count, ++calls_ == 3);
  }
  void reduce_scatter_sum(const void*, void*, size_t, DType, Event*) override {}
  void all_gather(const void*, void*, size_t, DType, Event*) override {}

 private:
  int calls_ = 0;
};

class TrainerBucketErrors : public test::CorpusSuite {};

TEST_F(TrainerBucketErrors, AFailedBucketNamesItsRangeAndTheCollectivesLine) {
  Config cfg = test::training_cases::tiny_config(corpus(), "csa");
  cfg.dist.bucket_mb = 1000.0 * sizeof(float) / (1024.0 * 1024.0);  // 1000 floats a bucket
  auto be = make_cpu_backend(1);
  ASSERT_TRUE(be->host_addressable());
  MirroredPeer comm;
  FailingThirdRequest coll;
  Trainer t(cfg, *be, comm, coll);
  const int64_t flat = t.model().flat_size(), buckets = (flat + 999) / 1000;
  ASSERT_GE(buckets, 4);
  // Requests are made from the last bucket down: the third is bucket buckets-3.
  const int64_t k = buckets - 3;
  test::expect_mentions(test::error_of([&] { t.step(); }),
                        {"gradient bucket " + std::to_string(k) + " of " + std::to_string(buckets) + " (elements [" +
                             std::to_string(k * 1000) + ", " + std::to_string(k * 1000 + 1000) +
                             ")): ncclAllReduce #3 (fp32, 1 elements): injected failure",
                         "hint: a hint"});
}

}  // namespace
}  // namespace qisa
