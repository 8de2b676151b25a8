// dist.comm: mpi with a device backend (issue 16 item 4): the trainer on the emulated CUDA backend
// (tests/cuda_emu: the product's CudaBackend on the CPU), its gradients staged through host
// memory by the MPI collectives, under mpiexec. The job trains a tiny GPT one step on the CPU
// backend and one step on the emulated device, both over MPI, and checks that
//  - every rank holds the same device parameters (bit for bit: one MPI sum, same bits everywhere);
//  - the device step lands within the CPU-vs-device tolerance of one fp32 step (1e-4, as
//    tests/backend_training_cases.h states) of the CPU step of the same job.
// Its own main (no gtest runner): every check is agreed over the ranks, and every rank exits 1
// when any failed, so no rank waits for another.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend_training_cases.h"
#include "cuda_backend_emu.h"
#include "io/corpus.h"
#include "kernels/error.h"
#include "test_util.h"
#include "trainer/comm/collectives.h"
#include "trainer/comm/communicator.h"
#include "trainer/trainer.h"

namespace qisa {
namespace {

std::vector<float> one_step(const Config& cfg, Backend& be, Communicator& comm) {
  auto coll = make_collectives(comm, be);
  Trainer t(cfg, be, comm, *coll);
  t.step();
  return t.model().params_host();
}

int run() {
  auto comm = make_communicator("mpi");
  test::TempDir tmp;  // each rank's own; rank 0's corpus is the one used
  std::string corpus = tmp / "corpus.h5";
  if (comm->rank() == 0) {
    test::write_file(tmp / "text.txt", test::make_training_text(800));
    PrepareOptions p;
    p.inputs = {tmp / "text.txt"};
    p.out = corpus;
    prepare_corpus(p);
  }
  broadcast_string(*comm, corpus);
  comm->barrier();
  const Config cfg = test::training_cases::tiny_config(corpus, "csa", "  eps: 1.0e-6\n");

  auto cpu = make_cpu_backend(1);
  const std::vector<float> on_cpu = one_step(cfg, *cpu, *comm);
  auto emu = test::make_emulated_cuda_backend();
  const std::vector<float> on_device = one_step(cfg, *emu, *comm);

  std::vector<float> rank0 = on_device;
  comm->broadcast(rank0.data(), rank0.size() * sizeof(float), 0);
  const bool same = std::memcmp(rank0.data(), on_device.data(), rank0.size() * sizeof(float)) == 0;
  const double err = test::max_rel_err(on_device, on_cpu);
  const bool close = err < 1e-4;
  std::fprintf(stderr, "rank %d of %d: device parameters %s rank 0's; max relative difference to the CPU step %.3g\n",
               comm->rank(), comm->size(), same ? "equal" : "DIFFER FROM", err);
  int64_t failed = (same && close) ? 0 : 1;
  comm->allreduce_max(&failed, 1);
  if (comm->rank() == 0) std::printf("train_cuda_emu_mpi: %s\n", failed ? "FAILED" : "ok");
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace qisa

int main() {
  try {
    return qisa::run();
  } catch (const qisa::Error& e) {
    std::fprintf(stderr, "train_cuda_emu_mpi: %s\n", e.message().c_str());
    return 1;
  }
}
