#include "trainer/generate.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "io/edit_distance.h"
#include "kernels/error.h"
#include "kernels/philox.h"
#include "trainer/evaluator.h"

namespace qisa {

namespace {
constexpr uint32_t kSampleStream = 0x53414D4Cu;  // "SAML"

// The next token from one row of logits, among ids [0, V) (the tokenizer's; the model's padding
// ids above them are never considered): argmax, or a draw from softmax(logits / temperature)
// restricted to the top_k largest, with uniform u in [0, 1).
int32_t pick(const float* logits, int64_t V, const SampleOptions& opt, double u) {
  if (opt.greedy) return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  std::vector<int32_t> ids(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) ids[i] = static_cast<int32_t>(i);
  size_t keep = ids.size();
  if (opt.top_k > 0 && opt.top_k < V) {
    keep = static_cast<size_t>(opt.top_k);
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    std::sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep));  // a fixed order for the draw
  }
  double mx = -INFINITY;
  for (size_t i = 0; i < keep; ++i) mx = std::max(mx, static_cast<double>(logits[ids[i]]));
  std::vector<double> p(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[ids[i]] - mx) / opt.temperature);
  double acc = 0;
  const double target = u * sum;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (target < acc) return ids[i];
  }
  return ids[keep - 1];
}

// Continue each of `seqs` (all the same length >= 1) by `tokens` tokens in one batch, drawing
// among the first `real_vocab` ids of each logits row.
void continue_batch(GPT& model, std::vector<std::vector<int32_t>>& seqs, int64_t tokens, const SampleOptions& opt,
                    int64_t first_seq, int64_t real_vocab) {
  const int T = model.config().block_size;
  const int64_t V = model.config().vocab_size, B = static_cast<int64_t>(seqs.size());
  QISA_CHECK(real_vocab >= 1 && real_vocab <= V,
             "sampling among " + std::to_string(real_vocab) + " token ids, the model has " + std::to_string(V),
             "the vocabulary does not belong to this model");
  std::vector<int32_t> x;
  for (int64_t k = 0; k < tokens; ++k) {
    const int len = static_cast<int>(std::min<size_t>(static_cast<size_t>(T), seqs[0].size()));
    x.resize(static_cast<size_t>(B * len));
    for (int64_t b = 0; b < B; ++b) std::copy(seqs[b].end() - len, seqs[b].end(), x.begin() + b * len);
    model.forward(x.data(), nullptr, B, len, StepContext{});
    const std::vector<float> logits = model.logits_host();
    for (int64_t b = 0; b < B; ++b) {
      const double u = philox_uniform_double(opt.seed, kSampleStream, static_cast<uint32_t>(first_seq + b),
                                             static_cast<uint64_t>(k));
      seqs[b].push_back(pick(logits.data() + (b * len + len - 1) * V, real_vocab, opt, u));
    }
  }
}
}  // namespace

std::vector<int32_t> generate(GPT& model, const std::vector<int32_t>& prompt, const SampleOptions& opt) {
  QISA_CHECK(!prompt.empty(), "generation needs a prompt of at least one token", "pass --prompt TEXT");
  QISA_CHECK(opt.greedy || opt.temperature > 0, "temperature " + std::to_string(opt.temperature) + " is not > 0",
             "use a temperature such as 0.8, or greedy decoding");
  const ModelConfig& m = model.config();
  QISA_CHECK(opt.vocab_size > 0 || m.vocab_multiple == 1,
             "the model's vocab_size " + std::to_string(m.vocab_size) + " is padded (model.vocab_multiple " +
                 std::to_string(m.vocab_multiple) + "): generation needs the tokenizer's vocabulary size",
             "set SampleOptions::vocab_size to the vocabulary's size (this is a bug in the caller)");
  const int64_t V = opt.vocab_size > 0 ? opt.vocab_size : m.vocab_size;
  for (int32_t id : prompt)
    QISA_CHECK(id >= 0 && id < V, "prompt token " + std::to_string(id) + " outside the vocabulary of " + std::to_string(V),
               "this is a bug in the caller");
  std::vector<std::vector<int32_t>> seqs{prompt};
  continue_batch(model, seqs, opt.tokens, opt, 0, V);
  return std::vector<int32_t>(seqs[0].begin() + static_cast<std::ptrdiff_t>(prompt.size()), seqs[0].end());
}

std::string GenerationScore::to_json() const {
  return nlohmann::json{{"gen_cer", cer}, {"prompts", prompts}, {"gen_tokens", tokens}}.dump();
}

GenerationScore generation_cer(GPT& model, const std::vector<int32_t>& split, int64_t prompts, int64_t tokens,
                               const Vocabulary& vocab) {
  const int T = model.config().block_size;
  const int64_t n = static_cast<int64_t>(split.size());
  QISA_CHECK(prompts >= 1 && tokens >= 1, "generation CER needs at least one prompt and one token",
             "pass --gen-prompts N --gen-tokens M with N, M >= 1");
  QISA_CHECK(n >= T + tokens,
             "the split has " + std::to_string(n) + " tokens, fewer than a prompt of block_size " + std::to_string(T) +
                 " plus " + std::to_string(tokens) + " continuation tokens",
             "use fewer --gen-tokens or a larger split");
  const std::unique_ptr<TextCodec> codec = make_codec(vocab, "the evaluation corpus");
  SampleOptions opt;
  opt.greedy = true;
  GenerationScore r;
  r.prompts = prompts;
  r.tokens = tokens;
  const int64_t span = n - T - tokens;  // prompts start at evenly spaced offsets in [0, span]
  double sum = 0;
  for (int64_t p0 = 0; p0 < prompts; p0 += model.max_batch()) {
    const int64_t B = std::min(model.max_batch(), prompts - p0);
    std::vector<std::vector<int32_t>> seqs;
    std::vector<int64_t> offs;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t o = prompts == 1 ? 0 : (p0 + b) * span / (prompts - 1);
      offs.push_back(o);
      seqs.emplace_back(split.begin() + o, split.begin() + o + T);
    }
    continue_batch(model, seqs, tokens, opt, p0, vocab.size());
    for (int64_t b = 0; b < B; ++b) {
      const std::u32string got = decode_ids(*codec, seqs[b].data() + T, tokens);
      const std::u32string want = decode_ids(*codec, split.data() + offs[b] + T, tokens);
      sum += static_cast<double>(edit_distance(got, want)) / static_cast<double>(std::max<size_t>(want.size(), 1));
    }
  }
  r.cer = sum / static_cast<double>(prompts);
  return r;
}

}  // namespace qisa
