// qisa prepare (io/corpus.h): the HDF5 corpus layout, the split, and clean failures.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "io/corpus.h"
#include "io/corpus_reader.h"
#include "io/hdf5.h"
#include "io/tokenizer.h"
#include "kernels/error.h"
#include "expect_error.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::expect_mentions;

namespace fs = std::filesystem;

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Names in `dir` (sorted), to show that a failure left nothing (neither the corpus nor its temp).
std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// Runs prepare_corpus expecting a qisa::Error; returns its message (what + hint).
std::string prepare_error(const PrepareOptions& opt) {
  try {
    prepare_corpus(opt);
  } catch (const Error& e) {
    return e.message();
  }
  ADD_FAILURE() << "prepare_corpus did not fail";
  return "";
}

struct DatasetLayout {
  bool chunked = false;
  bool fletcher32 = false;
  bool is_u16 = false;
  bool is_u32 = false;
};

DatasetLayout layout_of(const std::string& file, const std::string& dataset) {
  h5::File f(file, h5::File::Mode::read);
  h5::Handle d(H5Dopen2(f.id(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  EXPECT_TRUE(d) << dataset;
  h5::Handle dcpl(H5Dget_create_plist(d.get()), H5Pclose);
  h5::Handle type(H5Dget_type(d.get()), H5Tclose);
  DatasetLayout out;
  out.chunked = H5Pget_layout(dcpl.get()) == H5D_CHUNKED;
  for (int i = 0; i < H5Pget_nfilters(dcpl.get()); ++i) {
    unsigned flags = 0;
    size_t nelmts = 0;
    unsigned config = 0;
    if (H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nelmts, nullptr, 0, nullptr, &config) ==
        H5Z_FILTER_FLETCHER32)
      out.fletcher32 = true;
  }
  out.is_u16 = H5Tequal(type.get(), H5T_STD_U16LE) > 0;
  out.is_u32 = H5Tequal(type.get(), H5T_STD_U32LE) > 0;
  return out;
}

class Corpus : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string path(const std::string& name) const { return dir / name; }
  PrepareOptions opts(std::vector<std::string> inputs, const std::string& out = "c.h5") const {
    PrepareOptions o;
    for (auto& in : inputs) o.inputs.push_back(path(in));
    o.out = path(out);
    return o;
  }
};

TEST_F(Corpus, RoundTripWithNonAsciiAndTwoInputs) {
  const std::string a = "Héllo wörld — ünïcode ✓\n";
  const std::string b = "zebra 😀 ZEBRA\nend";
  write_file(path("a.txt"), a);
  write_file(path("b.txt"), b);
  PrepareOptions o = opts({"a.txt", "b.txt"});
  o.val_fraction = 0.25;
  const PrepareResult r = prepare_corpus(o);

  const std::string text = a + b;  // inputs concatenated in order, byte for byte
  const std::vector<char32_t> cps = *decode_utf8(text);
  const std::set<char32_t> distinct(cps.begin(), cps.end());
  const auto n = static_cast<int64_t>(cps.size());
  const auto n_train = static_cast<int64_t>(std::floor(0.75 * static_cast<double>(n)));
  EXPECT_EQ(r.vocab_size, static_cast<int64_t>(distinct.size()));
  EXPECT_EQ(r.train_tokens, n_train);
  EXPECT_EQ(r.val_tokens, n - n_train);
  EXPECT_EQ(r.bytes_read, static_cast<int64_t>(text.size()));

  const CorpusInfo info = read_corpus_info(o.out);
  EXPECT_EQ(info.path, o.out);
  EXPECT_EQ(info.vocab_size, r.vocab_size);
  EXPECT_EQ(info.tokenizer, "char");
  EXPECT_EQ(info.format_version, kCorpusFormatVersion);
  EXPECT_EQ(info.train_tokens, r.train_tokens);
  EXPECT_EQ(info.val_tokens, r.val_tokens);

  // The vocabulary: the distinct code points, sorted by code point (sorted(set(text))).
  std::vector<std::string> want_vocab;
  for (char32_t cp : distinct) want_vocab.push_back(encode_utf8(cp));
  const std::vector<std::string> vocab = read_vocab(o.out);
  EXPECT_EQ(vocab, want_vocab);
  EXPECT_EQ(vocab.front(), "\n");
  EXPECT_EQ(vocab.back(), "😀");

  // train then val decode back to the text; val is the LAST fraction.
  CharTokenizer tok(vocab);
  const auto train = read_split(o.out, "train");
  const auto val = read_split(o.out, "val");
  EXPECT_EQ(static_cast<int64_t>(train.size()), n_train);
  std::vector<int32_t> all = train;
  all.insert(all.end(), val.begin(), val.end());
  EXPECT_EQ(tok.decode(all), text);
  EXPECT_EQ(tok.decode(val), tok.decode(tok.encode(text)).substr(tok.decode(train).size()));
  EXPECT_EQ(tok.decode(val).back(), 'd');

  for (const char* ds : {"/train/tokens", "/val/tokens"}) {
    SCOPED_TRACE(ds);
    const DatasetLayout l = layout_of(o.out, ds);
    EXPECT_TRUE(l.chunked);
    EXPECT_TRUE(l.fletcher32);
    EXPECT_TRUE(l.is_u16);
  }
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"a.txt", "b.txt", "c.h5"}));  // no temp left
}

TEST_F(Corpus, InputOrderMatters) {
  write_file(path("a.txt"), "aaaa");
  write_file(path("b.txt"), "bbbb");
  PrepareOptions ab = opts({"a.txt", "b.txt"}, "ab.h5"), ba = opts({"b.txt", "a.txt"}, "ba.h5");
  ab.val_fraction = ba.val_fraction = 0;
  prepare_corpus(ab);
  prepare_corpus(ba);
  EXPECT_EQ(CharTokenizer(read_vocab(ab.out)).decode(read_split(ab.out, "train")), "aaaabbbb");
  EXPECT_EQ(CharTokenizer(read_vocab(ba.out)).decode(read_split(ba.out, "train")), "bbbbaaaa");
}

TEST_F(Corpus, DefaultSplitIsTheLastTenPercent) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + i % 26);
  write_file(path("t.txt"), text);
  PrepareOptions o = opts({"t.txt"});
  EXPECT_DOUBLE_EQ(o.val_fraction, 0.1);
  const PrepareResult r = prepare_corpus(o);
  EXPECT_EQ(r.train_tokens, 900);
  EXPECT_EQ(r.val_tokens, 100);
  const auto val = read_split(o.out, "val");
  EXPECT_EQ(CharTokenizer(read_vocab(o.out)).decode(val), text.substr(900));
}

TEST_F(Corpus, ZeroValFractionGivesAnEmptyValSplit) {
  write_file(path("t.txt"), "some text\n");
  PrepareOptions o = opts({"t.txt"});
  o.val_fraction = 0;
  const PrepareResult r = prepare_corpus(o);
  EXPECT_EQ(r.train_tokens, 10);
  EXPECT_EQ(r.val_tokens, 0);
  EXPECT_EQ(read_corpus_info(o.out).val_tokens, 0);
  EXPECT_TRUE(read_split(o.out, "val").empty());
  EXPECT_EQ(h5::File(o.out, h5::File::Mode::read).attr_int("/val/tokens", "max_id"), -1);
  EXPECT_NO_THROW(check_token_ids(o.out));
}

TEST_F(Corpus, ReplacesAnExistingCorpus) {
  write_file(path("t.txt"), "abc");
  write_file(path("c.h5"), "old contents");
  PrepareOptions o = opts({"t.txt"});
  o.val_fraction = 0;
  prepare_corpus(o);
  EXPECT_EQ(read_corpus_info(o.out).train_tokens, 3);
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"t.txt", "c.h5"}));
}

TEST_F(Corpus, LargeVocabularyIsStoredAsUint32) {
  std::string text;
  for (char32_t cp = 1; cp < 0x11000; ++cp)
    if (cp < 0xD800 || cp > 0xDFFF) text += encode_utf8(cp);
  write_file(path("all.txt"), text);
  PrepareOptions o = opts({"all.txt"});
  const PrepareResult r = prepare_corpus(o);
  EXPECT_GT(r.vocab_size, 65536);
  EXPECT_TRUE(layout_of(o.out, "/train/tokens").is_u32);
  EXPECT_TRUE(layout_of(o.out, "/val/tokens").is_u32);
  const auto train = read_split(o.out, "train");
  const auto val = read_split(o.out, "val");
  EXPECT_EQ(train.back() + 1, val.front());  // ids are code-point order, and so is this text
  EXPECT_EQ(val.back(), r.vocab_size - 1);
}

// ------------------------------------------------------------------ prepare errors

TEST_F(Corpus, MissingInput) {
  write_file(path("a.txt"), "fine");
  const PrepareOptions o = opts({"a.txt", "nope.txt"});
  expect_mentions(prepare_error(o), {path("nope.txt"), "does not exist"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"a.txt"}));
}

TEST_F(Corpus, EmptyInput) {
  write_file(path("e.txt"), "");
  expect_mentions(prepare_error(opts({"e.txt"})), {path("e.txt"), "empty"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"e.txt"}));
}

TEST_F(Corpus, NonUtf8InputNamesPathAndOffset) {
  write_file(path("a.txt"), "good\n");
  write_file(path("latin1.txt"), "line one\ncaf\xE9 au lait\n");  // é in Latin-1 at byte 12
  const std::string msg = prepare_error(opts({"a.txt", "latin1.txt"}));
  expect_mentions(msg, {path("latin1.txt"), "not valid UTF-8", "0xE9", "offset 12", "line 2", "iconv"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"a.txt", "latin1.txt"}));
}

TEST_F(Corpus, NulCharacterIsRejected) {
  write_file(path("bin.txt"), std::string("ab\0cd", 5));
  expect_mentions(prepare_error(opts({"bin.txt"})), {path("bin.txt"), "NUL", "offset 2"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"bin.txt"}));
}

TEST_F(Corpus, UnwritableOutputDirectory) {
  write_file(path("t.txt"), "text");
  PrepareOptions o = opts({"t.txt"}, "missing/dir/c.h5");
  expect_mentions(prepare_error(o), {path("missing/dir/c.h5"), "does not exist"});
  o.out = path("t.txt/c.h5");  // parent is a file
  expect_mentions(prepare_error(o), {path("t.txt/c.h5"), "not a directory"});
  fs::create_directory(path("sub"));
  o.out = path("sub");  // the output is a directory
  expect_mentions(prepare_error(o), {path("sub"), "is a directory"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"t.txt", "sub"}));
  EXPECT_TRUE(fs::is_empty(path("sub")));
}

// A failure inside the HDF5 write (here: the temporary cannot be created) leaves no corpus.
TEST_F(Corpus, FailedWriteLeavesNoCorpus) {
  write_file(path("t.txt"), "text");
  const PrepareOptions o = opts({"t.txt"});
  const std::string blocker = o.out + ".tmp-" + std::to_string(::getpid());
  fs::create_directories(blocker + "/x");  // a non-empty directory where the temporary would go
  expect_mentions(prepare_error(o), {o.out});
  EXPECT_FALSE(fs::exists(o.out));
  fs::remove_all(blocker);
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"t.txt"}));
}

TEST_F(Corpus, OutputMustNotBeAnInput) {
  write_file(path("t.txt"), "text");
  expect_mentions(prepare_error(opts({"t.txt"}, "t.txt")), {path("t.txt"), "also an input"});
  std::ifstream in(path("t.txt"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "text");
}

TEST_F(Corpus, BadValFraction) {
  write_file(path("t.txt"), "text");
  for (double f : {1.0, -0.1, 1.5, std::nan("")}) {
    SCOPED_TRACE(f);
    PrepareOptions o = opts({"t.txt"});
    o.val_fraction = f;
    expect_mentions(prepare_error(o), {o.out, "--val-fraction", "[0, 1)"});
  }
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"t.txt"}));
}

TEST_F(Corpus, TrainSplitMustNotBeEmpty) {
  write_file(path("t.txt"), "x");
  PrepareOptions o = opts({"t.txt"});
  o.val_fraction = 0.5;
  expect_mentions(prepare_error(o), {o.out, "train split would be empty"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"t.txt"}));
}

TEST_F(Corpus, UnsupportedTokenizerListsSupportedOnes) {
  write_file(path("t.txt"), "text");
  PrepareOptions o = opts({"t.txt"});
  o.tokenizer = "llama";
  expect_mentions(prepare_error(o), {o.out, "'llama'", "supported: char, gpt2"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"t.txt"}));
}

// ------------------------------------------------------------------ reading errors

// A hand-made corpus: what a buggy or foreign writer might leave.
void write_fake_corpus(const std::string& path, int64_t version, int64_t vocab, std::vector<uint16_t> train,
                       bool with_val = true) {
  h5::File f(path, h5::File::Mode::create);
  f.set_attr("/", "format_version", version);
  f.set_attr("/", "vocab_size", vocab);
  f.set_attr("/", "tokenizer", std::string("char"));
  std::vector<std::string> v;
  for (int64_t i = 0; i < vocab; ++i) v.push_back(std::string(1, static_cast<char>('a' + i)));
  f.write_strings("/tokenizer/vocab", v, {static_cast<hsize_t>(vocab)});
  f.write("/train/tokens", train.data(), {train.size()});
  if (with_val) f.write("/val/tokens", train.data(), {train.size()});
  f.close();
}

std::string read_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST_F(Corpus, ReadErrorsNameTheFileAndHint) {
  const std::string missing = path("none.h5");
  expect_mentions(read_error([&] { read_corpus_info(missing); }), {missing, "does not exist", "qisa prepare"});

  write_file(path("text.h5"), "not hdf5 at all");
  expect_mentions(read_error([&] { read_corpus_info(path("text.h5")); }),
                  {path("text.h5"), "not a qisa corpus", "qisa prepare"});

  { h5::File f(path("other.h5"), h5::File::Mode::create); f.create_group("/x"); f.close(); }
  expect_mentions(read_error([&] { read_corpus_info(path("other.h5")); }),
                  {path("other.h5"), "not a qisa corpus", "qisa prepare"});

  write_fake_corpus(path("v2.h5"), 2, 3, {0, 1, 2});
  expect_mentions(read_error([&] { read_corpus_info(path("v2.h5")); }),
                  {path("v2.h5"), "format_version 2", "qisa prepare"});

  write_fake_corpus(path("noval.h5"), 1, 3, {0, 1, 2}, /*with_val=*/false);
  expect_mentions(read_error([&] { read_corpus_info(path("noval.h5")); }),
                  {path("noval.h5"), "/val/tokens", "qisa prepare"});

  write_fake_corpus(path("badid.h5"), 1, 3, {0, 1, 7, 2});
  EXPECT_NO_THROW(read_corpus_info(path("badid.h5")));
  expect_mentions(read_error([&] { read_split(path("badid.h5"), "train"); }),
                  {path("badid.h5"), "token id 7", "index 2", "vocab_size is 3", "qisa prepare"});

  EXPECT_THROW(read_split(path("badid.h5"), "test"), Error);
}

// An error after a failed HDF5 call carries HDF5's own reason from its error stack (the
// innermost error when no system error is recorded), not only our description of the call.
TEST_F(Corpus, Hdf5FailuresCarryHdf5sReason) {
  write_file(path("text.h5"), "not hdf5 at all");
  for (auto mode : {h5::File::Mode::read, h5::File::Mode::read_write}) {
    const std::string msg = read_error([&] { h5::File f(path("text.h5"), mode); });
    expect_mentions(msg, {"cannot open HDF5 file '" + path("text.h5") + "'", ": file signature not found", "hint:"});
  }
  { h5::File f(path("attrs.h5"), h5::File::Mode::create); f.create_group("/g"); f.close(); }
  const h5::File f(path("attrs.h5"), h5::File::Mode::read);
  expect_mentions(read_error([&] { f.attr_int("/g", "step"); }),
                  {"attribute 'step' missing on '" + path("attrs.h5") + ":/g': can't locate attribute"});
}

// Each split's largest id is stored at prepare time, so a run checks the ids at start without
// reading the splits; a corpus without the attribute is scanned instead.
TEST_F(Corpus, TokenIdsAreCheckedAtStartCheaplyOrByAScan) {
  write_file(path("t.txt"), "abcabcxyz\nzzz");  // vocab: \n a b c x y z -> ids 0..6
  PrepareOptions o = opts({"t.txt"});
  o.val_fraction = 0.3;
  prepare_corpus(o);
  {
    const h5::File f(o.out, h5::File::Mode::read);
    const auto train = read_split(o.out, "train"), val = read_split(o.out, "val");
    EXPECT_EQ(f.attr_int("/train/tokens", "max_id"), *std::max_element(train.begin(), train.end()));
    EXPECT_EQ(f.attr_int("/val/tokens", "max_id"), *std::max_element(val.begin(), val.end()));
  }
  EXPECT_NO_THROW(check_token_ids(o.out));
  {  // an attribute that admits an id >= vocab_size: caught without reading the split
    h5::File f(o.out, h5::File::Mode::read_write);
    H5Adelete_by_name(f.id(), "/val/tokens", "max_id", H5P_DEFAULT);
    f.set_attr("/val/tokens", "max_id", int64_t{9});
  }
  expect_mentions(read_error([&] { check_token_ids(o.out); }),
                  {o.out, "/val/tokens", "token ids up to 9", "attribute max_id", "vocab_size is 7", "qisa prepare"});

  // No attribute (an older corpus, or another writer): the split is read and the first bad id named.
  std::vector<uint16_t> ids(3 * 1000000, 1);  // three pieces of the scan
  ids[2500001] = 7;
  write_fake_corpus(path("scan.h5"), 1, 7, ids);
  expect_mentions(read_error([&] { check_token_ids(path("scan.h5")); }),
                  {path("scan.h5"), "/train/tokens", "token id 7", "position 2500001", "vocab_size is 7"});
  ids[2500001] = 6;
  write_fake_corpus(path("scan.h5"), 1, 7, ids);
  EXPECT_NO_THROW(check_token_ids(path("scan.h5")));
}

TEST_F(Corpus, ATruncatedCorpusIsNamedAsSuch) {
  write_file(path("t.txt"), std::string(200000, 'a') + "b");
  PrepareOptions o = opts({"t.txt"});
  prepare_corpus(o);
  fs::resize_file(o.out, fs::file_size(o.out) / 2);
  expect_mentions(read_error([&] { read_corpus_info(o.out); }), {o.out, "truncated", "qisa prepare"});
}

// A shape the file does not hold (chunks never written read back as fill values and cost no
// disk) is an error, not a 4 TiB allocation (found by tests/fuzz/fuzz_corpus).
TEST_F(Corpus, ShapesTheFileDoesNotHoldAreErrorsNotAllocations) {
  constexpr hsize_t kHuge = hsize_t{1} << 40;
  {
    h5::File f(path("huge.h5"), h5::File::Mode::create);
    f.set_attr("/", "format_version", int64_t{1});
    f.set_attr("/", "vocab_size", static_cast<int64_t>(kHuge));
    f.set_attr("/", "tokenizer", std::string("char"));
    h5::WriteOptions chunked;
    chunked.chunk = 65536;
    f.create_dataset("/train/tokens", H5T_STD_U16LE, {kHuge}, chunked).close();
    const uint16_t t[2] = {0, 1};
    f.write("/val/tokens", t, {2});
    h5::Handle vlen(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(vlen.get(), H5T_VARIABLE);
    f.create_dataset("/tokenizer/vocab", vlen.get(), {kHuge}, chunked).close();
    f.close();
  }
  for (const auto& fn : std::vector<std::function<void()>>{[&] { read_corpus_info(path("huge.h5")); },
                                                           [&] { read_split(path("huge.h5"), "train"); },
                                                           [&] { CorpusReader(path("huge.h5"), "val", 1.0); }})
    expect_mentions(read_error(fn), {path("huge.h5") + ":/train/tokens", "claims 1099511627776 elements",
                                     "holds only 0 bytes", "corrupt"});
  {  // the tokens are there, the vocabulary is not
    h5::File f(path("huge.h5"), h5::File::Mode::read_write);
    H5Ldelete(f.id(), "/train/tokens", H5P_DEFAULT);
    const uint16_t t[2] = {0, 1};
    f.write("/train/tokens", t, {2});
    f.close();
  }
  expect_mentions(read_error([&] { read_vocab(path("huge.h5")); }),
                  {path("huge.h5") + ":/tokenizer/vocab", "claims 1099511627776 elements"});
}

TEST_F(Corpus, ReadVocabChecksOrder) {
  {
    h5::File f(path("unsorted.h5"), h5::File::Mode::create);
    f.set_attr("/", "format_version", int64_t{1});
    f.set_attr("/", "vocab_size", int64_t{2});
    f.set_attr("/", "tokenizer", std::string("char"));
    f.write_strings("/tokenizer/vocab", {"b", "a"}, {2});
    const uint16_t t[2] = {0, 1};
    f.write("/train/tokens", t, {2});
    f.write("/val/tokens", t, {2});
    f.close();
  }
  expect_mentions(read_error([&] { read_vocab(path("unsorted.h5")); }), {path("unsorted.h5"), "sorted"});
}

}  // namespace
}  // namespace qisa
