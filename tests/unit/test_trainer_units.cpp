// Trainer pieces on their own (the sampler: test_trainer_sampler.cpp): Pauli drawing, parameter
// table, LR schedule, metrics helpers, model files, and the determinism promises of a training step.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <array>
#include <memory>
#include <random>
#include <set>

#include "io/bpe.h"
#include "io/model_file.h"
#include "io/tokenizer.h"
#include "expect_error.h"
#include "fake_device_backend.h"
#include "kernels/error.h"
#include "kernels/philox.h"
#include "test_util.h"
#include "trainer/evaluator.h"
#include "trainer/model.h"
#include "trainer/model_io.h"
#include "trainer/optimizer.h"
#include "trainer/param_table.h"
#include "trainer/sampler.h"

namespace qisa {
namespace {

ModelConfig small_model(AttentionKind att, int C = 12, int H = 3, int L = 2, int T = 8, int64_t V = 13) {
  ModelConfig m;
  m.vocab_size = V;
  m.block_size = T;
  m.n_embd = C;
  m.n_head = H;
  m.n_layer = L;
  m.attention = att;
  return m;
}

TEST(PauliDraw, DeterministicNonIdentityAndNearTheIdentityProbability) {
  const auto a = draw_pauli_strings(7, 0, 4, 64, 5, 0.9);
  EXPECT_EQ(a, draw_pauli_strings(7, 0, 4, 64, 5, 0.9));
  EXPECT_NE(a, draw_pauli_strings(7, 1, 4, 64, 5, 0.9));  // per layer
  EXPECT_NE(a, draw_pauli_strings(8, 0, 4, 64, 5, 0.9));  // per seed
  ASSERT_EQ(a.size(), 256u);
  int64_t identity = 0, total = 0;
  std::set<char> letters;
  for (const auto& s : a) {
    ASSERT_EQ(s.size(), 5u);
    EXPECT_NE(s, "IIIII");
    for (char c : s) {
      letters.insert(c);
      identity += c == 'I';
      ++total;
    }
  }
  EXPECT_EQ(letters, (std::set<char>{'I', 'X', 'Y', 'Z'}));
  // Conditioned on "not all I", P(I) = 1 - (0.1 / (1 - 0.9^5)) = 0.756 for 5 letters;
  // 1280 letters give a standard deviation of about 0.012.
  const double frac = static_cast<double>(identity) / static_cast<double>(total);
  EXPECT_GT(frac, 0.70);
  EXPECT_LT(frac, 0.81);
}

TEST(ParamTableLayout, FusedAttentionWeightsAreAdjacent) {
  for (auto att : {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a}) {
    ParamTable t(small_model(att));
    const auto& q = t.at("blocks.1.attn.q.weight");
    EXPECT_EQ(t.at("blocks.1.attn.k.weight").offset, q.offset + q.numel);
    if (att == AttentionKind::csa) {
      EXPECT_EQ(t.at("blocks.1.attn.v.weight").offset, q.offset + 2 * q.numel);
    } else {
      const auto& qb = t.at("blocks.1.attn.q.bias");
      EXPECT_EQ(t.at("blocks.1.attn.k.bias").offset, qb.offset + qb.numel);
    }
    int64_t sum = 0;
    for (const auto& e : t.entries()) {
      EXPECT_EQ(e.offset, sum) << e.name;  // no gaps: one flat buffer
      sum += e.numel;
    }
    EXPECT_EQ(sum, t.total());
    EXPECT_THROW(t.at("blocks.9.attn.q.weight"), Error);
  }
}

TEST(LearningRate, ConstantWarmupAndCosine) {
  TrainConfig c;
  c.lr = 1e-3;
  c.steps = 100;
  EXPECT_DOUBLE_EQ(learning_rate(c, 1), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(c, 100), 1e-3);
  c.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(learning_rate(c, 5), 0.5e-3);
  EXPECT_DOUBLE_EQ(learning_rate(c, 10), 1e-3);
  c.lr_schedule = "cosine";
  c.min_lr = 1e-4;
  EXPECT_DOUBLE_EQ(learning_rate(c, 10), 1e-3);
  EXPECT_NEAR(learning_rate(c, 55), 0.55e-3, 1e-12);  // halfway
  EXPECT_NEAR(learning_rate(c, 100), 1e-4, 1e-12);
}

// linear: after the warm-up, a straight line from lr (at warmup_steps) to min_lr (at steps).
TEST(LearningRate, LinearDecaysToMinLrAtTheLastStep) {
  TrainConfig c;
  c.lr = 1e-3;
  c.min_lr = 1e-4;
  c.steps = 100;
  c.warmup_steps = 10;
  c.lr_schedule = "linear";
  EXPECT_DOUBLE_EQ(learning_rate(c, 5), 0.5e-3);  // warm-up as before
  EXPECT_DOUBLE_EQ(learning_rate(c, 10), 1e-3);
  EXPECT_NEAR(learning_rate(c, 28), 8.2e-4, 1e-15);   // 18 of 90 steps: 1e-3 - 0.2 * 9e-4
  EXPECT_NEAR(learning_rate(c, 55), 5.5e-4, 1e-15);   // halfway
  EXPECT_NEAR(learning_rate(c, 91), 1.9e-4, 1e-15);
  EXPECT_DOUBLE_EQ(learning_rate(c, 100), 1e-4);
  EXPECT_DOUBLE_EQ(learning_rate(c, 130), 1e-4);      // past train.steps (a resume with more steps): stays
  c.warmup_steps = 0;
  c.min_lr = 0;
  EXPECT_NEAR(learning_rate(c, 1), 0.99e-3, 1e-15);
  EXPECT_NEAR(learning_rate(c, 75), 0.25e-3, 1e-15);
  EXPECT_DOUBLE_EQ(learning_rate(c, 100), 0.0);
}

// train.weight_decay_on = matrices: one AdamW step from the same state, tensor by tensor, is
// bit for bit the step with decay everywhere (weight matrices, embeddings, QISA value maps) or
// the step without any (biases, LayerNorm weights, QISA-A angles).
TEST(WeightDecayOn, MatricesDecayExactlyTheWeightMatrices) {
  auto be = make_cpu_backend(1);
  for (auto att : {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a}) {
    SCOPED_TRACE(to_string(att));
    const ParamTable table(small_model(att, 8, 2, 2, 4, 11));
    const int64_t n = table.total();
    std::mt19937_64 rng(7);
    const auto p0 = test::random_vector<float>(rng, n, -1, 1), g = test::random_vector<float>(rng, n, -1, 1);
    auto step = [&](double wd, const std::string& on) {
      std::vector<float> p = p0;
      TrainConfig tc;
      tc.weight_decay = wd;
      tc.weight_decay_on = on;
      AdamW opt(*be, n, decay_spans(table, 0, n, on));
      opt.update(p.data(), g.data(), 1, 0.1, tc, 1.0f);
      return p;
    };
    const auto decayed = step(0.5, "all"), plain = step(0.0, "all"), matrices = step(0.5, "matrices");
    std::set<std::string> got;
    for (const auto& e : table.entries()) {
      auto part = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + e.offset, v.begin() + e.offset + e.numel);
      };
      ASSERT_NE(part(decayed), part(plain)) << e.name;  // decay shows in every tensor
      if (part(matrices) == part(decayed)) got.insert(e.name);
      else EXPECT_EQ(part(matrices), part(plain)) << e.name;
    }
    std::set<std::string> want = {"tok_emb.weight", "pos_emb.weight", "head.weight"};
    for (int l = 0; l < 2; ++l)
      for (const char* w : {"attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.proj.weight", "mlp.fc.weight",
                            "mlp.proj.weight"})
        if (att != AttentionKind::qisa_a || std::string(w) != "attn.v.weight") want.insert(block_param(l, w));
    EXPECT_EQ(got, want);
  }
}

// ZeRO-1 cuts the padded flat buffer into equal shards wherever the tensors happen to lie: each
// shard's optimizer, with the decay spans of its range, gives the same bits as one optimizer over
// the whole buffer (parameters and both moments, over two steps).
TEST(WeightDecayOn, ShardsCutAnywhereGiveTheWholeBuffersUpdate) {
  auto be = make_cpu_backend(1);
  const ParamTable table(small_model(AttentionKind::qisa_a, 8, 2, 2, 4, 11));
  const int64_t n = table.total();
  TrainConfig tc;
  tc.weight_decay = 0.5;
  tc.weight_decay_on = "matrices";
  for (int64_t world : {2, 3, 7}) {
    SCOPED_TRACE("world " + std::to_string(world));
    const int64_t shard = (n + world - 1) / world, padded = shard * world;
    std::mt19937_64 rng(11);
    std::vector<float> whole = test::random_vector<float>(rng, n, -1, 1);
    whole.resize(static_cast<size_t>(padded), 0.0f);  // the padding is zero, as in GPT
    std::vector<float> sharded = whole;
    AdamW all(*be, padded, decay_spans(table, 0, padded, "matrices"));
    std::vector<std::unique_ptr<AdamW>> parts;
    for (int64_t r = 0; r < world; ++r) {
      const auto spans = decay_spans(table, r * shard, shard, "matrices");
      int64_t covered = 0;
      for (const auto& s : spans) covered += s.size;
      EXPECT_EQ(covered, shard);
      parts.push_back(std::make_unique<AdamW>(*be, shard, spans));
    }
    for (int64_t t = 1; t <= 2; ++t) {
      std::vector<float> g = test::random_vector<float>(rng, n, -1, 1);
      g.resize(static_cast<size_t>(padded), 0.0f);
      all.update(whole.data(), g.data(), t, 0.1, tc, 1.0f);
      for (int64_t r = 0; r < world; ++r)
        parts[r]->update(sharded.data() + r * shard, g.data() + r * shard, t, 0.1, tc, 1.0f);
    }
    EXPECT_EQ(sharded, whole);
    for (int64_t r = 0; r < world; ++r) {
      EXPECT_TRUE(std::equal(parts[r]->m(), parts[r]->m() + shard, all.m() + r * shard)) << r;
      EXPECT_TRUE(std::equal(parts[r]->v(), parts[r]->v() + shard, all.v() + r * shard)) << r;
    }
    for (int64_t i = n; i < padded; ++i) EXPECT_EQ(whole[i], 0.0f);  // padding stays zero
  }
  // "all": one span, the single call of before
  EXPECT_EQ(decay_spans(table, 0, n, "all"), (std::vector<DecaySpan>{{0, n, true}}));
}

TEST(EvalMetrics, EditDistanceAndWords) {
  auto cps = [](const std::u32string& s) { return std::vector<char32_t>(s.begin(), s.end()); };
  EXPECT_EQ(edit_distance(cps(U"kitten"), cps(U"sitting")), 3);
  EXPECT_EQ(edit_distance(cps(U""), cps(U"abc")), 3);
  EXPECT_EQ(edit_distance(cps(U"abc"), cps(U"abc")), 0);
  EXPECT_EQ(split_words(U"  to be,\tor\nnot "), (std::vector<std::u32string>{U"to", U"be,", U"or", U"not"}));
  EXPECT_EQ(edit_distance(split_words(U"to be or not"), split_words(U"to be nor not to")), 2);
}

// What CER and WER compare: char ids are characters; gpt2 ids are bytes read as UTF-8, so a
// character cut at the edge of a window counts as one U+FFFD.
TEST(EvalMetrics, DecodeIdsToCodePoints) {
  const auto chars = make_codec(char_vocabulary({" ", "a", "é"}));
  const std::vector<int32_t> c = {1, 0, 2};
  EXPECT_EQ(decode_ids(*chars, c.data(), 3), U"a é");
  Vocabulary bpe;
  bpe.tokenizer = "gpt2";
  for (int b = 0; b < 256; ++b) bpe.tokens.push_back(encode_utf8(gpt2_byte_char(static_cast<uint8_t>(b))));
  const auto gpt2 = make_codec(bpe);
  const std::vector<int32_t> g = gpt2->encode("h\u00e9 \u65e5");  // every byte its own token
  ASSERT_EQ(g.size(), 7u);
  EXPECT_EQ(decode_ids(*gpt2, g.data(), 7), U"h\u00e9 \u65e5");
  EXPECT_EQ(decode_ids(*gpt2, g.data(), 2), U"h\uFFFD");      // é cut after its first byte
  EXPECT_EQ(decode_ids(*gpt2, g.data() + 2, 5), U"\uFFFD \u65e5");
}

TEST(ModelFile, RoundTripKeepsEveryParameterAndPauliString) {
  test::TempDir tmp;
  auto be = make_cpu_backend(1);
  for (auto att : {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a}) {
    GPT model(small_model(att), *be, 2);
    model.init(99);
    const std::string path = tmp / "m.h5";
    write_model_file(path, snapshot_model(model, "model: {}\n", 5, char_vocabulary({"a", "b"})));
    ModelFile f = read_model_file(path);
    EXPECT_EQ(f.step, 5);
    EXPECT_EQ(f.vocab, char_vocabulary({"a", "b"}));
    GPT other(small_model(att), *be, 2);
    load_model_state(other, f, path);
    EXPECT_EQ(other.params_host(), model.params_host());
    EXPECT_EQ(other.pauli(), model.pauli());
    // a model of another kind refuses the file, naming it
    GPT wrong(small_model(att == AttentionKind::csa ? AttentionKind::qisa : AttentionKind::csa), *be, 2);
    try {
      load_model_state(wrong, f, path);
      ADD_FAILURE() << "loaded a file of another attention kind";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

TEST(ModelFile, NotAModelFileIsAClearError) {
  test::TempDir tmp;
  test::write_file(tmp / "x.h5", "not hdf5");
  EXPECT_THROW(read_model_file(tmp / "x.h5"), Error);
  EXPECT_THROW(read_model_file(tmp / "missing.h5"), Error);
}

// backward() runs the cross-entropy backward in place on the logits buffer, so the logits of
// the last forward are gone after it: logits_host() then refuses instead of returning
// dL/dlogits, and a new forward brings the logits back.
TEST(ModelLogits, AfterBackwardAreRefusedNotReturnedAsTheGradient) {
  auto be = make_cpu_backend(1);
  for (auto att : {AttentionKind::csa, AttentionKind::qisa}) {
    SCOPED_TRACE(to_string(att));
    const ModelConfig m = small_model(att);
    GPT model(m, *be, 2);
    model.init(5);
    const int T = m.block_size;
    std::vector<int32_t> x(2 * T), y(2 * T);
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = static_cast<int32_t>((i * 7 + 3) % m.vocab_size);
      y[i] = static_cast<int32_t>((i * 5 + 1) % m.vocab_size);
    }
    model.forward(x.data(), y.data(), 2, T, StepContext{});
    const std::vector<float> after_forward = model.logits_host();
    model.backward(1.0f / static_cast<float>(2 * T), GradMode::overwrite);
    test::expect_mentions(test::error_of([&] { (void)model.logits_host(); }),
                          {"logits_host() after backward()", "dL/dlogits", "hint: read the logits between forward()"});
    model.forward(x.data(), y.data(), 2, T, StepContext{});
    EXPECT_EQ(model.logits_host(), after_forward);
  }
}

// The first micro-batch overwrites every parameter gradient (nothing zeroes them first), also
// at a shorter T than block_size, where the positions past T had no token and get gradient 0;
// a second micro-batch in accumulate mode adds the same again.
TEST(ModelBackward, OverwriteWritesEveryGradientAndAccumulateAdds) {
  auto be = make_cpu_backend(2);
  for (auto att : {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a}) {
    SCOPED_TRACE(to_string(att));
    const ModelConfig m = small_model(att);
    GPT model(m, *be, 2);
    model.init(5);
    const int T = m.block_size - 3;
    std::vector<int32_t> x(2 * T), y(2 * T);
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = static_cast<int32_t>((i * 7 + 3) % m.vocab_size);
      y[i] = static_cast<int32_t>((i * 5 + 1) % m.vocab_size);
    }
    std::vector<float> g(static_cast<size_t>(model.flat_size()), std::numeric_limits<float>::quiet_NaN());
    be->upload(model.grads(), g.data(), g.size() * sizeof(float));
    model.forward(x.data(), y.data(), 2, T, StepContext{});
    model.backward(1.0f, GradMode::overwrite);
    const std::vector<float> once = model.grads_host();
    for (size_t i = 0; i < once.size(); ++i) ASSERT_TRUE(std::isfinite(once[i])) << "gradient " << i << " not written";
    const auto& pos = model.table().at("pos_emb.weight");
    for (int64_t e = static_cast<int64_t>(T) * m.n_embd; e < pos.numel; ++e) EXPECT_EQ(once[pos.offset + e], 0.0f);
    model.forward(x.data(), y.data(), 2, T, StepContext{});
    model.backward(1.0f, GradMode::accumulate);
    const std::vector<float> twice = model.grads_host();
    // (the embedding scatter adds row by row into the gradient, so the order differs: not exact)
    for (size_t i = 0; i < once.size(); ++i) ASSERT_NEAR(twice[i], 2.0f * once[i], 1e-6f * (1 + std::fabs(once[i]))) << i;
  }
}

TEST(ModelInit, FollowsThePyTorchDistributions) {
  auto be = make_cpu_backend(1);
  ModelConfig m = small_model(AttentionKind::qisa_a, 16, 2, 1, 8, 200);
  GPT model(m, *be, 1);
  model.init(3);
  const auto p = model.params_host();
  auto stats = [&](const std::string& name) {
    const auto& e = model.table().at(name);
    double lo = 1e9, hi = -1e9, s = 0, s2 = 0;
    for (int64_t i = 0; i < e.numel; ++i) {
      const double x = p[e.offset + i];
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      s += x;
      s2 += x * x;
    }
    return std::array<double, 4>{lo, hi, s / e.numel, s2 / e.numel};
  };
  auto emb = stats("tok_emb.weight");  // N(0,1), 3200 values
  EXPECT_NEAR(emb[2], 0.0, 0.1);
  EXPECT_NEAR(emb[3], 1.0, 0.1);
  auto fc = stats("blocks.0.mlp.fc.weight");  // U(-1/4, 1/4)
  EXPECT_GE(fc[0], -0.25);
  EXPECT_LE(fc[1], 0.25);
  EXPECT_LT(fc[0], -0.2);
  auto proj = stats("blocks.0.mlp.proj.weight");  // fan-in 4C = 64: U(-1/8, 1/8)
  EXPECT_GE(proj[0], -0.125);
  EXPECT_LE(proj[1], 0.125);
  EXPECT_LT(proj[0], -0.1);
  auto rx = stats("blocks.0.attn.v.rx");  // U(-pi, pi)
  EXPECT_GE(rx[0], -M_PI);
  EXPECT_LE(rx[1], M_PI);
  auto ln = stats("blocks.0.ln1.weight");
  EXPECT_EQ(ln[0], 1.0);
  EXPECT_EQ(ln[1], 1.0);
  auto lnb = stats("ln_f.bias");
  EXPECT_EQ(lnb[0], 0.0);
  EXPECT_EQ(lnb[1], 0.0);
  // same seed, same model; another seed, another model
  GPT again(m, *be, 1);
  again.init(3);
  EXPECT_EQ(again.params_host(), p);
  again.init(4);
  EXPECT_NE(again.params_host(), p);
}

// The draws are 16 Philox blocks at a time in SIMD lanes; each value is still the scalar
// definition of its element: N(0,1) from block (element, "INIT", parameter index) for the
// embeddings, U(-1/sqrt(C), 1/sqrt(C)) for a Linear weight. Sizes not a multiple of 16.
TEST(ModelInit, EveryValueIsItsElementsPhiloxDraw) {
  constexpr uint32_t kInit = 0x494E4954u;  // "INIT" (trainer/model.cpp kInitStream)
  ModelConfig m = small_model(AttentionKind::csa, 25, 5, 2, 8, 301);
  auto be = make_cpu_backend(2);
  GPT g(m, *be, 1);
  g.init(29);
  const auto p = g.params_host();
  const auto& entries = g.table().entries();
  int checked = 0;
  for (size_t e = 0; e < entries.size(); ++e) {
    const auto& en = entries[e];
    const bool normal = en.name == "tok_emb.weight" || en.name == "pos_emb.weight";
    if (!normal && en.name != "blocks.1.attn.q.weight" && en.name != "head.bias") continue;
    ASSERT_NE(en.numel % 16, 0) << en.name;
    for (int64_t i = 0; i < en.numel; ++i) {
      const auto s = static_cast<uint32_t>(e);
      const float want = normal ? static_cast<float>(qisa::philox_normal_double(29, kInit, s, i))
                                : static_cast<float>((2.0 * qisa::philox_uniform_double(29, kInit, s, i) - 1.0) /
                                                     std::sqrt(25.0));
      ASSERT_EQ(p[en.offset + i], want) << en.name << " " << i;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

// Initialisation runs on the backend's threads and writes in place where the host can address
// the backend's memory: the values are pure functions of (seed, parameter, element), so 1 and 3
// threads, and a backend whose memory must be staged (the fake device: every byte scrambled
// unless it goes through upload), give the same bits.
TEST(ModelInit, IsTheSameOnAnyThreadCountAndThroughStaging) {
  ModelConfig m = small_model(AttentionKind::qisa, 24, 2, 2, 8, 301);
  auto one = make_cpu_backend(1);
  GPT a(m, *one, 1);
  a.init(17);
  auto three = make_cpu_backend(3);
  GPT b(m, *three, 1);
  b.init(17);
  EXPECT_EQ(a.params_host(), b.params_host());
  test::FakeDeviceBackend device;
  GPT c(m, device, 1);
  c.init(17);
  EXPECT_EQ(a.params_host(), c.params_host());
}

// One optimizer step on a fixed batch, with dropout, on `threads` threads and `micro`
// sequences per forward: the gradients and the parameters after the step.
struct StepResult {
  std::vector<float> grads, params;
  bool operator==(const StepResult& o) const { return grads == o.grads && params == o.params; }
};
StepResult one_step(AttentionKind att, int threads, int64_t micro, double dropout) {
  auto be = make_cpu_backend(threads);
  ModelConfig m = small_model(att, 12, 3, 2, 8, 13);
  m.dropout = dropout;
  const int64_t B = 8;
  const int T = m.block_size;
  GPT model(m, *be, micro);
  model.init(11);
  std::vector<int32_t> x(B * T), y(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    x[i] = static_cast<int32_t>((i * 7 + 3) % m.vocab_size);
    y[i] = static_cast<int32_t>((i * 5 + 1) % m.vocab_size);
  }
  for (int64_t m0 = 0; m0 < B; m0 += micro) {
    StepContext ctx{true, 5, 1, m0};
    model.forward(x.data() + m0 * T, y.data() + m0 * T, micro, T, ctx);
    model.backward(1.0f / static_cast<float>(B * T), m0 == 0 ? GradMode::overwrite : GradMode::accumulate);
  }
  StepResult r;
  r.grads = model.grads_host();
  TrainConfig tc;
  AdamW opt(*be, model.num_params());
  opt.update(model.params(), model.grads(), 1, 1e-3, tc, 1.0f);
  r.params = model.params_host();
  return r;
}

TEST(TrainingStep, BitwiseIdenticalForAnyThreadCount) {
  for (auto att : {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a})
    EXPECT_TRUE(one_step(att, 1, 8, 0.1) == one_step(att, 2, 8, 0.1)) << to_string(att);
}

TEST(TrainingStep, MicroBatchingGivesTheSameStepUpToSummationOrder) {
  // Dropout masks depend on the global element index, not on the micro-batch, so splitting
  // a batch of 8 into 4 x 2 changes only the order in which gradients are summed.
  for (auto att : {AttentionKind::csa, AttentionKind::qisa, AttentionKind::qisa_a}) {
    const auto whole = one_step(att, 1, 8, 0.2), split = one_step(att, 1, 2, 0.2);
    EXPECT_LT(test::max_rel_err(split.grads, whole.grads), 1e-5) << to_string(att);
    EXPECT_NE(split.grads, one_step(att, 1, 2, 0.0).grads);  // dropout was on
  }
}

TEST(TrainingStep, DropoutChangesTheStepAndZeroDropoutIsDeterministic) {
  EXPECT_NE(one_step(AttentionKind::qisa, 1, 8, 0.3).grads, one_step(AttentionKind::qisa, 1, 8, 0.0).grads);
  EXPECT_TRUE(one_step(AttentionKind::qisa, 1, 8, 0.0) == one_step(AttentionKind::qisa, 1, 8, 0.0));
}

}  // namespace
}  // namespace qisa
