// Which windows a training step reads (trainer/sampler.h), and reading them (io/corpus_reader.h):
// each random epoch is a permutation of every valid offset, a pure function of (seed, epoch,
// index); sequential windows tile the split; a rank reads only its slice, and the slices of any
// world size concatenate to the world-1 step.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "io/corpus.h"
#include "io/corpus_reader.h"
#include "kernels/error.h"
#include "expect_error.h"
#include "test_util.h"
#include "trainer/sampler.h"

namespace qisa {
namespace {

using test::error_of;
using test::expect_mentions;

std::vector<int64_t> epoch_offsets(const WindowSampler& s, int64_t epoch) {
  const int64_t m = s.samples_per_epoch();
  std::vector<int64_t> out(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) out[i] = s.offset(epoch * m + i);
  return out;
}

// ------------------------------------------------------------------ random

TEST(RandomSampler, EachEpochIsAPermutationOfEveryValidOffset) {
  const int T = 16;
  for (const int64_t m : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{1000}, int64_t{65537}}) {
    const auto s = make_sampler("random", 1234, m + T, T);
    ASSERT_EQ(s->samples_per_epoch(), m) << "M = n_tokens - T valid offsets";
    for (int64_t e : {0, 1, 7}) {
      SCOPED_TRACE("M = " + std::to_string(m) + ", epoch " + std::to_string(e));
      std::vector<int> seen(static_cast<size_t>(m), 0);
      for (int64_t o : epoch_offsets(*s, e)) {
        ASSERT_GE(o, 0);
        ASSERT_LT(o, m);  // the last valid offset is n_tokens - T - 1: its window ends at the last token
        ++seen[o];
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), m) << "every offset exactly once";
      EXPECT_EQ(s->epoch_of(e * m), e);
      EXPECT_EQ(s->epoch_of(e * m + m - 1), e);
    }
  }
}

TEST(RandomSampler, EpochsAndSeedsGiveDifferentOrders) {
  const int T = 8;
  const int64_t m = 1000;
  const auto a = make_sampler("random", 42, m + T, T);
  const auto b = make_sampler("random", 43, m + T, T);
  const auto e0 = epoch_offsets(*a, 0), e1 = epoch_offsets(*a, 1), e2 = epoch_offsets(*a, 2);
  const auto f0 = epoch_offsets(*b, 0);
  auto same = [](const std::vector<int64_t>& x, const std::vector<int64_t>& y) {
    int64_t n = 0;
    for (size_t i = 0; i < x.size(); ++i) n += x[i] == y[i];
    return n;
  };
  // Two independent random permutations agree in ~1 place; allow a generous 20.
  EXPECT_LT(same(e0, e1), 20);
  EXPECT_LT(same(e1, e2), 20);
  EXPECT_LT(same(e0, e2), 20);
  EXPECT_LT(same(e0, f0), 20);
  // and not merely a rotation or reversal of one another
  std::vector<int64_t> r(e0.rbegin(), e0.rend());
  EXPECT_LT(same(r, e1), 20);
  // small M too: over 64 seeds, M = 3 must show several of its 6 orders
  std::set<std::vector<int64_t>> orders;
  for (uint64_t seed = 0; seed < 64; ++seed) orders.insert(epoch_offsets(*make_sampler("random", seed, 3 + T, T), 0));
  EXPECT_EQ(orders.size(), 6u);
}

TEST(RandomSampler, IsAPureFunctionOfSeedEpochAndIndex) {
  const auto a = make_sampler("random", 7, 100000, 64);
  const auto b = make_sampler("random", 7, 100000, 64);
  std::vector<int64_t> fwd;
  for (int64_t g = 0; g < 5000; ++g) fwd.push_back(a->offset(g * 37));
  for (int64_t g = 4999; g >= 0; --g) EXPECT_EQ(b->offset(g * 37), fwd[g]);  // any order, any instance
  EXPECT_EQ(a->offset(123456789), make_sampler("random", 7, 100000, 64)->offset(123456789));
}

TEST(RandomSampler, OffsetsAreSpreadOverTheSplit) {
  // The first 20000 samples of an epoch over 10^6 offsets, in 100 bins: chi-square with 99
  // degrees of freedom has mean 99 and sd 14; 200 is a loose bound (p < 1e-8).
  const int64_t m = 1000000;
  for (uint64_t seed : {1ull, 2ull, 3ull}) {
    const auto s = make_sampler("random", seed, m + 16, 16);
    std::vector<double> bins(100, 0);
    const int n = 20000;
    double sum_gap = 0, cov = 0;
    int64_t prev = s->offset(0);
    for (int g = 0; g < n; ++g) {
      const int64_t o = s->offset(3 * m + g);  // epoch 3
      bins[o * 100 / m] += 1;
      if (g) sum_gap += std::abs(static_cast<double>(o - prev));
      cov += (static_cast<double>(g) / n - 0.5) * (static_cast<double>(o) / m - 0.5);
      prev = o;
    }
    double chi2 = 0;
    for (double c : bins) chi2 += (c - n / 100.0) * (c - n / 100.0) / (n / 100.0);
    EXPECT_LT(chi2, 200) << "seed " << seed;
    // consecutive samples are not neighbours: E|o_{g+1} - o_g| = M/3 for independent draws
    EXPECT_NEAR(sum_gap / (n - 1) / m, 1.0 / 3, 0.02) << "seed " << seed;
    // no trend of offset with index: correlation (cov / (1/12)) near 0 (sd ~ 0.007)
    EXPECT_LT(std::abs(cov / n * 12), 0.05) << "seed " << seed;
  }
}

TEST(RandomSampler, HugeSplitsStayInRange) {
  const int64_t n = (int64_t{1} << 40) + 12345;
  const auto s = make_sampler("random", 9, n, 1024);
  EXPECT_EQ(s->samples_per_epoch(), n - 1024);
  for (int64_t g = 0; g < 10000; ++g) {
    const int64_t o = s->offset(g * 1000003);
    ASSERT_GE(o, 0);
    ASSERT_LE(o, n - 1024 - 1);
  }
}

// ------------------------------------------------------------------ sequential

TEST(SequentialSampler, NonOverlappingWindowsTilingTheSplit) {
  for (const auto& [n, T] : std::vector<std::pair<int64_t, int>>{{17, 16}, {33, 16}, {40, 16}, {1000, 7}, {1001, 8}}) {
    const auto s = make_sampler("sequential", 99, n, T);
    const int64_t w = (n - 1) / T;
    ASSERT_EQ(s->samples_per_epoch(), w) << n << " " << T;
    for (int64_t g = 0; g < 3 * w; ++g) EXPECT_EQ(s->offset(g), (g % w) * T);
    EXPECT_LE((w - 1) * T + T + 1, n) << "the last window fits";
    EXPECT_EQ(s->epoch_of(2 * w), 2);
  }
  // the seed does not matter
  EXPECT_EQ(make_sampler("sequential", 1, 1000, 7)->offset(55), make_sampler("sequential", 2, 1000, 7)->offset(55));
}

// ------------------------------------------------------------------ errors

TEST(MakeSampler, UnknownKindListsTheKinds) {
  expect_mentions(error_of([] { make_sampler("shuffle", 1, 1000, 16); }), {"'shuffle'", "random", "sequential"});
}

TEST(MakeSampler, SplitShorterThanOneWindowNamesBothNumbers) {
  for (const std::string kind : {"random", "sequential"}) {
    expect_mentions(error_of([&] { make_sampler(kind, 1, 16, 16); }), {"16 tokens", "17", "block_size", "hint"});
    EXPECT_NO_THROW(make_sampler(kind, 1, 17, 16));  // exactly one window
    EXPECT_EQ(make_sampler(kind, 1, 17, 16)->offset(5), 0);
  }
}

// ------------------------------------------------------------------ rank slices

TEST(RankSlice, ContiguousSlicesOfTheGlobalStep) {
  EXPECT_EQ(rank_slice(0, 8, 0, 1).first, 0);
  EXPECT_EQ(rank_slice(0, 8, 0, 1).count, 8);
  EXPECT_EQ(rank_slice(3, 8, 0, 2).first, 24);
  EXPECT_EQ(rank_slice(3, 8, 1, 2).first, 28);
  EXPECT_EQ(rank_slice(3, 8, 1, 2).count, 4);
  EXPECT_EQ(rank_slice(5, 12, 3, 4).first, 69);
  EXPECT_EQ(rank_slice(5, 12, 3, 4).count, 3);
  for (int world : {1, 2, 4, 8}) {
    int64_t next = 7 * 64;
    for (int r = 0; r < world; ++r) {
      const RankSlice s = rank_slice(7, 64, r, world);
      EXPECT_EQ(s.first, next);
      next += s.count;
    }
    EXPECT_EQ(next, 8 * 64);
  }
}

TEST(RankSlice, BatchNotDivisibleByWorldIsAnErrorWithAHint) {
  expect_mentions(error_of([] { rank_slice(0, 10, 0, 4); }), {"10", "4 ranks", "divisible by the number of ranks"});
  EXPECT_THROW(rank_slice(0, 8, 2, 2), Error);
  EXPECT_THROW(rank_slice(0, 8, -1, 2), Error);
  EXPECT_THROW(rank_slice(0, 8, 0, 0), Error);
}

TEST(SplitWindows, InputsAndTargetsShiftedByOne) {
  const std::vector<int32_t> windows = {0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 45, 46, 47, 48, 49};
  std::vector<int32_t> x, y;
  split_windows(windows, 4, x, y);
  EXPECT_EQ(x, (std::vector<int32_t>{0, 1, 2, 3, 10, 11, 12, 13, 45, 46, 47, 48}));
  EXPECT_EQ(y, (std::vector<int32_t>{1, 2, 3, 4, 11, 12, 13, 14, 46, 47, 48, 49}));
  EXPECT_THROW(split_windows({1, 2, 3, 4}, 4, x, y), Error);
}

// ------------------------------------------------------------------ with the reader

class StepData : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string text = test::make_training_text(20000);  // ~ 540k characters
    for (size_t i = 0; i < text.size(); i += 101) text[i] = static_cast<char>('A' + i % 26);
    test::write_file(dir / "t.txt", text);
    PrepareOptions o;
    o.inputs = {dir / "t.txt"};
    o.out = dir / "c.h5";
    prepare_corpus(o);
    corpus = o.out;
    all = read_split(corpus, "train");
  }
  // The windows rank `rank` of `world` reads in optimizer step `step`, as the trainer reads them.
  std::vector<int32_t> rank_windows(CorpusReader& r, const WindowSampler& s, int64_t step, int64_t batch, int rank,
                                    int world, int T) {
    const RankSlice sl = rank_slice(step, batch, rank, world);
    std::vector<int64_t> off(static_cast<size_t>(sl.count));
    for (int64_t i = 0; i < sl.count; ++i) off[i] = s.offset(sl.first + i);
    std::vector<int32_t> w(off.size() * (T + 1));
    r.read_windows(off.data(), off.size(), T + 1, w.data());
    return w;
  }
  test::TempDir dir;
  std::string corpus;
  std::vector<int32_t> all;
};

TEST_F(StepData, ARankReadsOnlyItsWindows) {
  const int T = 16;
  const int64_t batch = 64;
  for (const std::string kind : {"random", "sequential"}) {
    CorpusReader r(corpus, "train", 64);
    const auto s = make_sampler(kind, 5, r.size(), T);
    for (int64_t step : {0, 1, 1000}) {
      const int64_t before = r.tokens_read();
      const auto w = rank_windows(r, *s, step, batch, 2, 4, T);
      const int64_t read = r.tokens_read() - before;
      EXPECT_GT(read, 0);
      EXPECT_LE(read, 16 * (T + 1)) << kind << ": at most its 16 windows' tokens";
      EXPECT_LT(read * 100, r.size()) << kind << ": far below the split";
      // and they are the right tokens
      const RankSlice sl = rank_slice(step, batch, 2, 4);
      for (int64_t i = 0; i < sl.count; ++i)
        ASSERT_TRUE(std::equal(w.begin() + i * (T + 1), w.begin() + (i + 1) * (T + 1), all.begin() + s->offset(sl.first + i)));
    }
  }
}

TEST_F(StepData, RankSlicesConcatenateToTheWorldOneStep) {
  const int T = 16;
  const int64_t batch = 16;
  for (const std::string kind : {"random", "sequential"}) {
    const auto s = make_sampler(kind, 11, static_cast<int64_t>(all.size()), T);
    // steps 0, 1 and one that crosses an epoch boundary
    const int64_t crossing = s->samples_per_epoch() / batch;
    for (int64_t step : {int64_t{0}, int64_t{1}, crossing}) {
      CorpusReader one(corpus, "train", 64);
      const auto want = rank_windows(one, *s, step, batch, 0, 1, T);
      for (int world : {1, 2, 4}) {
        std::vector<int32_t> got;
        for (int rank = 0; rank < world; ++rank) {
          CorpusReader r(corpus, "train", 64);  // each rank its own reader
          const auto w = rank_windows(r, *s, step, batch, rank, world, T);
          got.insert(got.end(), w.begin(), w.end());
        }
        EXPECT_EQ(got, want) << kind << " step " << step << " world " << world;
      }
    }
  }
}

TEST_F(StepData, SequentialStepOfOneRankIsOneContiguousSpan) {
  const int T = 32;
  CorpusReader r(corpus, "train", 64);
  const auto s = make_sampler("sequential", 0, r.size(), T);
  for (int64_t step : {0, 3, 10}) {
    for (int rank : {0, 1}) {
      const int64_t spans = r.spans_read(), calls = r.read_calls(), tokens = r.tokens_read();
      rank_windows(r, *s, step, 8, rank, 2, T);
      EXPECT_EQ(r.read_calls() - calls, 1);
      EXPECT_EQ(r.spans_read() - spans, 1) << "step " << step << " rank " << rank;
      EXPECT_EQ(r.tokens_read() - tokens, 4 * T + 1) << "windows share their boundary token";
    }
  }
}

}  // namespace
}  // namespace qisa
