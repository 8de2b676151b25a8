// Which windows a training step reads. Every sampler is a pure function of (seed, global
// sample index): the samples of optimizer step t are global samples [t*B, (t+1)*B) whatever
// the world size, rank r takes its contiguous slice of them, and resuming at step t draws
// exactly what an uninterrupted run would (SPEC §2b).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qisa {

class WindowSampler {
 public:
  virtual ~WindowSampler() = default;
  // Start of the window (block_size + 1 tokens) of global sample g.
  virtual int64_t offset(int64_t g) const = 0;
  // Samples in one pass over the data; epoch of sample g = g / samples_per_epoch().
  virtual int64_t samples_per_epoch() const = 0;
  int64_t epoch_of(int64_t g) const { return g / samples_per_epoch(); }
};

// kind "random": each epoch is a permutation (keyed by seed and epoch) of every valid offset
//   [0, n_tokens - T - 1]: windows at any offset, as the paper, without repeats in an epoch.
// kind "sequential": consecutive non-overlapping windows 0, T, 2T, ... (llm.c style), so a
//   rank's slice of a step is one contiguous read.
// Throws qisa::Error when the split is shorter than one window (n_tokens < T + 1).
std::unique_ptr<WindowSampler> make_sampler(const std::string& kind, uint64_t seed, int64_t n_tokens, int T);

// Global samples of rank `rank` in optimizer step `step` (0-based) of `batch` sequences:
// [step*batch + rank*batch/world, + batch/world). batch % world must be 0 (throws otherwise).
struct RankSlice {
  int64_t first = 0;
  int64_t count = 0;
};
RankSlice rank_slice(int64_t step, int64_t batch, int rank, int world);

// Copy window rows into inputs x = window[0 .. T-1] and targets y = window[1 .. T], from
// `windows` holding count rows of T+1 tokens.
void split_windows(const std::vector<int32_t>& windows, int T, std::vector<int32_t>& x, std::vector<int32_t>& y);

}  // namespace qisa
