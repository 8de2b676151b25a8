// Teacher-forced evaluation on the first N non-overlapping windows of a split (offsets 0, T,
// 2T, ...; each T+1 tokens): cross-entropy, perplexity, and the paper's CER / WER of the
// argmax predictions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model.h"

namespace qisa {

struct EvalResult {
  double ce = 0;       // mean cross-entropy per token (nats)
  double ppl = 0;      // exp(ce)
  double cer = 0;      // mean over windows of char edit distance / target chars
  double wer = 0;      // mean over windows (with >= 1 target word) of word edit distance / target words
  int64_t tokens = 0;  // tokens scored
  int64_t windows = 0;
  std::string to_json() const;  // one line
};

// `vocab` decodes ids to text (index = id). Fewer windows than asked are used when the split
// is short; at least one must fit.
EvalResult evaluate(GPT& model, const std::vector<int32_t>& split, int64_t windows,
                    const std::vector<std::string>& vocab);

// Levenshtein distance (unit costs).
template <typename T>
int64_t edit_distance(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int64_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min(sub, std::min(prev[j], cur[j - 1]) + 1);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Words of a code-point string, split on Unicode whitespace (as Python's str.split()).
std::vector<std::u32string> split_words(const std::u32string& s);

}  // namespace qisa
