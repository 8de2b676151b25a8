#include "io/corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "io/atomic_file.h"
#include "io/file_kind.h"
#include "io/bpe.h"
#include "io/gpt2_files.h"
#include "io/hdf5.h"
#include "io/tokenizer.h"
#include "io/vocabulary_file.h"
#include "kernels/error.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSupportedTokenizers = "char, gpt2";
constexpr hsize_t kChunkTokens = hsize_t{1} << 16;  // 64 Ki tokens: small enough for window reads
constexpr char32_t kCodePointLimit = 0x110000;

std::string q(const std::string& s) { return "'" + s + "'"; }
std::string g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
std::string rerun_hint(const std::string& path) {
  return "re-create it with: qisa prepare --input TEXT... --out " + path;
}

// ------------------------------------------------------------------ prepare: inputs

struct InputText {
  std::string path;
  std::string bytes;
};

// Messages start with "cannot prepare 'OUT'" so that every error names the corpus it is about.
std::string cannot(const PrepareOptions& opt) { return "cannot prepare corpus " + q(opt.out) + ": "; }

void check_options(const PrepareOptions& opt) {
  QISA_CHECK(!opt.out.empty(), "qisa prepare: no output path given", "pass the corpus path with --out, e.g. data/corpus.h5");
  QISA_CHECK(!opt.inputs.empty(), cannot(opt) + "no input files given", "pass one or more text files with --input");
  QISA_CHECK(opt.tokenizer == "char" || opt.tokenizer == "gpt2",
             cannot(opt) + "tokenizer " + q(opt.tokenizer) + " is not supported (supported: " + kSupportedTokenizers + ")",
             "use --tokenizer char (one token per character) or --tokenizer gpt2 (GPT-2's BPE)");
  QISA_CHECK(opt.doc_separator.empty() || opt.tokenizer == "gpt2",
             cannot(opt) + "--doc-separator needs --tokenizer gpt2 (the char tokenizer has no end-of-text token)",
             "drop --doc-separator, or use --tokenizer gpt2");
  QISA_CHECK(opt.val_fraction >= 0.0 && opt.val_fraction < 1.0,  // also rejects NaN
             cannot(opt) + "--val-fraction " + g(opt.val_fraction) + " is outside [0, 1)",
             "use e.g. 0.1 (the last 10% of the tokens), or 0 for no validation split");
}

// Fail before reading anything when the corpus could not be written anyway.
void check_output_path(const std::string& out_path, const std::vector<std::string>& inputs) {
  const fs::path out(out_path);
  std::error_code ec;
  QISA_CHECK(!fs::is_directory(out, ec), "cannot write corpus " + q(out_path) + ": it is a directory",
             "pass a file name, e.g. --out " + (out / "corpus.h5").string());
  const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  QISA_CHECK(fs::exists(dir, ec),
             "cannot write corpus " + q(out_path) + ": directory " + q(dir.string()) + " does not exist",
             "create it first (mkdir -p " + dir.string() + ")");
  QISA_CHECK(fs::is_directory(dir, ec),
             "cannot write corpus " + q(out_path) + ": " + q(dir.string()) + " is not a directory",
             "choose an output path inside a directory");
  QISA_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
             "cannot write corpus " + q(out_path) + ": directory " + q(dir.string()) + " is not writable",
             "choose an output directory you can write to");
  for (const auto& in : inputs)
    QISA_CHECK(!fs::equivalent(out, in, ec), "cannot prepare corpus " + q(out_path) + ": it is also an input",
               "write the corpus to a new .h5 file; the input text would be replaced");
}

std::string read_input(const std::string& path) {
  std::error_code ec;
  QISA_CHECK(fs::exists(path, ec), "input " + q(path) + " does not exist", "check the path passed to --input");
  QISA_CHECK(!fs::is_directory(path, ec), "input " + q(path) + " is a directory",
             "pass the text files themselves, e.g. --input " + path + "/*.txt");
  std::unique_ptr<FILE, int (*)(FILE*)> fp(std::fopen(path.c_str(), "rb"), std::fclose);
  QISA_CHECK(fp, "cannot read input " + q(path) + ": " + std::strerror(errno), "check the file's permissions");
  std::string bytes;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, fp.get())) > 0) bytes.append(buf, n);  // also works on pipes
  QISA_CHECK(!std::ferror(fp.get()), "reading input " + q(path) + " failed: " + std::strerror(errno),
             "the file system may be failing");
  QISA_CHECK(!bytes.empty(), "input " + q(path) + " is empty", "pass a non-empty UTF-8 text file");
  return bytes;
}

std::string position(const std::string& bytes, size_t offset) {
  const auto line = 1 + std::count(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(bytes[offset]));
  return std::string("byte ") + hex + " at offset " + std::to_string(offset) + " (line " + std::to_string(line) + ")";
}

// Validates UTF-8 and marks the code points seen; returns the number of code points.
int64_t scan_input(const InputText& in, std::vector<bool>& seen) {
  int64_t count = 0;
  for (size_t pos = 0; pos < in.bytes.size(); ++count) {
    char32_t cp;
    const size_t len = decode_utf8_at(in.bytes, pos, &cp);
    QISA_CHECK(len > 0, "input " + q(in.path) + " is not valid UTF-8: " + position(in.bytes, pos),
               "convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 " + in.path + " > " + in.path + ".utf8");
    // HDF5 variable-length strings end at NUL, so U+0000 could not be stored in the vocabulary.
    QISA_CHECK(cp != 0, "input " + q(in.path) + " contains a NUL character: " + position(in.bytes, pos),
               "is it a binary file? the char tokenizer needs plain text");
    seen[cp] = true;
    pos += len;
  }
  return count;
}

CharTokenizer tokenizer_from(const std::vector<bool>& seen) {
  std::vector<char32_t> cps;
  for (char32_t cp = 0; cp < kCodePointLimit; ++cp)
    if (seen[cp]) cps.push_back(cp);
  return CharTokenizer::from_code_points(std::move(cps));
}

// The paper's split: train = data[:int((1 - f) * n)], val = the rest.
int64_t train_count(const PrepareOptions& opt, int64_t n) {
  const auto n_train = static_cast<int64_t>(std::floor((1.0 - opt.val_fraction) * static_cast<double>(n)));
  QISA_CHECK(n_train >= 1,
             cannot(opt) + "the train split would be empty (" + std::to_string(n) + " tokens, --val-fraction " +
                 g(opt.val_fraction) + ")",
             "use a smaller --val-fraction or more text");
  return n_train;
}

// ------------------------------------------------------------------ prepare: tokens

// Each split's largest token id (-1 when empty), stored so that a run checks the ids against
// vocab_size at start without reading the split.
constexpr const char* kMaxIdAttr = "max_id";
constexpr int64_t kScanPiece = int64_t{1} << 20;  // tokens per read when a split must be scanned

template <typename T>
int64_t max_id(const T* begin, const T* end) {
  return begin == end ? -1 : static_cast<int64_t>(*std::max_element(begin, end));
}

// T: uint16_t when the vocabulary fits, to halve the memory of large corpora.
template <typename T>
std::vector<T> encode_char(const std::vector<InputText>& texts, const CharTokenizer& tok, int64_t n) {
  std::vector<T> ids;
  ids.reserve(static_cast<size_t>(n));
  for (const auto& t : texts) {
    for (size_t pos = 0; pos < t.bytes.size();) {
      char32_t cp;
      pos += decode_utf8_at(t.bytes, pos, &cp);  // validated by scan_input
      ids.push_back(static_cast<T>(tok.id_of(cp)));
    }
  }
  return ids;
}

void check_utf8(const InputText& in) {
  for (size_t pos = 0; pos < in.bytes.size();) {
    char32_t cp;
    const size_t len = decode_utf8_at(in.bytes, pos, &cp);
    QISA_CHECK(len > 0, "input " + q(in.path) + " is not valid UTF-8: " + position(in.bytes, pos),
               "convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 " + in.path + " > " + in.path + ".utf8");
    pos += len;
  }
}

// Each input is a document, or each part of one between separators (empty parts skipped);
// <|endoftext|> goes between documents, as GPT-2's training data has it.
std::vector<int32_t> encode_gpt2(const std::vector<InputText>& texts, const Vocabulary& vocab,
                                 const std::string& separator, int64_t* documents) {
  Gpt2Bpe bpe(vocab.tokens, vocab.merges, "the GPT-2 vocabulary");
  std::vector<int32_t> ids;
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.bytes.size();
  ids.reserve(bytes / 3);  // English runs at ~3.3 bytes per token
  *documents = 0;
  auto add = [&](std::string_view doc) {
    if (doc.empty()) return;
    if ((*documents)++ > 0) ids.push_back(bpe.end_of_text());
    bpe.encode(doc, &ids);
  };
  for (const auto& t : texts) {
    check_utf8(t);
    const std::string_view text(t.bytes);
    if (separator.empty()) {
      add(text);
      continue;
    }
    size_t start = 0;
    for (size_t at; (at = text.find(separator, start)) != std::string_view::npos; start = at + separator.size())
      add(text.substr(start, at - start));
    add(text.substr(start));
  }
  return ids;
}

// ------------------------------------------------------------------ reading

void check_token_type(const h5::File& f, const std::string& dataset) {
  h5::Handle d(H5Dopen2(f.id(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  h5::Handle t(d ? H5Dget_type(d.get()) : H5I_INVALID_HID, H5Tclose);
  const bool ok = t && H5Tget_class(t.get()) == H5T_INTEGER && H5Tget_sign(t.get()) == H5T_SGN_NONE;
  QISA_CHECK(ok, q(f.path() + ":" + dataset) + " does not hold unsigned integer token ids: not a qisa corpus",
             rerun_hint(f.path()));
}

int64_t split_length(const h5::File& f, const std::string& split) {
  const std::string ds = "/" + split + "/tokens";
  QISA_CHECK(f.exists(ds), "corpus " + q(f.path()) + " has no dataset " + ds + ": incomplete or not a qisa corpus",
             rerun_hint(f.path()));
  std::vector<hsize_t> dims;
  f.stored_count(ds, &dims);  // the tokens it claims are in the file (else readers would trust any length)
  QISA_CHECK(dims.size() == 1, q(f.path() + ":" + ds) + " is not one-dimensional: not a qisa corpus",
             rerun_hint(f.path()));
  check_token_type(f, ds);
  return static_cast<int64_t>(dims[0]);
}

h5::File open_corpus(const std::string& path) {
  std::error_code ec;
  QISA_CHECK(fs::exists(path, ec), "corpus " + q(path) + " does not exist",
             "create it with: qisa prepare --input TEXT... --out " + path);
  h5::silence_hdf5_errors();
  QISA_CHECK(!fs::is_directory(path, ec) && H5Fis_hdf5(path.c_str()) > 0,
             q(path) + " is not an HDF5 file, so not a qisa corpus",
             "pass the .h5 written by qisa prepare (qisa prepare --input TEXT... --out CORPUS.h5), not the text");
  try {
    return h5::File(path, h5::File::Mode::read);
  } catch (const Error& e) {  // the signature is there, the rest is not: cut short or damaged
    throw Error("corpus " + q(path) + " cannot be opened (" + e.what() + ")",
                "the file is truncated (an interrupted copy?) or damaged: copy it again, or " + rerun_hint(path));
  }
}

// The first id >= vocab_size in /<split>/tokens, read in pieces; -1 when there is none.
int64_t first_bad_id(const h5::File& f, const std::string& ds, int64_t n, int64_t vocab, int64_t* at) {
  std::vector<uint32_t> buf;
  for (int64_t a = 0; a < n; a += kScanPiece) {
    const int64_t c = std::min(kScanPiece, n - a);
    buf.resize(static_cast<size_t>(c));
    f.read_slice<uint32_t>(ds, static_cast<hsize_t>(a), static_cast<hsize_t>(c), buf.data());
    const auto bad = std::find_if(buf.begin(), buf.end(), [&](uint32_t id) { return id >= vocab; });
    if (bad != buf.end()) {
      *at = a + (bad - buf.begin());
      return *bad;
    }
  }
  return -1;
}

void check_split_ids(const h5::File& f, const CorpusInfo& info, const std::string& split) {
  const std::string ds = "/" + split + "/tokens";
  const std::string hint = "the file is corrupt or was written by another tool: " + rerun_hint(f.path());
  if (f.has_attr(ds, kMaxIdAttr)) {
    const int64_t hi = f.attr_int(ds, kMaxIdAttr);
    QISA_CHECK(hi < info.vocab_size,
               "corpus " + q(f.path()) + ": " + ds + " holds token ids up to " + std::to_string(hi) +
                   " (attribute max_id), but vocab_size is " + std::to_string(info.vocab_size),
               hint);
    return;
  }
  int64_t at = 0;
  const int64_t bad = first_bad_id(f, ds, split == "train" ? info.train_tokens : info.val_tokens, info.vocab_size, &at);
  QISA_CHECK(bad < 0,
             "corpus " + q(f.path()) + ": " + ds + " holds token id " + std::to_string(bad) + " at position " +
                 std::to_string(at) + ", but vocab_size is " + std::to_string(info.vocab_size),
             hint);
}

CorpusInfo read_info(const h5::File& f) {
  const std::string& path = f.path();
  if (f.has_attr("/", "kind") || !f.has_attr("/", "format_version"))  // not a corpus: say what it is
    expect_file_kind(f, FileKind::corpus,
                     "pass the corpus written by qisa prepare (qisa prepare --input TEXT... --out CORPUS.h5 makes one)");
  CorpusInfo info;
  info.path = path;
  info.format_version = f.attr_int("/", "format_version");
  QISA_CHECK(info.format_version == kCorpusFormatVersion,
             "corpus " + q(path) + " has format_version " + std::to_string(info.format_version) +
                 "; this qisa reads format_version " + std::to_string(kCorpusFormatVersion),
             "re-run qisa prepare with this version of qisa");
  for (const char* attr : {"vocab_size", "tokenizer"})
    QISA_CHECK(f.has_attr("/", attr), "corpus " + q(path) + " has no '" + attr + "' attribute: not a qisa corpus",
               rerun_hint(path));
  info.vocab_size = f.attr_int("/", "vocab_size");
  info.tokenizer = f.attr_string("/", "tokenizer");
  QISA_CHECK(info.vocab_size >= 1, "corpus " + q(path) + " has vocab_size " + std::to_string(info.vocab_size),
             rerun_hint(path));
  QISA_CHECK(info.tokenizer == "char" || info.tokenizer == "gpt2",
             "corpus " + q(path) + " uses tokenizer " + q(info.tokenizer) + ", which this qisa does not support (supported: " +
                 kSupportedTokenizers + ")",
             rerun_hint(path));
  if (info.tokenizer == "char") {
    QISA_CHECK(f.exists("/tokenizer/vocab"), "corpus " + q(path) + " has no dataset /tokenizer/vocab",
               rerun_hint(path));
    const auto vdims = f.dims("/tokenizer/vocab");
    QISA_CHECK(vdims.size() == 1 && static_cast<int64_t>(vdims[0]) == info.vocab_size,
               "corpus " + q(path) + ": /tokenizer/vocab does not have vocab_size = " + std::to_string(info.vocab_size) +
                   " entries",
               rerun_hint(path));
  } else {
    for (const char* ds : {"/tokenizer/encoder", "/tokenizer/merges"})
      QISA_CHECK(f.exists(ds), "corpus " + q(path) + " uses tokenizer 'gpt2' but has no dataset " + ds, rerun_hint(path));
  }
  info.train_tokens = split_length(f, "train");
  info.val_tokens = split_length(f, "val");
  QISA_CHECK(info.train_tokens >= 1, "corpus " + q(path) + " has an empty train split", rerun_hint(path));
  return info;
}

}  // namespace

CorpusInfo read_corpus_info(const std::string& path) { return read_info(open_corpus(path)); }

void check_token_ids(const std::string& path) {
  const h5::File f = open_corpus(path);
  const CorpusInfo info = read_info(f);
  for (const char* split : {"train", "val"}) check_split_ids(f, info, split);
}

std::vector<int32_t> read_split(const std::string& path, const std::string& split) {
  QISA_CHECK(split == "train" || split == "val", "read_split: unknown split " + q(split) + " of corpus " + q(path),
             "the splits are 'train' and 'val'");
  const h5::File f = open_corpus(path);
  const CorpusInfo info = read_info(f);
  const std::string ds = "/" + split + "/tokens";
  // Stored ids are unsigned; HDF5 clamps values above INT32_MAX, which the range check catches.
  std::vector<int32_t> ids = f.read<int32_t>(ds);
  const auto bad = std::find_if(ids.begin(), ids.end(),
                                [&](int32_t id) { return id < 0 || id >= info.vocab_size; });
  QISA_CHECK(bad == ids.end(),
             q(path + ":" + ds) + " holds token id " + std::to_string(bad == ids.end() ? 0 : *bad) + " at index " +
                 std::to_string(bad - ids.begin()) + ", but vocab_size is " + std::to_string(info.vocab_size),
             "the file is corrupt or was edited: " + rerun_hint(path));
  return ids;
}

Vocabulary read_vocabulary(const std::string& path) {
  const h5::File f = open_corpus(path);
  const CorpusInfo info = read_info(f);
  Vocabulary v = read_stored_vocabulary(f);
  QISA_CHECK(v.tokenizer == info.tokenizer && v.size() == info.vocab_size,
             "corpus " + q(path) + " has tokenizer " + q(info.tokenizer) + " and vocab_size " +
                 std::to_string(info.vocab_size) + " but stores a " + q(v.tokenizer) + " vocabulary of " +
                 std::to_string(v.size()) + " tokens",
             rerun_hint(path));
  try {
    make_codec(v, "corpus " + q(path));  // char: one character per entry, sorted by code point
  } catch (const Error& e) {
    throw Error(e.what(), rerun_hint(path));
  }
  return v;
}

std::vector<std::string> read_vocab(const std::string& path) { return read_vocabulary(path).tokens; }

void check_corpus_output(const std::string& out, const std::vector<std::string>& inputs) {
  QISA_CHECK(!out.empty(), "qisa prepare: no output path given", "pass the corpus path with --out, e.g. data/corpus.h5");
  check_output_path(out, inputs);
}

PrepareResult prepare_corpus(const PrepareOptions& opt) {
  check_options(opt);
  check_corpus_output(opt.out, opt.inputs);
  // The GPT-2 files first: a missing vocabulary should not wait for gigabytes of input.
  Vocabulary vocab;
  if (opt.tokenizer == "gpt2") vocab = load_gpt2_vocabulary(opt.gpt2_dir);
  std::vector<InputText> texts;
  PrepareResult r;
  for (const auto& path : opt.inputs) {
    texts.push_back({path, read_input(path)});
    r.bytes_read += static_cast<int64_t>(texts.back().bytes.size());
  }
  std::vector<uint16_t> ids16;
  std::vector<int32_t> ids32;
  if (opt.tokenizer == "char") {
    std::vector<bool> seen(kCodePointLimit, false);
    int64_t n = 0;
    for (const auto& t : texts) n += scan_input(t, seen);
    const CharTokenizer tok = tokenizer_from(seen);
    vocab = char_vocabulary(tok.vocab());
    if (tok.size() <= 65536)
      ids16 = encode_char<uint16_t>(texts, tok, n);
    else
      ids32 = encode_char<int32_t>(texts, tok, n);
  } else {
    ids32 = encode_gpt2(texts, vocab, opt.doc_separator, &r.documents);
  }
  r.vocab_size = vocab.size();
  const auto n = static_cast<int64_t>(ids16.size() + ids32.size());
  r.train_tokens = train_count(opt, n);
  r.val_tokens = n - r.train_tokens;
  CorpusWriter w(opt.out, vocab, r.train_tokens, r.val_tokens);
  w.set_attr("val_fraction", opt.val_fraction);
  w.set_attr("source", std::string("text"));
  w.append(ids16.data(), ids16.size());
  w.append(ids32.data(), ids32.size());
  w.commit();
  return r;
}

// ------------------------------------------------------------------ CorpusWriter

struct CorpusWriter::Impl {
  AtomicFile atomic;  // removes the temporary unless commit() is reached
  h5::File file;
  std::optional<h5::Dataset> train, val;
  int64_t n_train, n_val, written = 0;
  int64_t max_train = -1, max_val = -1;  // stored as each split's max_id
  Impl(const std::string& out, int64_t t, int64_t v)
      : atomic(out), file(atomic.tmp_path(), h5::File::Mode::create), n_train(t), n_val(v) {}

  void append(hid_t mem_type, size_t elem_bytes, const void* data, size_t n) {
    QISA_CHECK(static_cast<int64_t>(n) <= n_train + n_val - written,
               "corpus " + q(atomic.final_path()) + ": " + std::to_string(written + static_cast<int64_t>(n)) +
                   " tokens appended to splits of " + std::to_string(n_train) + " + " + std::to_string(n_val),
               "this is a bug in the caller");
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const bool to_train = written < n_train;
      const int64_t room = to_train ? n_train - written : n_train + n_val - written;
      const auto k = std::min<size_t>(n, static_cast<size_t>(room));
      const int64_t at = to_train ? written : written - n_train;
      (to_train ? *train : *val).write_flat_raw(static_cast<hsize_t>(at), k, mem_type, p);
      const int64_t m = mem_type == H5T_NATIVE_UINT16
                            ? max_id(reinterpret_cast<const uint16_t*>(p), reinterpret_cast<const uint16_t*>(p) + k)
                            : max_id(reinterpret_cast<const int32_t*>(p), reinterpret_cast<const int32_t*>(p) + k);
      int64_t& split_max = to_train ? max_train : max_val;
      split_max = std::max(split_max, m);
      written += static_cast<int64_t>(k);
      p += k * elem_bytes;
      n -= k;
    }
  }
};

CorpusWriter::CorpusWriter(const std::string& out, const Vocabulary& vocab, int64_t train_tokens, int64_t val_tokens)
    : impl_(std::make_unique<Impl>(out, train_tokens, val_tokens)) {
  QISA_CHECK(train_tokens >= 1 && val_tokens >= 0 && !vocab.empty(),
             "corpus " + q(out) + ": cannot write " + std::to_string(train_tokens) + " train and " +
                 std::to_string(val_tokens) + " val tokens over " + std::to_string(vocab.size()) + " token ids",
             "this is a bug in the caller");
  h5::File& f = impl_->file;
  f.set_attr("/", "format_version", kCorpusFormatVersion);
  f.set_attr("/", "vocab_size", vocab.size());
  f.set_attr("/", "tokenizer", vocab.tokenizer);
  const hid_t stored = vocab.size() <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
  h5::WriteOptions w;
  w.chunk = kChunkTokens;
  w.fletcher32 = true;
  impl_->train.emplace(f.create_dataset("/train/tokens", stored, {static_cast<hsize_t>(train_tokens)}, w));
  impl_->val.emplace(f.create_dataset("/val/tokens", stored, {static_cast<hsize_t>(val_tokens)}, w));  // empty: contiguous
  if (vocab.tokenizer == "gpt2")
    write_bpe_tables(f, vocab);
  else
    f.write_strings("/tokenizer/vocab", vocab.tokens, {static_cast<hsize_t>(vocab.size())});
}

CorpusWriter::~CorpusWriter() = default;

void CorpusWriter::set_attr(const std::string& name, double value) { impl_->file.set_attr("/", name, value); }
void CorpusWriter::set_attr(const std::string& name, const std::string& value) { impl_->file.set_attr("/", name, value); }

void CorpusWriter::append(const int32_t* ids, size_t n) { impl_->append(H5T_NATIVE_INT32, sizeof *ids, ids, n); }
void CorpusWriter::append(const uint16_t* ids, size_t n) { impl_->append(H5T_NATIVE_UINT16, sizeof *ids, ids, n); }

void CorpusWriter::commit() {
  Impl& m = *impl_;
  QISA_CHECK(m.written == m.n_train + m.n_val,
             "corpus " + q(m.atomic.final_path()) + ": " + std::to_string(m.written) + " of " +
                 std::to_string(m.n_train + m.n_val) + " tokens written",
             "this is a bug in the caller");
  m.train->close();
  m.val->close();
  m.file.set_attr("/train/tokens", kMaxIdAttr, m.max_train);
  m.file.set_attr("/val/tokens", kMaxIdAttr, m.max_val);
  m.file.close();
  m.atomic.commit();
}

}  // namespace qisa
