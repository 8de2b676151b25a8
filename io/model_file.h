// Model files (`final.h5`, format_version 1): what a trained model is, independent of how
// it was trained.
//   /params/<canonical name>   float32 in SPEC §3 shapes, fletcher32
//   /pauli/<name>              fixed-length ASCII strings [H, D] (qisa, qisa_a)
//   /tokenizer/...             the corpus's tokenizer, when known (io/vocabulary_file.h: char
//                              /tokenizer/vocab strings; gpt2 /tokenizer/encoder and /merges)
//   root attributes            kind = "qisa-model", format_version, code_version,
//                              config (the resolved YAML), step
// Written atomically (temp file, fsync, rename, fsync dir).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/vocabulary.h"

namespace qisa {

inline constexpr int64_t kModelFileFormatVersion = 1;

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct NamedStrings {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<std::string> values;  // row-major
};

struct ModelFile {
  std::string config_yaml;
  int64_t step = 0;
  std::vector<NamedTensor> params;
  std::vector<NamedStrings> pauli;
  Vocabulary vocab;                 // empty: not stored
};

void write_model_file(const std::string& path, const ModelFile& m);
// Reads and checks (kind, format version, checksums by reading every dataset).
ModelFile read_model_file(const std::string& path);

}  // namespace qisa
