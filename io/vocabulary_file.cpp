#include "io/vocabulary_file.h"

#include <algorithm>

#include "kernels/error.h"

namespace qisa {

namespace {

constexpr const char* kEncoder = "/tokenizer/encoder";
constexpr const char* kMerges = "/tokenizer/merges";
constexpr hsize_t kChunkBytes = hsize_t{1} << 18;

void write_lines(h5::File& f, const std::string& ds, const std::vector<std::string>& lines) {
  std::string blob;
  for (const auto& s : lines) {
    QISA_CHECK(s.find('\n') == std::string::npos, "'" + f.path() + ":" + ds + "': entry '" + s + "' holds a newline",
               "a byte-level BPE vocabulary has none: this is a bug in the caller");
    blob += s;
    blob += '\n';
  }
  h5::WriteOptions w;
  w.chunk = kChunkBytes;
  w.fletcher32 = true;
  f.write<uint8_t>(ds, reinterpret_cast<const uint8_t*>(blob.data()), {static_cast<hsize_t>(blob.size())}, w);
}

std::vector<std::string> read_lines(const h5::File& f, const std::string& ds) {
  const std::vector<uint8_t> blob = f.read<uint8_t>(ds);
  QISA_CHECK(blob.empty() || blob.back() == '\n', "'" + f.path() + ":" + ds + "' does not end with a newline",
             "the file is truncated or corrupt: re-create it");
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < blob.size(); ++i)
    if (blob[i] == '\n') {
      lines.emplace_back(reinterpret_cast<const char*>(blob.data()) + start, i - start);
      start = i + 1;
    }
  return lines;
}

}  // namespace

void write_bpe_tables(h5::File& f, const Vocabulary& v) {
  write_lines(f, kEncoder, v.tokens);
  write_lines(f, kMerges, v.merges);
}

Vocabulary read_stored_vocabulary(const h5::File& f) {
  Vocabulary v;
  if (f.exists_checked(kEncoder)) {
    QISA_CHECK(f.exists_checked(kMerges), "'" + f.path() + "' has " + kEncoder + " but no " + kMerges,
               "the file is incomplete: re-create it");
    v.tokenizer = "gpt2";
    v.tokens = read_lines(f, kEncoder);
    v.merges = read_lines(f, kMerges);
  } else if (f.exists_checked("/tokenizer/vocab")) {
    v.tokenizer = "char";
    v.tokens = f.read_strings("/tokenizer/vocab");
  }
  return v;
}

}  // namespace qisa
