#include "io/token_import.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "io/corpus.h"
#include "io/gpt2_files.h"
#include "kernels/error.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

constexpr int32_t kLlmcMagic = 20240520;
constexpr int32_t kLlmcVersion = 1;
constexpr int64_t kLlmcHeaderBytes = 1024;
constexpr size_t kBlockTokens = size_t{1} << 20;  // 2 MiB read at a time

std::string q(const std::string& s) { return "'" + s + "'"; }

using FilePtr = std::unique_ptr<FILE, int (*)(FILE*)>;

FilePtr open_input(const std::string& path) {
  std::error_code ec;
  QISA_CHECK(fs::exists(path, ec), "token file " + q(path) + " does not exist", "check the path");
  QISA_CHECK(fs::is_regular_file(path, ec), "token file " + q(path) + " is not a regular file",
             "pass the .bin files themselves, e.g. " + path + "/*.bin");
  FilePtr fp(std::fopen(path.c_str(), "rb"), std::fclose);
  QISA_CHECK(fp, "cannot read token file " + q(path) + ": " + std::strerror(errno), "check the file's permissions");
  return fp;
}

int32_t le32(const unsigned char* p) {
  return static_cast<int32_t>(static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                              static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24);
}

struct TokenFile {
  std::string path;
  int64_t data_offset = 0;  // bytes before the first token
  int64_t tokens = 0;
  bool val = false;
};

TokenFile inspect_llmc(const std::string& path) {
  FilePtr fp = open_input(path);
  const auto size = static_cast<int64_t>(fs::file_size(path));
  QISA_CHECK(size >= kLlmcHeaderBytes,
             "token file " + q(path) + " has " + std::to_string(size) + " bytes, fewer than llm.c's 1024-byte header",
             "is it a raw uint16 token file (nanoGPT's train.bin)? import those with --import-raw-u16");
  unsigned char h[kLlmcHeaderBytes];
  QISA_CHECK(std::fread(h, 1, sizeof h, fp.get()) == sizeof h,
             "reading the header of " + q(path) + " failed: " + std::strerror(errno), "the file system may be failing");
  const int32_t magic = le32(h), version = le32(h + 4), count = le32(h + 8);
  QISA_CHECK(magic == kLlmcMagic,
             "token file " + q(path) + ": header field magic (int32 at byte 0) is " + std::to_string(magic) +
                 ", expected 20240520",
             "not an llm.c token shard; a raw uint16 token file (nanoGPT's train.bin) imports with --import-raw-u16");
  QISA_CHECK(version == kLlmcVersion,
             "token file " + q(path) + ": header field version (int32 at byte 4) is " + std::to_string(version) +
                 ", expected 1",
             "version 1 holds uint16 GPT-2 tokens; other versions (2: llm.c's uint32 Llama 3 shards) are not supported");
  QISA_CHECK(count > 0,
             "token file " + q(path) + ": header field token count (int32 at byte 8) is " + std::to_string(count),
             "a shard holds at least one token; the file is damaged or was not written by llm.c");
  const int64_t want = kLlmcHeaderBytes + 2 * static_cast<int64_t>(count);
  QISA_CHECK(size == want,
             "token file " + q(path) + ": header field token count (int32 at byte 8) says " + std::to_string(count) +
                 " tokens, i.e. " + std::to_string(want) + " bytes with the header, but the file has " +
                 std::to_string(size) + " bytes",
             size < want ? "the file is truncated: copy or download it again"
                         : "the file has bytes after its tokens: it was not written by llm.c's write_datafile");
  return TokenFile{path, kLlmcHeaderBytes, count, false};
}

TokenFile inspect_raw_u16(const std::string& path) {
  FilePtr fp = open_input(path);
  const auto size = static_cast<int64_t>(fs::file_size(path));
  QISA_CHECK(size > 0, "token file " + q(path) + " is empty", "pass a file with at least one token");
  QISA_CHECK(size % 2 == 0,
             "token file " + q(path) + " has " + std::to_string(size) + " bytes, an odd number: not whole uint16 tokens",
             "a raw token file holds 2 bytes per token; is it truncated, or another format (llm.c shards: "
             "--import-llmc)?");
  unsigned char head[4] = {0, 0, 0, 0};
  if (size >= 4 && std::fread(head, 1, 4, fp.get()) == 4)
    QISA_CHECK(le32(head) != kLlmcMagic,
               "token file " + q(path) + " starts with llm.c's shard magic 20240520 (bytes 0-3), not with tokens",
               "import llm.c shards with --import-llmc");
  return TokenFile{path, 0, size / 2, false};
}

// true: val, false: train, by the words of the file name.
bool val_by_name(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  bool val = false, train = false;
  size_t start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '_' && name[i] != '-' && name[i] != '.') continue;
    std::string word = name.substr(start, i - start);
    std::transform(word.begin(), word.end(), word.begin(), [](unsigned char c) { return std::tolower(c); });
    val = val || word == "val" || word == "valid" || word == "validation";
    train = train || word == "train";
    start = i + 1;
  }
  QISA_CHECK(val != train,
             "cannot tell from its name whether token file " + q(path) + " is train or val data (" +
                 (val ? "both words appear" : "neither 'train' nor 'val' appears") + ")",
             "name the files like llm.c's (*_train_*.bin, *_val_*.bin) or nanoGPT's (train.bin, val.bin), or pass "
             "--val-fraction F to split the concatenated tokens by fraction");
  return val;
}

// Streams one file's tokens into the writer, checking every id against the vocabulary.
void copy_tokens(const TokenFile& t, int64_t vocab_size, const std::string& tokenizer, CorpusWriter& w,
                 std::vector<unsigned char>& bytes, std::vector<uint16_t>& ids) {
  FilePtr fp = open_input(t.path);
  QISA_CHECK(std::fseek(fp.get(), static_cast<long>(t.data_offset), SEEK_SET) == 0,
             "cannot seek in token file " + q(t.path) + ": " + std::strerror(errno), "the file system may be failing");
  for (int64_t done = 0; done < t.tokens;) {
    const auto k = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(kBlockTokens), t.tokens - done));
    const size_t got = std::fread(bytes.data(), 2, k, fp.get());
    QISA_CHECK(got == k,
               "reading token file " + q(t.path) + " failed at byte " + std::to_string(t.data_offset + 2 * done) +
                   (std::ferror(fp.get()) ? std::string(": ") + std::strerror(errno) : std::string(": it got shorter")),
               "was the file changed while qisa read it?");
    for (size_t i = 0; i < k; ++i) {
      ids[i] = static_cast<uint16_t>(bytes[2 * i] | bytes[2 * i + 1] << 8);
      if (ids[i] < vocab_size) continue;
      const int64_t index = done + static_cast<int64_t>(i);
      throw Error("token file " + q(t.path) + ": token id " + std::to_string(ids[i]) + " at byte " +
                      std::to_string(t.data_offset + 2 * index) + " (token " + std::to_string(index) + ") is >= " +
                      std::to_string(vocab_size) + ", the vocab_size of tokenizer " + tokenizer,
                  "the file holds ids of another tokenizer, or is not a token file of this format (--import-llmc "
                  "reads llm.c shards, --import-raw-u16 headerless uint16)");
    }
    w.append(ids.data(), k);
    done += static_cast<int64_t>(k);
  }
}

}  // namespace

const char* to_string(TokenFileFormat f) { return f == TokenFileFormat::llmc ? "llmc" : "raw-u16"; }

ImportResult import_token_files(const ImportOptions& opt) {
  const std::string cannot = "cannot import into corpus " + q(opt.out) + ": ";
  QISA_CHECK(!opt.inputs.empty(), cannot + "no token files given", "pass one or more .bin files");
  QISA_CHECK(opt.tokenizer == "gpt2", cannot + "tokenizer " + q(opt.tokenizer) + " is not supported (supported: gpt2)",
             "qisa imports token ids whose tokenizer it knows, so that eval and sample can decode them");
  if (opt.val_fraction)
    QISA_CHECK(*opt.val_fraction >= 0.0 && *opt.val_fraction < 1.0,
               cannot + "--val-fraction " + std::to_string(*opt.val_fraction) + " is outside [0, 1)",
               "use e.g. 0.1, or leave it out to split by file name");
  check_corpus_output(opt.out, opt.inputs);

  std::vector<TokenFile> files;
  for (const auto& path : opt.inputs) {
    files.push_back(opt.format == TokenFileFormat::llmc ? inspect_llmc(path) : inspect_raw_u16(path));
    if (!opt.val_fraction) files.back().val = val_by_name(path);
  }
  // Train files first, then val files, each in the order given.
  std::stable_partition(files.begin(), files.end(), [](const TokenFile& t) { return !t.val; });
  ImportResult r;
  int64_t total = 0;
  for (const auto& t : files) {
    total += t.tokens;
    (t.val ? r.val_files : r.train_files) += 1;
    (t.val ? r.val_tokens : r.train_tokens) += t.tokens;
  }
  if (opt.val_fraction) {
    r.train_tokens = static_cast<int64_t>(std::floor((1.0 - *opt.val_fraction) * static_cast<double>(total)));
    r.val_tokens = total - r.train_tokens;
  }
  QISA_CHECK(r.train_tokens >= 1,
             cannot + (opt.val_fraction ? "the train split would be empty (" + std::to_string(total) + " tokens)"
                                        : "no file is train data by its name (" + std::to_string(files.size()) +
                                              " given, all val)"),
             opt.val_fraction ? "use a smaller --val-fraction" : "add a *_train_* file, or split by --val-fraction");

  const Vocabulary vocab = load_gpt2_vocabulary(opt.gpt2_dir);
  r.vocab_size = vocab.size();
  CorpusWriter w(opt.out, vocab, r.train_tokens, r.val_tokens);
  w.set_attr("source", std::string(to_string(opt.format)));
  if (opt.val_fraction) w.set_attr("val_fraction", *opt.val_fraction);
  std::vector<unsigned char> bytes(2 * kBlockTokens);
  std::vector<uint16_t> ids(kBlockTokens);
  for (const auto& t : files) copy_tokens(t, vocab.size(), opt.tokenizer, w, bytes, ids);
  w.commit();
  return r;
}

}  // namespace qisa
