// Text generation with a trained model, and the generation-based CER: a metric no mask can
// leak into, because the model only ever sees the prompt and its own previous outputs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/vocabulary.h"
#include "trainer/model.h"

namespace qisa {

struct SampleOptions {
  int64_t tokens = 200;      // tokens to generate
  double temperature = 1.0;  // > 0; ignored when greedy
  int top_k = 0;             // 0 = all tokens
  uint64_t seed = 1;         // the draws are a pure function of (seed, position)
  bool greedy = false;       // argmax instead of sampling
  // The tokenizer's ids, [0, vocab_size): the model's padding ids above them (model.vocab_multiple)
  // are never drawn, greedy or sampled. 0: the model's vocab_size, which generate() accepts only
  // for a model without padding (model.vocab_multiple 1).
  int64_t vocab_size = 0;
};

// Autoregressive generation after `prompt` (at least one token): each step runs the model on
// the last block_size tokens and draws the next token from the last position's logits,
// restricted to the first opt.vocab_size ids.
std::vector<int32_t> generate(GPT& model, const std::vector<int32_t>& prompt, const SampleOptions& opt);

struct GenerationScore {
  double cer = 0;       // mean over prompts of edit distance(greedy continuation, true one) / its length
  int64_t prompts = 0;
  int64_t tokens = 0;   // continuation length per prompt
  std::string to_json() const;
};

// Held-out prompts of block_size tokens at `prompts` evenly spaced offsets of the split; the
// greedy continuation of `tokens` tokens is compared with the text that follows in the split.
GenerationScore generation_cer(GPT& model, const std::vector<int32_t>& split, int64_t prompts, int64_t tokens,
                               const Vocabulary& vocab);

}  // namespace qisa
