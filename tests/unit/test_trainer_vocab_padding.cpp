// model.vocab_multiple: a model whose vocab_size is the tokenizer's rounded up. The padding
// ids are never drawn by generation (greedy or sampled, at any temperature, with or without
// top_k), never predicted by the evaluator's argmax, and evaluation works against the smaller
// vocabulary.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "io/vocabulary.h"
#include "kernels/error.h"
#include "trainer/evaluator.h"
#include "trainer/generate.h"
#include "trainer/model.h"

namespace qisa {
namespace {

constexpr int64_t kReal = 10;  // the tokenizer's ids

struct Padded {
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  ModelConfig cfg;
  std::unique_ptr<GPT> gpt;
  Vocabulary vocab;

  explicit Padded(AttentionKind att) {
    cfg.vocab_multiple = 64;
    cfg.vocab_size = padded_vocab_size(kReal, cfg.vocab_multiple);  // 64
    cfg.block_size = 8;
    cfg.n_embd = 16;
    cfg.n_head = 2;
    cfg.n_layer = 2;
    cfg.attention = att;
    gpt = std::make_unique<GPT>(cfg, *be, 4);
    gpt->init(3);
    // Make every padding id the most likely token by far: a sampler or argmax that looked at
    // them would pick them.
    std::vector<float> p = gpt->params_host();
    const ParamEntry& bias = gpt->table().at("head.bias");
    for (int64_t i = kReal; i < cfg.vocab_size; ++i) p[bias.offset + i] = 50.0f;
    gpt->set_params_host(p);
    std::vector<std::string> tokens;
    for (int64_t i = 0; i < kReal; ++i) tokens.push_back(std::string(1, static_cast<char>('a' + i)));
    vocab = char_vocabulary(tokens);
  }
};

TEST(VocabPadding, GenerationNeverDrawsAPaddingId) {
  for (auto att : {AttentionKind::csa, AttentionKind::qisa}) {
    Padded m(att);
    ASSERT_EQ(m.cfg.vocab_size, 64);
    for (double temperature : {1.0, 100.0, 1e6}) {
      for (int top_k : {0, 3, 60}) {
        SampleOptions opt;
        opt.tokens = 120;
        opt.temperature = temperature;
        opt.top_k = top_k;
        opt.seed = 11;
        opt.vocab_size = kReal;
        const auto out = generate(*m.gpt, {1, 2, 3}, opt);
        ASSERT_EQ(out.size(), 120u);
        std::set<int32_t> seen(out.begin(), out.end());
        for (int32_t id : out) ASSERT_LT(id, kReal) << "temperature " << temperature << " top_k " << top_k;
        if (temperature >= 100.0 && top_k == 0) {
          EXPECT_GE(seen.size(), 5u);  // a flat draw over the real ids
        }
      }
    }
    SampleOptions greedy;
    greedy.greedy = true;
    greedy.tokens = 20;
    greedy.vocab_size = kReal;
    for (int32_t id : generate(*m.gpt, {0}, greedy)) EXPECT_LT(id, kReal);
  }
}

TEST(VocabPadding, GenerationRefusesAPaddedModelWithoutTheVocabularySize) {
  Padded m(AttentionKind::csa);
  SampleOptions opt;
  opt.tokens = 2;
  EXPECT_THROW(generate(*m.gpt, {1}, opt), Error);
  opt.vocab_size = 65;  // more ids than the model has
  EXPECT_THROW(generate(*m.gpt, {1}, opt), Error);
  opt.vocab_size = kReal;
  EXPECT_THROW(generate(*m.gpt, {12}, opt), Error);  // a prompt id the tokenizer does not have
}

TEST(VocabPadding, EvaluationAgainstTheSmallerVocabulary) {
  Padded m(AttentionKind::qisa);
  std::vector<int32_t> split;
  for (int i = 0; i < 200; ++i) split.push_back(static_cast<int32_t>((i * 7) % kReal));
  const EvalResult r = evaluate(*m.gpt, split, 10, m.vocab);
  EXPECT_EQ(r.windows, 10);
  EXPECT_TRUE(std::isfinite(r.ce));
  // the padding ids hold nearly all the probability mass (bias 50), so the loss is huge, but
  // the predictions are among the real ids: CER is a real edit distance of real characters
  EXPECT_GT(r.ce, 20.0);
  EXPECT_LE(r.cer, 1.0);
  const GenerationScore g = generation_cer(*m.gpt, split, 3, 5, m.vocab);
  EXPECT_LE(g.cer, 1.0);
  // a vocabulary that does not pad to the model's vocab_size is refused
  Vocabulary big = m.vocab;
  for (int i = 0; i < 60; ++i) big.tokens.push_back(std::string(1, static_cast<char>('A' + i % 26)) + std::to_string(i));
  EXPECT_THROW(evaluate(*m.gpt, split, 10, big), Error);
}

}  // namespace
}  // namespace qisa
