#include "trainer/evaluator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "io/tokenizer.h"
#include "kernels/error.h"

namespace qisa {

namespace {
bool is_space(char32_t c) {
  return c == U' ' || (c >= U'\t' && c <= U'\r') || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x1F ||
         c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace

std::u32string decode_ids(const TextCodec& codec, const int32_t* ids, int64_t n) {
  const auto cps = decode_utf8(codec.decode(ids, static_cast<size_t>(n)));  // always valid UTF-8
  QISA_CHECK(cps.has_value(), "decoded text is not valid UTF-8", "this is a bug in the tokenizer");
  return std::u32string(cps->begin(), cps->end());
}

std::vector<std::u32string> split_words(const std::u32string& s) {
  std::vector<std::u32string> words;
  std::u32string cur;
  for (char32_t c : s) {
    if (is_space(c)) {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

std::string EvalResult::to_json() const {
  nlohmann::json j{{"ce", ce},         {"ppl", ppl},         {"cer", cer},
                   {"wer", wer},       {"tokens", tokens},   {"windows", windows},
                   {"ms_per_batch", ms_per_batch}, {"batch", batch}};
  return j.dump();
}

int64_t eval_windows(int64_t split_tokens, int T, int64_t wanted) {
  const int64_t available = (split_tokens - 1) / T;
  QISA_CHECK(available >= 1,
             "the split has " + std::to_string(split_tokens) + " tokens, fewer than one window of block_size+1 = " +
                 std::to_string(T + 1),
             "use a larger validation split (qisa prepare --val-fraction)");
  return std::min(wanted, available);
}

EvalResult EvalSums::finish() const {
  EvalResult r;
  r.windows = static_cast<int64_t>(windows);
  r.tokens = static_cast<int64_t>(tokens);
  r.ce = tokens > 0 ? ce / tokens : 0.0;
  r.ppl = std::exp(r.ce);
  r.cer = windows > 0 ? cer / windows : 0.0;
  r.wer = wer_windows > 0 ? wer / wer_windows : 0.0;
  r.ms_per_batch = batches > 0 ? forward_ms / batches : 0.0;
  r.batch = static_cast<int64_t>(batch);
  return r;
}

EvalSums evaluate_range(GPT& model, const std::vector<int32_t>& split, int64_t first, int64_t count,
                        const Vocabulary& vocab) {
  const int T = model.config().block_size;
  const int64_t V = model.config().vocab_size, real = vocab.size();
  // The model's vocab_size is the vocabulary's rounded up to model.vocab_multiple; the padding
  // ids are never targets, and the greedy predictions below skip them.
  QISA_CHECK(padded_vocab_size(real, model.config().vocab_multiple) == V,
             "the vocabulary has " + std::to_string(real) + " entries, the model " + std::to_string(V) +
                 (model.config().vocab_multiple > 1
                      ? " (model.vocab_multiple " + std::to_string(model.config().vocab_multiple) + ")"
                      : std::string()),
             "evaluate on the corpus the model was trained on");
  QISA_CHECK(first >= 0 && count >= 0 && (count == 0 || (first + count) * T + 1 <= static_cast<int64_t>(split.size())),
             "eval windows [" + std::to_string(first) + ", " + std::to_string(first + count) + ") do not fit in " +
                 std::to_string(split.size()) + " tokens",
             "this is a bug in the caller");
  const std::unique_ptr<TextCodec> codec = make_codec(vocab, "the evaluation corpus");
  EvalSums r;
  const int64_t batch = std::max<int64_t>(1, std::min(model.max_batch(), count));  // windows per forward
  std::vector<int32_t> x, y, pred(static_cast<size_t>(T));
  for (int64_t w0 = first; w0 < first + count; w0 += batch) {
    const int64_t B = std::min(batch, first + count - w0);
    x.resize(static_cast<size_t>(B * T));
    y.resize(static_cast<size_t>(B * T));
    for (int64_t b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const size_t o = static_cast<size_t>((w0 + b) * T + t);
        x[b * T + t] = split[o];
        y[b * T + t] = split[o + 1];
      }
    const auto t0 = std::chrono::steady_clock::now();
    model.forward(x.data(), y.data(), B, T, StepContext{});
    // The first batch warms caches and threads up, and a partial last batch is smaller: time
    // the other full batches (the first one only when it is the only one).
    const bool only_one = count <= batch;
    if (B == batch && (w0 > first || only_one)) {
      r.forward_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      r.batches += 1;
    }
    const std::vector<float> losses = model.row_losses_host();
    const std::vector<float> logits = model.logits_host();
    for (float l : losses) r.ce += l;
    for (int64_t b = 0; b < B; ++b) {
      for (int t = 0; t < T; ++t) {
        const float* row = logits.data() + (b * T + t) * V;
        pred[t] = static_cast<int32_t>(std::max_element(row, row + real) - row);
      }
      const std::u32string got = decode_ids(*codec, pred.data(), T);
      const std::u32string want = decode_ids(*codec, y.data() + b * T, T);
      r.cer += static_cast<double>(edit_distance(got, want)) / static_cast<double>(std::max<size_t>(want.size(), 1));
      const auto want_words = split_words(want);
      if (!want_words.empty()) {
        r.wer += static_cast<double>(edit_distance(split_words(got), want_words)) / static_cast<double>(want_words.size());
        r.wer_windows += 1;
      }
    }
  }
  r.windows = static_cast<double>(count);
  r.tokens = static_cast<double>(count * T);
  r.batch = static_cast<double>(batch);
  return r;
}

EvalResult evaluate(GPT& model, const std::vector<int32_t>& split, int64_t windows, const Vocabulary& vocab) {
  const int T = model.config().block_size;
  return evaluate_range(model, split, 0, eval_windows(static_cast<int64_t>(split.size()), T, windows), vocab).finish();
}

}  // namespace qisa
