// CorpusReader (io/corpus_reader.h): window reads through one H5Dread of the merged spans, equal
// to reading window by window; contiguous ranges; id checks; clean errors naming file and split.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <random>

#include "io/corpus.h"
#include "io/corpus_reader.h"
#include "io/hdf5.h"
#include "io/tokenizer.h"
#include "kernels/error.h"
#include "expect_error.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::error_of;
using test::expect_mentions;

// ASCII text of n characters with some structure: a uint16 corpus.
std::string ascii_text(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s = test::make_training_text(n / 15 + 1);  // sentences are >= 19 characters
  s.resize(n);
  for (size_t i = 0; i < n; i += 97) s[i] = static_cast<char>('A' + rng() % 26);  // break up the repetition
  return s;
}

// Text over more than 65536 distinct code points (a uint32 corpus): every code point of
// U+10000..U+1FFFF once, shuffled, then `extra` random ones of them (and some ASCII).
std::string wide_text(size_t extra, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<char32_t> cps;
  for (char32_t cp = 0x10000; cp < 0x20000; ++cp) cps.push_back(cp);
  for (char32_t cp = 'a'; cp <= 'z'; ++cp) cps.push_back(cp);
  std::shuffle(cps.begin(), cps.end(), rng);
  const size_t distinct = cps.size();
  for (size_t i = 0; i < extra; ++i) cps.push_back(cps[rng() % distinct]);
  std::string s;
  for (char32_t cp : cps) s += encode_utf8(cp);
  return s;
}

std::string make_corpus(const test::TempDir& dir, const std::string& name, const std::string& text) {
  test::write_file(dir / (name + ".txt"), text);
  PrepareOptions o;
  o.inputs = {dir / (name + ".txt")};
  o.out = dir / (name + ".h5");
  o.val_fraction = 0.1;
  prepare_corpus(o);
  return o.out;
}

// Offsets that exercise the merge: random, overlapping neighbours, exact repeats, adjacent
// windows, the first and the very last window, in random order.
std::vector<int64_t> tricky_offsets(std::mt19937_64& rng, int64_t n, int len, size_t count) {
  const int64_t last = n - len;
  std::vector<int64_t> off = {0, last, last, last - 1, 0, len, 2 * static_cast<int64_t>(len)};
  std::uniform_int_distribution<int64_t> any(0, last);
  while (off.size() < count) {
    const int64_t o = any(rng);
    off.push_back(o);
    switch (rng() % 4) {
      case 0: off.push_back(std::min(last, o + static_cast<int64_t>(rng() % len)));  break;  // overlap
      case 1: off.push_back(o); break;                                                        // repeat
      case 2: off.push_back(std::min(last, o + len)); break;                                  // adjacent
      default: break;
    }
  }
  off.resize(count);
  std::shuffle(off.begin(), off.end(), rng);
  return off;
}

void expect_windows(const std::vector<int32_t>& all, const std::vector<int64_t>& off, int len,
                    const std::vector<int32_t>& got) {
  ASSERT_EQ(got.size(), off.size() * static_cast<size_t>(len));
  for (size_t i = 0; i < off.size(); ++i)
    for (int k = 0; k < len; ++k)
      ASSERT_EQ(got[i * len + k], all[off[i] + k]) << "window " << i << " at offset " << off[i] << ", token " << k;
}

class Reader : public ::testing::Test {
 protected:
  test::TempDir dir;
};

void check_union_read_equals_window_reads(const std::string& corpus, uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " corpus " + corpus);
  std::mt19937_64 rng(seed);
  for (const std::string split : {"train", "val"}) {
    const std::vector<int32_t> all = read_split(corpus, split);
    CorpusReader r(corpus, split, 1.0);
    ASSERT_EQ(r.size(), static_cast<int64_t>(all.size()));
    for (int len : {1, 17, 129}) {
      for (size_t count : {size_t{1}, size_t{7}, size_t{300}, size_t{1024}}) {
        const auto off = tricky_offsets(rng, r.size(), len, count);
        std::vector<int32_t> got(off.size() * len, -1);
        const int64_t calls = r.read_calls();
        r.read_windows(off.data(), off.size(), len, got.data());
        EXPECT_EQ(r.read_calls(), calls + 1) << "one H5Dread per read_windows";
        expect_windows(all, off, len, got);
        // the same windows one at a time, through read_range
        std::vector<int32_t> one(len);
        for (size_t i = 0; i < off.size(); i += 37) {
          r.read_range(off[i], len, one.data());
          ASSERT_TRUE(std::equal(one.begin(), one.end(), got.begin() + i * len)) << "window " << i;
        }
      }
    }
  }
}

TEST_F(Reader, UnionReadEqualsWindowByWindowUint16) {
  const std::string corpus = make_corpus(dir, "ascii", ascii_text(300000, 3));
  EXPECT_LE(read_corpus_info(corpus).vocab_size, 65536);
  check_union_read_equals_window_reads(corpus, test::fresh_seed());
}

TEST_F(Reader, UnionReadEqualsWindowByWindowUint32) {
  const std::string corpus = make_corpus(dir, "wide", wide_text(120000, 5));
  const CorpusInfo info = read_corpus_info(corpus);
  ASSERT_GT(info.vocab_size, 65536);
  {
    h5::File f(corpus, h5::File::Mode::read);
    h5::Handle d(H5Dopen2(f.id(), "/train/tokens", H5P_DEFAULT), H5Dclose);
    h5::Handle t(H5Dget_type(d.get()), H5Tclose);
    EXPECT_EQ(H5Tget_size(t.get()), 4u) << "the corpus should be stored as uint32";
  }
  const auto all = read_split(corpus, "train");
  EXPECT_GT(*std::max_element(all.begin(), all.end()), 65535) << "ids above uint16 must round-trip";
  check_union_read_equals_window_reads(corpus, test::fresh_seed());
}

TEST_F(Reader, TokensReadCountsTheUnionOfTheWindowsOnly) {
  const std::string corpus = make_corpus(dir, "ascii", ascii_text(200000, 4));
  CorpusReader r(corpus, "train", 4.0);
  EXPECT_EQ(r.path(), corpus);
  EXPECT_EQ(r.split(), "train");
  EXPECT_EQ(r.vocab_size(), read_corpus_info(corpus).vocab_size);
  std::vector<int32_t> out(64 * 17);
  // disjoint windows: exactly their tokens, in as many spans
  std::vector<int64_t> far = {100, 5000, 60000, 140000, 170000};
  r.read_windows(far.data(), far.size(), 17, out.data());
  EXPECT_EQ(r.tokens_read(), 5 * 17);
  EXPECT_EQ(r.spans_read(), 5);
  // overlapping, adjacent and repeated windows: the union once, as one span
  std::vector<int64_t> near = {1000, 1010, 1017, 1000, 1034};  // [1000, 1051)
  r.read_windows(near.data(), near.size(), 17, out.data());
  EXPECT_EQ(r.tokens_read(), 5 * 17 + 51);
  EXPECT_EQ(r.spans_read(), 6);
  EXPECT_EQ(r.read_calls(), 2);
  std::vector<int32_t> range(51);
  r.read_range(1000, 51, range.data());
  EXPECT_EQ(r.tokens_read(), 5 * 17 + 102);
  EXPECT_TRUE(std::equal(range.begin(), range.begin() + 17, out.begin()));
  EXPECT_TRUE(std::equal(range.begin() + 34, range.end(), out.begin() + 4 * 17));
  r.read_windows(near.data(), 0, 17, out.data());  // nothing asked, nothing read
  EXPECT_EQ(r.read_calls(), 3);
}

TEST_F(Reader, ReadRangeWholeSplitAndEdges) {
  const std::string corpus = make_corpus(dir, "ascii", ascii_text(100000, 6));
  for (const std::string split : {"train", "val"}) {
    const auto all = read_split(corpus, split);
    CorpusReader r(corpus, split, 64);
    std::vector<int32_t> got(all.size(), -1);
    r.read_range(0, r.size(), got.data());  // asked for the whole split: reads it
    EXPECT_EQ(got, all);
    EXPECT_EQ(r.tokens_read(), r.size());
    r.read_range(r.size() - 3, 3, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + 3, all.end() - 3));
    r.read_range(r.size(), 0, got.data());  // empty range at the end: fine
    EXPECT_EQ(r.tokens_read(), r.size() + 3);
  }
}

TEST_F(Reader, TinyChunkCacheStillReadsCorrectly) {
  // A cache smaller than one chunk (64 Ki tokens = 128 KiB): HDF5 bypasses it, results unchanged.
  const std::string corpus = make_corpus(dir, "ascii", ascii_text(200000, 7));
  const auto all = read_split(corpus, "train");
  CorpusReader r(corpus, "train", 0.01);
  std::mt19937_64 rng(11);
  const auto off = tricky_offsets(rng, r.size(), 17, 500);
  std::vector<int32_t> got(off.size() * 17);
  r.read_windows(off.data(), off.size(), 17, got.data());
  expect_windows(all, off, 17, got);
}

TEST_F(Reader, WindowsOutsideTheSplitAreErrorsNamingFileAndSplit) {
  const std::string corpus = make_corpus(dir, "ascii", ascii_text(50000, 8));
  CorpusReader r(corpus, "val", 1);
  std::vector<int32_t> out(2 * 17);
  const int64_t n = r.size();
  for (const int64_t bad : {int64_t{-1}, n - 16, n}) {
    const int64_t off[2] = {0, bad};
    expect_mentions(error_of([&] { r.read_windows(off, 2, 17, out.data()); }),
                    {corpus, "'val'", std::to_string(bad), std::to_string(n) + " tokens"});
  }
  expect_mentions(error_of([&] { r.read_range(n - 5, 6, out.data()); }), {corpus, "'val'", std::to_string(n)});
  expect_mentions(error_of([&] { r.read_range(-1, 2, out.data()); }), {corpus, "'val'"});
  EXPECT_EQ(r.tokens_read(), 0);
}

TEST_F(Reader, OpenErrorsNameTheFileAndSplit) {
  const std::string missing = dir / "none.h5";
  expect_mentions(error_of([&] { CorpusReader r(missing, "train", 64); }),
                  {missing, "does not exist", "train split", "qisa prepare"});
  test::write_file(dir / "text.h5", "not hdf5");
  expect_mentions(error_of([&] { CorpusReader r(dir / "text.h5", "train", 64); }), {dir / "text.h5", "qisa prepare"});
  const std::string corpus = make_corpus(dir, "ascii", ascii_text(5000, 9));
  expect_mentions(error_of([&] { CorpusReader r(corpus, "test", 64); }), {corpus, "'test'", "'train' and 'val'"});
  expect_mentions(error_of([&] { CorpusReader r(corpus, "train", 0); }), {corpus, "chunk_cache_mb"});
}

TEST_F(Reader, CorruptChunkFailsTheReadNamingFileAndSplit) {
  const std::string corpus = make_corpus(dir, "ascii", ascii_text(400000, 12));
  {  // flip one byte in the middle of the file: inside a train chunk (the train data is ~90% of it)
    std::fstream f(corpus, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto mid = static_cast<std::streamoff>(f.tellg()) / 2;
    f.seekg(mid);
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(mid);
    f.write(&c, 1);
  }
  CorpusReader r(corpus, "train", 64);
  std::vector<int32_t> out(static_cast<size_t>(r.size()));
  expect_mentions(error_of([&] { r.read_range(0, r.size(), out.data()); }), {corpus, "'train'", "checksum", "qisa prepare"});
}

TEST_F(Reader, EmptyValSplit) {
  test::write_file(dir / "t.txt", ascii_text(5000, 10));
  PrepareOptions o;
  o.inputs = {dir / "t.txt"};
  o.out = dir / "noval.h5";
  o.val_fraction = 0;
  prepare_corpus(o);
  CorpusReader r(o.out, "val", 64);
  EXPECT_EQ(r.size(), 0);
  std::vector<int32_t> out(17);
  EXPECT_NO_THROW(r.read_range(0, 0, out.data()));
  const int64_t off = 0;
  expect_mentions(error_of([&] { r.read_windows(&off, 1, 17, out.data()); }), {o.out, "'val'", "0 tokens"});
  EXPECT_EQ(r.tokens_read(), 0);
}

// A corpus written by hand, as a buggy or foreign writer might leave it: id 7 with vocab_size 5.
void write_bad_corpus(const std::string& path, int64_t n, int64_t bad_at, bool u32) {
  h5::File f(path, h5::File::Mode::create);
  f.set_attr("/", "format_version", kCorpusFormatVersion);
  f.set_attr("/", "vocab_size", int64_t{5});
  f.set_attr("/", "tokenizer", std::string("char"));
  f.write_strings("/tokenizer/vocab", {"a", "b", "c", "d", "e"}, {5});
  std::vector<uint32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<uint32_t>(i % 5);
  ids[bad_at] = 7;
  h5::WriteOptions w;
  w.chunk = 1 << 16;
  w.fletcher32 = true;
  const hid_t type = u32 ? H5T_STD_U32LE : H5T_STD_U16LE;
  f.write_as<uint32_t>("/train/tokens", type, ids.data(), {static_cast<hsize_t>(n)}, w);
  f.write_as<uint32_t>("/val/tokens", type, ids.data(), {100}, w);
  f.close();
}

TEST_F(Reader, OutOfRangeIdsAreDetectedWithTheirPosition) {
  for (bool u32 : {false, true}) {
    const std::string path = dir / (u32 ? "bad32.h5" : "bad16.h5");
    const int64_t n = 150000, bad_at = 70001;  // in the second chunk
    write_bad_corpus(path, n, bad_at, u32);
    CorpusReader r(path, "train", 1);
    std::vector<int32_t> out(3 * 17);
    const int64_t fine[3] = {0, 69000, 140000};
    EXPECT_NO_THROW(r.read_windows(fine, 3, 17, out.data()));
    EXPECT_EQ(out[17], 69000 % 5);
    for (const int64_t hit : {bad_at, bad_at - 16, bad_at - 3}) {
      const int64_t off[3] = {140000, hit, 10};
      expect_mentions(error_of([&] { r.read_windows(off, 3, 17, out.data()); }),
                      {path, "'train'", "token id 7", "position " + std::to_string(bad_at), "vocab_size is 5",
                       "qisa prepare"});
    }
    std::vector<int32_t> range(200);
    expect_mentions(error_of([&] { r.read_range(bad_at - 100, 200, range.data()); }),
                    {path, "token id 7", "position " + std::to_string(bad_at)});
  }
}

TEST_F(Reader, ReadsEveryWindowOfTheBenchmarkCorpusLikeReadSplit) {
  // The shipped tiny Shakespeare corpus, when present: 1024 random windows of 17 tokens.
  const std::string corpus = std::string(QISA_SOURCE_DIR) + "/data/tinyshakespeare.h5";
  if (!std::filesystem::exists(corpus)) GTEST_SKIP() << corpus << " not present";
  const auto all = read_split(corpus, "train");
  CorpusReader r(corpus, "train", 64);
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_int_distribution<int64_t> any(0, r.size() - 17);
  for (int step = 0; step < 5; ++step) {
    std::vector<int64_t> off(1024);
    for (auto& o : off) o = any(rng);
    std::vector<int32_t> got(off.size() * 17);
    r.read_windows(off.data(), off.size(), 17, got.data());
    expect_windows(all, off, 17, got);
  }
  EXPECT_LE(r.tokens_read(), 5 * 1024 * 17);
}

}  // namespace
}  // namespace qisa
