// The trainer against the asynchronous backend contract (kernels/backend.h): a step's ops are
// enqueued without the host waiting on the device per micro-batch. The loss is summed on the
// device (Backend::sum_to) and read once a step, so the host synchronisations of a step (reads of
// backend memory, synchronize(), results returned to the host) do not grow with the number of
// micro-batches. A backend that counts them stands for the CUDA one, where each is a stall.
#include <gtest/gtest.h>

#include <cmath>

#include "forwarding_backend.h"
#include "io/config.h"
#include "io/corpus.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/trainer.h"
#include "trainer_fixture.h"

namespace qisa {
namespace {

class SyncCountingBackend : public test::ForwardingBackend {
 public:
  int syncs = 0;
  void download(void* d, const void* s, size_t n) override { ++syncs, be_->download(d, s, n); }
  void synchronize() override { ++syncs, be_->synchronize(); }
  double sum_squares(const float* x, int64_t n) override { return ++syncs, be_->sum_squares(x, n); }
};

class AsyncSteps : public test::CorpusSuite {
 protected:
  static Config config(int micro) {
    Config c = parse_config("model:\n  block_size: 8\n  n_embd: 8\n  n_head: 2\n  n_layer: 2\n"
                            "data:\n  corpus: " + corpus() + "\n"
                            "train:\n  batch_size: 8\n  micro_batch_size: " + std::to_string(micro) +
                                "\n  lr: 0.001\n  seed: 3\n  threads: 1\n"
                            "eval:\n  windows: 4\n",
                            "async.yaml");
    check_against_corpus(c, read_corpus_info(c.data.corpus));
    return c;
  }
};

TEST_F(AsyncSteps, HostSynchronisationsPerStepDoNotGrowWithMicroBatches) {
  auto comm = make_communicator("none");
  int syncs[2];
  double loss[2];
  for (int k = 0; k < 2; ++k) {
    SyncCountingBackend be;
    auto coll = make_collectives(*comm, be);
    Trainer t(config(k == 0 ? 8 : 1), be, *comm, *coll);  // one micro-batch of 8, or eight of 1
    be.syncs = 0;
    loss[k] = t.step().loss;
    syncs[k] = be.syncs;
  }
  EXPECT_EQ(syncs[1], syncs[0]) << "host synchronisations of a step with 8 micro-batches vs 1";
  EXPECT_LE(syncs[0], 3) << "the loss, the gradient norm and the end of the step";
  // Rows are independent in forward and the device sum runs in row order across micro-batches:
  // the step's loss is the same bits either way.
  EXPECT_EQ(loss[0], loss[1]);
  // and it is the mean over the rows: an untrained model is near the uniform guess ln(V)
  const double uniform = std::log(static_cast<double>(config(8).model.vocab_size));
  EXPECT_NEAR(loss[0], uniform, 0.5 * uniform);
}

}  // namespace
}  // namespace qisa
