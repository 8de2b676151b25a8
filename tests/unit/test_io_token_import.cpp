// Importing llm.c shards and nanoGPT's raw uint16 files (io/token_import.h): the split by file
// name or fraction, the ids stored unchanged, and a one-line error naming the file, the field
// or byte offset and the value for every kind of bad file.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "expect_error.h"
#include "gpt2_files.h"
#include "io/corpus.h"
#include "io/gpt2_files.h"
#include "io/hdf5.h"
#include "io/token_import.h"
#include "kernels/error.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::expect_mentions;

void put32(std::string& s, int32_t v) {
  for (int k = 0; k < 4; ++k) s += static_cast<char>((static_cast<uint32_t>(v) >> (8 * k)) & 0xFF);
}
std::string u16_bytes(const std::vector<uint16_t>& ids) {
  std::string s;
  for (uint16_t id : ids) {
    s += static_cast<char>(id & 0xFF);
    s += static_cast<char>(id >> 8);
  }
  return s;
}

// An llm.c shard (dev/data/data_common.py write_datafile): 256 int32 header, then the tokens.
void write_llmc(const std::string& path, const std::vector<uint16_t>& ids, int32_t magic = 20240520,
                int32_t version = 1, int32_t count = -1) {
  std::string s;
  put32(s, magic);
  put32(s, version);
  put32(s, count < 0 ? static_cast<int32_t>(ids.size()) : count);
  s.resize(1024, '\0');
  test::write_file(path, s + u16_bytes(ids));
}

std::vector<uint16_t> ramp(size_t n, uint16_t start) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>((start + i * 7) % 50257);
  return v;
}

std::vector<int32_t> as_i32(const std::vector<uint16_t>& v) { return std::vector<int32_t>(v.begin(), v.end()); }
template <typename T>
std::vector<T> cat(std::vector<T> a, const std::vector<T>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class TokenImport : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string path(const std::string& name) const { return dir / name; }
  ImportOptions opts(TokenFileFormat f, std::vector<std::string> names) const {
    ImportOptions o;
    o.format = f;
    for (auto& n : names) o.inputs.push_back(path(n));
    o.out = path("c.h5");
    o.gpt2_dir = test::gpt2_files().dir;
    return o;
  }
  // The error of an import, after checking that it left no corpus behind.
  std::string import_error(const ImportOptions& o) {
    const std::string msg = error_of([&] { import_token_files(o); });
    EXPECT_FALSE(fs::exists(o.out)) << "a failed import left " << o.out;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }
};

// ------------------------------------------------------------------ bad files (no vocabulary needed)

TEST_F(TokenImport, LlmcHeaderErrorsNameFileFieldAndValue) {
  write_llmc(path("magic_train.bin"), ramp(10, 1), 20240521);
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"magic_train.bin"})),
                  {path("magic_train.bin"), "magic", "byte 0", "20240521", "expected 20240520", "--import-raw-u16"});
  write_llmc(path("v2_train.bin"), ramp(10, 1), 20240520, 2);
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"v2_train.bin"})),
                  {path("v2_train.bin"), "version", "byte 4", "is 2", "expected 1", "uint32"});
  write_llmc(path("short_train.bin"), ramp(10, 1), 20240520, 1, 11);  // header says 11, file has 10
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"short_train.bin"})),
                  {path("short_train.bin"), "token count", "byte 8", "says 11 tokens", "1046 bytes", "has 1044 bytes",
                   "truncated"});
  write_llmc(path("long_train.bin"), ramp(10, 1), 20240520, 1, 9);
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"long_train.bin"})),
                  {path("long_train.bin"), "says 9 tokens", "has 1044 bytes", "bytes after its tokens"});
  write_llmc(path("none_train.bin"), {}, 20240520, 1, 0);
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"none_train.bin"})), {path("none_train.bin"), "is 0"});
  test::write_file(path("tiny_train.bin"), u16_bytes(ramp(100, 1)));  // 200 bytes: no header
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"tiny_train.bin"})),
                  {path("tiny_train.bin"), "200 bytes", "1024-byte header", "--import-raw-u16"});
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"nope_train.bin"})), {path("nope_train.bin"), "does not exist"});
}

TEST_F(TokenImport, RawFileErrorsNameFileAndSize) {
  test::write_file(path("odd_train.bin"), u16_bytes(ramp(10, 1)) + "x");
  expect_mentions(import_error(opts(TokenFileFormat::raw_u16, {"odd_train.bin"})),
                  {path("odd_train.bin"), "21 bytes", "odd", "uint16"});
  test::write_file(path("empty_train.bin"), "");
  expect_mentions(import_error(opts(TokenFileFormat::raw_u16, {"empty_train.bin"})), {path("empty_train.bin"), "empty"});
  write_llmc(path("shard_train.bin"), ramp(10, 1));
  expect_mentions(import_error(opts(TokenFileFormat::raw_u16, {"shard_train.bin"})),
                  {path("shard_train.bin"), "magic 20240520", "--import-llmc"});
}

TEST_F(TokenImport, SplitByNameNeedsAnUnambiguousName) {
  for (const char* name : {"data.bin", "train_val.bin", "trainval.bin", "retrain.bin"}) {
    test::write_file(path(name), u16_bytes(ramp(10, 1)));
    expect_mentions(import_error(opts(TokenFileFormat::raw_u16, {name})), {path(name), "train or val", "--val-fraction"});
  }
  test::write_file(path("val.bin"), u16_bytes(ramp(10, 1)));
  expect_mentions(import_error(opts(TokenFileFormat::raw_u16, {"val.bin"})), {"no file is train data", "all val"});
}

TEST_F(TokenImport, OptionErrors) {
  test::write_file(path("train.bin"), u16_bytes(ramp(10, 1)));
  ImportOptions o = opts(TokenFileFormat::raw_u16, {"train.bin"});
  o.tokenizer = "char";
  expect_mentions(import_error(o), {path("c.h5"), "tokenizer 'char'", "supported: gpt2"});
  o = opts(TokenFileFormat::raw_u16, {"train.bin"});
  for (double f : {1.0, -0.5}) {
    o.val_fraction = f;
    expect_mentions(import_error(o), {path("c.h5"), "--val-fraction", "[0, 1)"});
  }
  o.val_fraction.reset();
  o.inputs.clear();
  expect_mentions(import_error(o), {"no token files"});
  o = opts(TokenFileFormat::raw_u16, {"train.bin"});
  o.out = path("train.bin");
  expect_mentions(error_of([&] { import_token_files(o); }), {path("train.bin"), "also an input"});
}

// ------------------------------------------------------------------ imports (GPT-2's vocabulary)

TEST_F(TokenImport, LlmcShardsSplitByName) {
  QISA_REQUIRE_GPT2_FILES();
  const auto t1 = ramp(300, 5), t2 = ramp(200, 50000), v = ramp(100, 7);
  write_llmc(path("fineweb_val_000000.bin"), v);
  write_llmc(path("fineweb_train_000002.bin"), t2);
  write_llmc(path("fineweb_train_000001.bin"), t1);
  // val named first: train files still come first, in the order given
  const ImportOptions o =
      opts(TokenFileFormat::llmc, {"fineweb_val_000000.bin", "fineweb_train_000002.bin", "fineweb_train_000001.bin"});
  const ImportResult r = import_token_files(o);
  EXPECT_EQ(r.train_tokens, 500);
  EXPECT_EQ(r.val_tokens, 100);
  EXPECT_EQ(r.train_files, 2);
  EXPECT_EQ(r.val_files, 1);
  EXPECT_EQ(read_split(o.out, "train"), as_i32(cat(t2, t1)));
  EXPECT_EQ(read_split(o.out, "val"), as_i32(v));
  const CorpusInfo info = read_corpus_info(o.out);
  EXPECT_EQ(info.tokenizer, "gpt2");
  EXPECT_EQ(info.vocab_size, 50257);
  EXPECT_EQ(read_vocabulary(o.out), load_gpt2_vocabulary(o.gpt2_dir));
  h5::File f(o.out, h5::File::Mode::read);
  EXPECT_EQ(f.attr_string("/", "source"), "llmc");
  EXPECT_FALSE(f.has_attr("/", "val_fraction"));
  h5::Handle d(H5Dopen2(f.id(), "/train/tokens", H5P_DEFAULT), H5Dclose);
  h5::Handle type(H5Dget_type(d.get()), H5Tclose);
  EXPECT_GT(H5Tequal(type.get(), H5T_STD_U16LE), 0);
}

TEST_F(TokenImport, NanoGptFilesByNameAndByFraction) {
  QISA_REQUIRE_GPT2_FILES();
  // More than one read block (2^20 tokens), with the fraction's boundary inside a block.
  const auto train = ramp((size_t{1} << 20) + 12345, 3), val = ramp(5000, 11);
  test::write_file(path("train.bin"), u16_bytes(train));
  test::write_file(path("val.bin"), u16_bytes(val));
  ImportOptions o = opts(TokenFileFormat::raw_u16, {"train.bin", "val.bin"});
  ImportResult r = import_token_files(o);
  EXPECT_EQ(read_split(o.out, "train"), as_i32(train));
  EXPECT_EQ(read_split(o.out, "val"), as_i32(val));
  EXPECT_EQ(r.val_files, 1);

  o.val_fraction = 0.4;
  r = import_token_files(o);
  const auto all = as_i32(cat(train, val));
  const auto n_train = static_cast<size_t>(std::floor(0.6 * static_cast<double>(all.size())));
  EXPECT_EQ(r.train_tokens, static_cast<int64_t>(n_train));
  EXPECT_EQ(read_split(o.out, "train"), std::vector<int32_t>(all.begin(), all.begin() + n_train));
  EXPECT_EQ(read_split(o.out, "val"), std::vector<int32_t>(all.begin() + n_train, all.end()));
  h5::File f(o.out, h5::File::Mode::read);
  EXPECT_EQ(f.attr_string("/", "source"), "raw-u16");
  EXPECT_DOUBLE_EQ(f.attr_double("/", "val_fraction"), 0.4);
}

TEST_F(TokenImport, IdsOutsideTheVocabularyNameFileOffsetAndValue) {
  QISA_REQUIRE_GPT2_FILES();
  auto ids = ramp(10, 1);
  ids[3] = 50257;
  write_llmc(path("x_train.bin"), ids);
  expect_mentions(import_error(opts(TokenFileFormat::llmc, {"x_train.bin"})),
                  {path("x_train.bin"), "token id 50257", "byte 1030", "token 3", "50257, the vocab_size of tokenizer gpt2"});
  ids[3] = 1;
  ids[9] = 65535;
  test::write_file(path("train.bin"), u16_bytes(ids));
  expect_mentions(import_error(opts(TokenFileFormat::raw_u16, {"train.bin"})),
                  {path("train.bin"), "token id 65535", "byte 18", "token 9"});
}

}  // namespace
}  // namespace qisa
