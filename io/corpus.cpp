#include "io/corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "io/atomic_file.h"
#include "io/hdf5.h"
#include "io/tokenizer.h"
#include "kernels/error.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSupportedTokenizers = "char";
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
  QISA_CHECK(opt.tokenizer == "char",
             cannot(opt) + "tokenizer " + q(opt.tokenizer) + " is not supported (supported: " + kSupportedTokenizers + ")",
             "use --tokenizer char");
  QISA_CHECK(opt.val_fraction >= 0.0 && opt.val_fraction < 1.0,  // also rejects NaN
             cannot(opt) + "--val-fraction " + g(opt.val_fraction) + " is outside [0, 1)",
             "use e.g. 0.1 (the last 10% of the tokens), or 0 for no validation split");
}

// Fail before reading anything when the corpus could not be written anyway.
void check_output(const PrepareOptions& opt) {
  const fs::path out(opt.out);
  std::error_code ec;
  QISA_CHECK(!fs::is_directory(out, ec), "cannot write corpus " + q(opt.out) + ": it is a directory",
             "pass a file name, e.g. --out " + (out / "corpus.h5").string());
  const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  QISA_CHECK(fs::exists(dir, ec),
             "cannot write corpus " + q(opt.out) + ": directory " + q(dir.string()) + " does not exist",
             "create it first (mkdir -p " + dir.string() + ")");
  QISA_CHECK(fs::is_directory(dir, ec),
             "cannot write corpus " + q(opt.out) + ": " + q(dir.string()) + " is not a directory",
             "choose an output path inside a directory");
  QISA_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
             "cannot write corpus " + q(opt.out) + ": directory " + q(dir.string()) + " is not writable",
             "choose an output directory you can write to");
  for (const auto& in : opt.inputs)
    QISA_CHECK(!fs::equivalent(out, in, ec), cannot(opt) + "it is also an input",
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

// ------------------------------------------------------------------ prepare: output

template <typename T>
std::vector<T> encode_all(const std::vector<InputText>& texts, const CharTokenizer& tok, int64_t n) {
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

template <typename T>
void write_corpus(const PrepareOptions& opt, const CharTokenizer& tok, const std::vector<T>& ids, int64_t n_train) {
  const hid_t stored = sizeof(T) == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
  const auto n_val = static_cast<hsize_t>(ids.size()) - static_cast<hsize_t>(n_train);
  AtomicFile out(opt.out);  // removes the temporary unless commit() is reached
  {
    h5::File f(out.tmp_path(), h5::File::Mode::create);
    f.set_attr("/", "format_version", kCorpusFormatVersion);
    f.set_attr("/", "vocab_size", tok.size());
    f.set_attr("/", "tokenizer", opt.tokenizer);
    f.set_attr("/", "val_fraction", opt.val_fraction);
    h5::WriteOptions w;
    w.chunk = kChunkTokens;
    w.fletcher32 = true;
    f.write_as<T>("/train/tokens", stored, ids.data(), {static_cast<hsize_t>(n_train)}, w);
    f.write_as<T>("/val/tokens", stored, ids.data() + n_train, {n_val}, w);  // empty: contiguous
    f.write_strings("/tokenizer/vocab", tok.vocab(), {static_cast<hsize_t>(tok.size())});
    f.close();
  }
  out.commit();
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
  return h5::File(path, h5::File::Mode::read);
}

CorpusInfo read_info(const h5::File& f) {
  const std::string& path = f.path();
  QISA_CHECK(f.has_attr("/", "format_version"),
             q(path) + " is not a qisa corpus (no format_version attribute)", rerun_hint(path));
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
  QISA_CHECK(info.tokenizer == "char",
             "corpus " + q(path) + " uses tokenizer " + q(info.tokenizer) + ", which this qisa does not support (supported: " +
                 kSupportedTokenizers + ")",
             rerun_hint(path));
  QISA_CHECK(f.exists("/tokenizer/vocab"), "corpus " + q(path) + " has no dataset /tokenizer/vocab",
             rerun_hint(path));
  const auto vdims = f.dims("/tokenizer/vocab");
  QISA_CHECK(vdims.size() == 1 && static_cast<int64_t>(vdims[0]) == info.vocab_size,
             "corpus " + q(path) + ": /tokenizer/vocab does not have vocab_size = " + std::to_string(info.vocab_size) +
                 " entries",
             rerun_hint(path));
  info.train_tokens = split_length(f, "train");
  info.val_tokens = split_length(f, "val");
  QISA_CHECK(info.train_tokens >= 1, "corpus " + q(path) + " has an empty train split", rerun_hint(path));
  return info;
}

}  // namespace

CorpusInfo read_corpus_info(const std::string& path) { return read_info(open_corpus(path)); }

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

std::vector<std::string> read_vocab(const std::string& path) {
  const h5::File f = open_corpus(path);
  read_info(f);
  std::vector<std::string> vocab = f.read_strings("/tokenizer/vocab");
  try {
    CharTokenizer check(vocab);  // one character per entry, sorted by code point
  } catch (const Error& e) {
    throw Error("corpus " + q(path) + ": " + e.what(), rerun_hint(path));
  }
  return vocab;
}

PrepareResult prepare_corpus(const PrepareOptions& opt) {
  check_options(opt);
  check_output(opt);
  std::vector<InputText> texts;
  PrepareResult r;
  for (const auto& path : opt.inputs) {
    texts.push_back({path, read_input(path)});
    r.bytes_read += static_cast<int64_t>(texts.back().bytes.size());
  }
  std::vector<bool> seen(kCodePointLimit, false);
  int64_t n = 0;
  for (const auto& t : texts) n += scan_input(t, seen);
  const CharTokenizer tok = tokenizer_from(seen);
  r.vocab_size = tok.size();
  r.train_tokens = train_count(opt, n);
  r.val_tokens = n - r.train_tokens;
  if (tok.size() <= 65536)
    write_corpus(opt, tok, encode_all<uint16_t>(texts, tok, n), r.train_tokens);
  else
    write_corpus(opt, tok, encode_all<uint32_t>(texts, tok, n), r.train_tokens);
  return r;
}

}  // namespace qisa
