// Token corpora in HDF5 (format_version 1):
//   /train/tokens, /val/tokens   1-D unsigned integers (uint16 when vocab_size <= 65536, else
//                                uint32), chunked (64 Ki tokens), fletcher32; an EMPTY val split
//                                (--val-fraction 0) is a contiguous 0-length dataset (HDF5 cannot
//                                chunk a fixed 0-length extent)
//                                attribute max_id (int64): the split's largest id, -1 when empty
//                                (absent in corpora prepared before it existed)
//   root attributes              vocab_size (int64), tokenizer ("char" or "gpt2"), format_version
//                                (int64); for the record also val_fraction (double) when the split
//                                is by fraction, and source ("text", "llmc", "raw-u16")
//   /tokenizer/vocab             char tokenizer: UTF-8 strings, index = token id, sorted by code point
//   /tokenizer/encoder, /tokenizer/merges
//                                gpt2 tokenizer: GPT-2's token strings and merges (io/vocabulary_file.h)
// Text: char concatenates the inputs byte for byte; gpt2 encodes each document (an input file,
// or the parts of one between --doc-separator strings) and puts <|endoftext|> (50256) between
// documents. val = the last val_fraction of the tokens: train = tokens[:floor((1 - f) * n)] as
// in the paper's int(0.9 * len(data)). U+0000 is rejected by char (it cannot be stored in an
// HDF5 variable-length string). Token files of other tools come in through io/token_import.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/vocabulary.h"

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
// The corpus's tokenizer, checked (char: one character per entry, sorted; gpt2: a consistent
// BPE vocabulary of vocab_size tokens).
Vocabulary read_vocabulary(const std::string& path);
// Its token strings (index = token id).
std::vector<std::string> read_vocab(const std::string& path);

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files, concatenated in order
  std::string out;                  // corpus .h5 (written atomically)
  std::string tokenizer = "char";   // "char" or "gpt2"
  double val_fraction = 0.1;        // the last fraction of the tokens goes to /val
  std::string gpt2_dir;             // gpt2: encoder.json and vocab.bpe (io/gpt2_files.h; "" = default)
  std::string doc_separator;        // gpt2: also split each input into documents at this string
};

struct PrepareResult {
  int64_t vocab_size = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t bytes_read = 0;
  int64_t documents = 0;  // gpt2: documents encoded (<|endoftext|> between them)
};

// Reads, validates (exists, non-empty, UTF-8) and tokenizes the inputs, then writes the corpus
// atomically: on any error no file is left at `out`.
PrepareResult prepare_corpus(const PrepareOptions& opt);

// Fails (one line naming `out`) when a corpus could not be written at `out`, or would replace
// one of `inputs`; called before anything is read.
void check_corpus_output(const std::string& out, const std::vector<std::string>& inputs);

// Writes a corpus atomically: the split sizes are fixed up front, the ids arrive in pieces
// (train first, then val), so that imports of large token files need bounded memory. Without
// commit() no file is left at `out`.
class CorpusWriter {
 public:
  CorpusWriter(const std::string& out, const Vocabulary& vocab, int64_t train_tokens, int64_t val_tokens);
  ~CorpusWriter();
  CorpusWriter(const CorpusWriter&) = delete;
  CorpusWriter& operator=(const CorpusWriter&) = delete;
  void set_attr(const std::string& name, double value);
  void set_attr(const std::string& name, const std::string& value);
  // The next n ids of the train split, then of the val split. Ids must be < the vocabulary size
  // (callers check them, naming their input).
  void append(const int32_t* ids, size_t n);
  void append(const uint16_t* ids, size_t n);
  // Fails unless every token was appended; then closes, fsyncs and renames into place.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qisa
