#include "trainer/sampler.h"

#include "kernels/error.h"
#include "kernels/philox.h"

namespace qisa {

namespace {
constexpr uint32_t kSamplerStream = 0x53414D50u;  // "SAMP"
}

RandomWindowSampler::RandomWindowSampler(uint64_t seed, int64_t n_tokens, int T)
    : seed_(seed), n_tokens_(n_tokens), T_(T) {
  QISA_CHECK(n_tokens >= static_cast<int64_t>(T) + 1,
             "the split has " + std::to_string(n_tokens) + " tokens, a window needs block_size+1 = " + std::to_string(T + 1),
             "use a larger corpus or a smaller model.block_size");
}

int64_t RandomWindowSampler::offset(int64_t global_sample) const {
  const auto range = static_cast<uint64_t>(n_tokens_ - T_);  // number of valid offsets
  // 64 random bits reduced by multiply-high: uniform up to a bias below 2^-40 for any corpus.
  const uint64_t g = static_cast<uint64_t>(global_sample);
  const uint64_t hi = philox_bits(seed_, kSamplerStream, 0, 2 * g);
  const uint64_t lo = philox_bits(seed_, kSamplerStream, 0, 2 * g + 1);
  const unsigned __int128 prod = static_cast<unsigned __int128>((hi << 32) | lo) * range;
  return static_cast<int64_t>(prod >> 64);
}

void gather_windows(const std::vector<int32_t>& tokens, const std::vector<int64_t>& offsets, int T,
                    std::vector<int32_t>& x, std::vector<int32_t>& y) {
  x.resize(offsets.size() * static_cast<size_t>(T));
  y.resize(offsets.size() * static_cast<size_t>(T));
  for (size_t b = 0; b < offsets.size(); ++b) {
    const int32_t* src = tokens.data() + offsets[b];
    for (int t = 0; t < T; ++t) {
      x[b * T + t] = src[t];
      y[b * T + t] = src[t + 1];
    }
  }
}

}  // namespace qisa
