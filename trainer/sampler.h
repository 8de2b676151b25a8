// Where each training window starts. A pure function of (seed, global sample index), so the
// samples of an optimizer step do not depend on world size or micro-batching (SPEC §2b), and
// resuming at step t draws exactly what an uninterrupted run would.
#pragma once
#include <cstdint>
#include <vector>

namespace qisa {

class RandomWindowSampler {
 public:
  // Windows of T+1 tokens in a split of n_tokens (n_tokens >= T+1): offsets uniform in
  // [0, n_tokens - T - 1], as the paper's torch.randint(len(data) - block_size, ...).
  RandomWindowSampler(uint64_t seed, int64_t n_tokens, int T);
  int64_t offset(int64_t global_sample) const;

 private:
  uint64_t seed_;
  int64_t n_tokens_;
  int T_;
};

// Copy window rows into inputs x = tokens[o .. o+T-1] and targets y = tokens[o+1 .. o+T].
void gather_windows(const std::vector<int32_t>& tokens, const std::vector<int64_t>& offsets, int T,
                    std::vector<int32_t>& x, std::vector<int32_t>& y);

}  // namespace qisa
