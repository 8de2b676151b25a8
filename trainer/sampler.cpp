#include "trainer/sampler.h"

#include "kernels/error.h"
#include "kernels/philox.h"

namespace qisa {

namespace {

constexpr uint32_t kPermStream = 0x5045524Du;  // "PERM": the Philox stream of the epoch keys
constexpr int kFeistelRounds = 8;               // half-rounds: each updates one half of the index

// splitmix64's output function: a strong 64-bit mixer (bijective, full avalanche).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Bits needed to write every index below m (m >= 2), at least 2 so both Feistel halves are used.
int index_bits(uint64_t m) {
  int k = 0;
  while (k < 64 && (uint64_t{1} << k) < m) ++k;
  return k < 2 ? 2 : k;
}

inline uint64_t low_mask(int bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

// "random": epoch e is a keyed bijection of [0, M), M = n_tokens - T, evaluated per index with
// O(1) memory. The bijection is an unbalanced Feistel network on the k-bit indices (2^k < 2M):
// the index splits into hi (k - k/2 bits) and lo (k/2 bits); half-round r XORs one half with
// mix64(other half ^ round key r), alternating halves, so every half-round and hence the
// network is invertible on [0, 2^k). Cycle walking (apply again while the result is >= M)
// restricts it to a bijection of [0, M) (expected < 2 applications since 2^k < 2M). The round
// keys come from one Philox-4x32-10 block of (seed; epoch, "PERM"), so offsets are a pure
// function of (seed, epoch, index in the epoch).
class RandomSampler final : public WindowSampler {
 public:
  RandomSampler(uint64_t seed, int64_t valid_offsets)
      : seed_(seed), m_(static_cast<uint64_t>(valid_offsets)) {
    const int k = index_bits(m_);
    lo_bits_ = k / 2;
    hi_bits_ = k - lo_bits_;
  }
  int64_t samples_per_epoch() const override { return static_cast<int64_t>(m_); }
  int64_t offset(int64_t g) const override {
    QISA_CHECK(g >= 0, "sample index " + std::to_string(g) + " is negative", "this is a bug in the caller");
    if (m_ == 1) return 0;
    const uint64_t epoch = static_cast<uint64_t>(g) / m_;
    uint64_t x = static_cast<uint64_t>(g) % m_;
    uint64_t keys[kFeistelRounds];
    round_keys(epoch, keys);
    do x = permute(x, keys);
    while (x >= m_);
    return static_cast<int64_t>(x);
  }

 private:
  void round_keys(uint64_t epoch, uint64_t* keys) const {
    const Philox4 r = philox4x32(static_cast<uint32_t>(epoch), static_cast<uint32_t>(epoch >> 32), kPermStream, 0, seed_);
    uint64_t state = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
    const uint64_t salt = (static_cast<uint64_t>(r.v[2]) << 32) | r.v[3];
    for (int i = 0; i < kFeistelRounds; ++i) keys[i] = mix64(state += 0x9E3779B97F4A7C15ull) ^ salt;
  }
  uint64_t permute(uint64_t x, const uint64_t* keys) const {
    const uint64_t lo_mask = low_mask(lo_bits_), hi_mask = low_mask(hi_bits_);
    uint64_t lo = x & lo_mask, hi = x >> lo_bits_;
    for (int r = 0; r < kFeistelRounds; r += 2) {
      lo ^= mix64(hi ^ keys[r]) & lo_mask;
      hi ^= mix64(lo ^ keys[r + 1]) & hi_mask;
    }
    return (hi << lo_bits_) | lo;
  }

  uint64_t seed_;
  uint64_t m_;
  int lo_bits_ = 0, hi_bits_ = 0;
};

// "sequential": W = floor((n_tokens - 1) / T) non-overlapping windows; sample g -> (g mod W) * T.
class SequentialSampler final : public WindowSampler {
 public:
  SequentialSampler(int64_t n_tokens, int T) : T_(T), w_((n_tokens - 1) / T) {}
  int64_t samples_per_epoch() const override { return w_; }
  int64_t offset(int64_t g) const override {
    QISA_CHECK(g >= 0, "sample index " + std::to_string(g) + " is negative", "this is a bug in the caller");
    return (g % w_) * T_;
  }

 private:
  int64_t T_;
  int64_t w_;
};

}  // namespace

std::unique_ptr<WindowSampler> make_sampler(const std::string& kind, uint64_t seed, int64_t n_tokens, int T) {
  QISA_CHECK(kind == "random" || kind == "sequential",
             "unknown data.sampler '" + kind + "' (kinds: random, sequential)",
             "set data.sampler to random (a permutation of all window offsets per epoch) or sequential");
  QISA_CHECK(T >= 1, "model.block_size = " + std::to_string(T) + " is not positive", "set model.block_size >= 1");
  QISA_CHECK(n_tokens >= static_cast<int64_t>(T) + 1,
             "the split has " + std::to_string(n_tokens) + " tokens, but one window needs block_size + 1 = " +
                 std::to_string(T + 1),
             "use a larger corpus (more text for qisa prepare, or a smaller --val-fraction for the val split) "
             "or a smaller model.block_size");
  if (kind == "random") return std::make_unique<RandomSampler>(seed, n_tokens - T);
  return std::make_unique<SequentialSampler>(n_tokens, T);
}

RankSlice rank_slice(int64_t step, int64_t batch, int rank, int world) {
  QISA_CHECK(world >= 1 && rank >= 0 && rank < world,
             "rank " + std::to_string(rank) + " is not in a world of " + std::to_string(world) + " ranks",
             "this is a bug in the launcher: ranks are 0 .. world-1");
  QISA_CHECK(batch >= 1 && step >= 0,
             "rank_slice: step " + std::to_string(step) + ", batch " + std::to_string(batch),
             "the step must be >= 0 and the batch size >= 1");
  QISA_CHECK(batch % world == 0,
             "train.batch_size = " + std::to_string(batch) + " is not divisible by the " + std::to_string(world) +
                 " ranks",
             "the config's train.batch_size must be divisible by the number of ranks: choose a multiple of " +
                 std::to_string(world) + " or another rank count");
  const int64_t per = batch / world;
  return {step * batch + rank * per, per};
}

void split_windows(const std::vector<int32_t>& windows, int T, std::vector<int32_t>& x, std::vector<int32_t>& y) {
  QISA_CHECK(T >= 1 && windows.size() % (static_cast<size_t>(T) + 1) == 0,
             "split_windows: " + std::to_string(windows.size()) + " tokens are not rows of block_size + 1 = " +
                 std::to_string(T + 1),
             "this is a bug in the caller: windows hold block_size + 1 tokens each");
  const size_t rows = windows.size() / (static_cast<size_t>(T) + 1);
  x.resize(rows * static_cast<size_t>(T));
  y.resize(rows * static_cast<size_t>(T));
  for (size_t b = 0; b < rows; ++b) {
    const int32_t* src = windows.data() + b * (static_cast<size_t>(T) + 1);
    for (int t = 0; t < T; ++t) {
      x[b * T + t] = src[t];
      y[b * T + t] = src[t + 1];
    }
  }
}

}  // namespace qisa
