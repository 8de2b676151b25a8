// Teacher-forced evaluation on the first N non-overlapping windows of a split (offsets 0, T,
// 2T, ...; each T+1 tokens): cross-entropy, perplexity, and the paper's CER / WER of the
// argmax predictions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/edit_distance.h"
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

// Words of a code-point string, split on Unicode whitespace (as Python's str.split()).
std::vector<std::u32string> split_words(const std::u32string& s);

}  // namespace qisa
