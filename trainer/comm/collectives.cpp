// The none collectives (a world of one), completed_request and make_collectives.
#include "trainer/comm/collectives.h"

#include "kernels/error.h"

namespace qisa {

namespace {

// Nothing to wait for: the work finished before the request was made.
class DoneRequest final : public CommRequest {
 public:
  void wait() override {}
  bool test() override { return true; }
};

// A world of one: a sum over one rank is the buffer itself (its bits, not rounded), and
// reduce_scatter / all_gather copy send to recv on the backend. The copy is enqueued on the
// backend's stream after `after`'s work, so it needs no wait on the host.
class NoneCollectives final : public Collectives {
 public:
  explicit NoneCollectives(Backend& be) : be_(be) {}

  std::string name() const override { return "none"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }

  void allreduce_sum(void*, size_t, DType, Event*) override {}
  std::unique_ptr<CommRequest> iallreduce_sum(void*, size_t, DType, Event*) override { return completed_request(); }
  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype, Event*) override {
    copy(send, recv, count, dtype);
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype, Event*) override {
    copy(send, recv, count, dtype);
  }

 private:
  void copy(const void* send, void* recv, size_t count, DType dtype) {
    if (count > 0 && send != recv) be_.copy(recv, send, count * dtype_bytes(dtype));
  }

  Backend& be_;
};

}  // namespace

std::unique_ptr<CommRequest> completed_request() { return std::make_unique<DoneRequest>(); }

std::unique_ptr<Collectives> make_collectives(Communicator& host, Backend& be) {
  const std::string kind = host.name();
  if (kind == "mpi") return detail::make_mpi_collectives(host, be);
  QISA_CHECK(kind == "none", "no collectives for the '" + kind + "' communicator",
             "make_collectives knows the none and mpi communicators");
  QISA_CHECK(host.size() == 1,
             "the none communicator reports " + std::to_string(host.size()) + " ranks",
             "the none collectives serve a world of one rank");
  return std::make_unique<NoneCollectives>(be);
}

}  // namespace qisa
