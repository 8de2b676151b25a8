// Token corpora in HDF5 (format_version 1):
//   /train/tokens, /val/tokens   1-D unsigned integers (uint16 when vocab_size <= 65536, else
//                                uint32), chunked (64 Ki tokens), fletcher32; an EMPTY val split
//                                (--val-fraction 0) is a contiguous 0-length dataset (HDF5 cannot
//                                chunk a fixed 0-length extent)
//                                attribute max_id (int64): the split's largest id, -1 when empty
//                                (absent in corpora prepared before it existed)
//   root attributes              vocab_size (int64), tokenizer ("char"), format_version (int64);
//                                also val_fraction (double), for the record
//   /tokenizer/vocab             char tokenizer: UTF-8 strings, index = token id, sorted by code point
// Text is the inputs concatenated byte for byte; val = the last val_fraction of the tokens:
// train = tokens[:floor((1 - f) * n)] as in the paper's int(0.9 * len(data)). U+0000 is
// rejected (it cannot be stored in an HDF5 variable-length string).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qisa {

inline constexpr int64_t kCorpusFormatVersion = 1;

struct CorpusInfo {
  std::string path;
  int64_t vocab_size = 0;
  std::string tokenizer;
  int64_t format_version = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
};

// Reads and checks the metadata (format version, attributes, datasets present).
CorpusInfo read_corpus_info(const std::string& path);
// Every token id of both splits < vocab_size, checked cheaply: qisa prepare stores each split's
// largest id (attribute max_id), which is compared; a split without it (prepared before the
// attribute existed, or written by another tool) is read once in pieces of 1 Mi tokens. Throws
// naming the file, the dataset and the id. (CorpusReader checks every window it reads too.)
void check_token_ids(const std::string& path);
// The whole split ("train" or "val") as token ids. Checks every id < vocab_size.
std::vector<int32_t> read_split(const std::string& path, const std::string& split);
// The char tokenizer's vocabulary (index = token id).
std::vector<std::string> read_vocab(const std::string& path);

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files, concatenated in order
  std::string out;                  // corpus .h5 (written atomically)
  std::string tokenizer = "char";
  double val_fraction = 0.1;        // the last fraction of the tokens goes to /val
};

struct PrepareResult {
  int64_t vocab_size = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t bytes_read = 0;
};

// Reads, validates (exists, non-empty, UTF-8) and tokenizes the inputs, then writes the corpus
// atomically: on any error no file is left at `out`.
PrepareResult prepare_corpus(const PrepareOptions& opt);

}  // namespace qisa
