// Teacher-forced evaluation on the first N non-overlapping windows of a split (offsets 0, T,
// 2T, ...; each T+1 tokens): cross-entropy, perplexity, and the paper's CER / WER of the
// argmax predictions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/edit_distance.h"
#include "io/vocabulary.h"
#include "trainer/model.h"

namespace qisa {

struct EvalResult {
  double ce = 0;       // mean cross-entropy per token (nats)
  double ppl = 0;      // exp(ce)
  double cer = 0;      // mean over windows of char edit distance / target chars
  double wer = 0;      // mean over windows (with >= 1 target word) of word edit distance / target words
  int64_t tokens = 0;  // tokens scored
  int64_t windows = 0;
  double ms_per_batch = 0;  // mean wall time of one forward pass over a batch of windows
  int64_t batch = 0;        // windows per forward pass
  std::string to_json() const;  // one line
};

// Sums over windows, so that ranks can each score a share of the windows and add up.
struct EvalSums {
  double ce = 0, cer = 0, wer = 0;  // sums of row losses, per-window CER, per-window WER
  double wer_windows = 0;           // windows with >= 1 target word
  double windows = 0, tokens = 0;
  double forward_ms = 0, batches = 0;  // time in full-size forward passes, and their count
  double batch = 0;                    // windows per full-size batch
  EvalResult finish() const;
};

// Windows a split of n tokens holds for block size T: min(wanted, (n - 1) / T); throws when
// not even one fits.
int64_t eval_windows(int64_t split_tokens, int T, int64_t wanted);

// Scores windows [first, first + count) of `split` (window w = tokens [w*T, w*T + T]).
// `vocab` decodes ids to text for CER and WER. A model with padded ids (model.vocab_multiple):
// the cross-entropy is over all its logits, padding included (as training computes it); the
// argmax predictions are among the vocabulary's ids only.
EvalSums evaluate_range(GPT& model, const std::vector<int32_t>& split, int64_t first, int64_t count,
                        const Vocabulary& vocab);

// The first min(windows, available) windows of the split, on one process.
EvalResult evaluate(GPT& model, const std::vector<int32_t>& split, int64_t windows, const Vocabulary& vocab);

// The text of token ids as code points, what CER and WER compare: char ids are characters;
// gpt2 ids are bytes, read as UTF-8 (a character cut at either end of the ids is U+FFFD).
std::u32string decode_ids(const TextCodec& codec, const int32_t* ids, int64_t n);

// Words of a code-point string, split on Unicode whitespace (as Python's str.split()).
std::vector<std::u32string> split_words(const std::u32string& s);

}  // namespace qisa
