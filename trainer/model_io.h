// Between a GPT in backend memory and a ModelFile (io/model_file.h): checks every name and
// shape against the model's parameter table.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/model_file.h"
#include "trainer/model.h"

namespace qisa {

ModelFile snapshot_model(const GPT& model, const std::string& config_yaml, int64_t step, const Vocabulary& vocab);
// Loads parameters and Pauli strings; `source` names the file in errors.
void load_model_state(GPT& model, const ModelFile& file, const std::string& source);

struct LoadedModel {
  Config config;                      // from the file's config attribute
  Vocabulary vocab;                   // from the file (may be empty)
  int64_t step = 0;
  std::unique_ptr<GPT> model;
};
// Read a model file (final.h5) or the model part of a checkpoint and build the model on
// `backend`, sized for `max_batch` sequences per forward.
LoadedModel load_model(const std::string& path, Backend& backend, int64_t max_batch);

// The vocabulary of `corpus` after checking that it is the one `m` (read from `model_path`) was
// trained on: its vocab_size padded by model.vocab_multiple is the model's, and its vocabulary is
// the one stored in the model file (where the file has one). Throws naming both files.
Vocabulary check_corpus_fits_model(const std::string& corpus, const LoadedModel& m, const std::string& model_path);

}  // namespace qisa
