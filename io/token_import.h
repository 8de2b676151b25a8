// Token files of other tools -> our HDF5 corpus (io/corpus.h), streamed in bounded memory:
//   llmc     llm.c's shards: a 1024-byte header of 256 little-endian int32 (magic 20240520,
//            version 1, token count), then the tokens as little-endian uint16
//   raw-u16  nanoGPT's train.bin / val.bin: little-endian uint16 tokens, nothing else
// The split is by file name unless a val fraction is given: a file whose name has the word
// "val" (or "valid", "validation") is validation, one with "train" is training, words being
// separated by '_', '-', '.' (fineweb_val_000000.bin, tiny_shakespeare_train.bin, val.bin).
// Train files are concatenated in the order given, then val files. With a val fraction, all
// files are concatenated in order and the last fraction of the tokens is val (as prepare does).
// Every id is checked against the tokenizer's vocabulary; the tokenizer (gpt2) is stored.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qisa {

enum class TokenFileFormat { llmc, raw_u16 };

struct ImportOptions {
  TokenFileFormat format = TokenFileFormat::llmc;
  std::vector<std::string> inputs;
  std::string out;                    // corpus .h5 (written atomically)
  std::string tokenizer = "gpt2";     // what the ids mean; supported: gpt2
  std::string gpt2_dir;               // io/gpt2_files.h ("" = default)
  std::optional<double> val_fraction; // unset: split by file name
};

struct ImportResult {
  int64_t vocab_size = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  int64_t train_files = 0, val_files = 0;  // by name; with a fraction, every file counts as train
};

ImportResult import_token_files(const ImportOptions& opt);

const char* to_string(TokenFileFormat f);  // "llmc", "raw-u16"

}  // namespace qisa
