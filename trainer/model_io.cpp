#include "trainer/model_io.h"

#include <map>

#include "io/checkpoint.h"
#include "io/corpus.h"
#include "io/hdf5.h"
#include "kernels/error.h"

namespace qisa {

ModelFile snapshot_model(const GPT& model, const std::string& config_yaml, int64_t step, const Vocabulary& vocab) {
  ModelFile f;
  f.config_yaml = config_yaml;
  f.step = step;
  f.vocab = vocab;
  const std::vector<float> flat = model.params_host();
  for (const auto& e : model.table().entries())
    f.params.push_back(NamedTensor{e.name, e.shape,
                                   std::vector<float>(flat.begin() + e.offset, flat.begin() + e.offset + e.numel)});
  const ModelConfig& c = model.config();
  if (c.attention != AttentionKind::csa)
    for (int l = 0; l < c.n_layer; ++l)
      f.pauli.push_back(NamedStrings{GPT::pauli_name(l), {c.n_head, c.head_dim()}, model.pauli()[l]});
  return f;
}

void load_model_state(GPT& model, const ModelFile& file, const std::string& source) {
  std::map<std::string, const NamedTensor*> by_name;
  for (const auto& t : file.params) by_name[t.name] = &t;
  std::vector<float> flat(static_cast<size_t>(model.num_params()));
  for (const auto& e : model.table().entries()) {
    auto it = by_name.find(e.name);
    QISA_CHECK(it != by_name.end(), "'" + source + "' has no parameter '" + e.name + "'",
               "the file was written for a different model configuration");
    QISA_CHECK(it->second->shape == e.shape,
               "'" + source + "': parameter '" + e.name + "' has shape " + shape_string(it->second->shape) +
                   ", the model needs " + shape_string(e.shape),
               "the file was written for a different model configuration");
    std::copy(it->second->data.begin(), it->second->data.end(), flat.begin() + e.offset);
    by_name.erase(it);
  }
  QISA_CHECK(by_name.empty(), "'" + source + "' has parameter '" + (by_name.empty() ? "" : by_name.begin()->first) +
                                  "' that this model does not have",
             "the file was written for a different model configuration");
  model.set_params_host(flat);
  const ModelConfig& c = model.config();
  if (c.attention == AttentionKind::csa) return;
  for (int l = 0; l < c.n_layer; ++l) {
    const NamedStrings* found = nullptr;
    for (const auto& s : file.pauli)
      if (s.name == GPT::pauli_name(l)) found = &s;
    QISA_CHECK(found != nullptr, "'" + source + "' has no Pauli strings '" + GPT::pauli_name(l) + "'",
               "Pauli strings are part of a QISA model and are never redrawn; the file is incomplete");
    model.set_pauli(l, found->values);
  }
}

namespace {
// The model part of a resumable checkpoint, as a ModelFile (parameters, Pauli strings, vocab).
ModelFile model_from_checkpoint(const std::string& path) {
  CheckpointReader r(path);
  ModelFile f;
  f.config_yaml = r.config_yaml();
  f.step = r.state().step;
  f.vocab = r.vocabulary();
  for (const auto& t : r.tensors("params")) {
    NamedTensor nt{t.name, t.shape, std::vector<float>(static_cast<size_t>(t.numel()))};
    r.read_piece("params", t.name, 0, nt.data.data(), t.numel());
    f.params.push_back(std::move(nt));
  }
  for (const auto& name : r.string_names()) {
    NamedStrings s{name, {}, {}};
    s.values = r.read_strings(name, &s.shape);
    f.pauli.push_back(std::move(s));
  }
  return f;
}

bool is_checkpoint_file(const std::string& path) {
  h5::File f(path, h5::File::Mode::read);
  return f.has_attr("/", "kind") && f.attr_string("/", "kind") == "qisa-checkpoint";
}
}  // namespace

LoadedModel load_model(const std::string& path, Backend& backend, int64_t max_batch) {
  ModelFile file = is_checkpoint_file(path) ? model_from_checkpoint(path) : read_model_file(path);
  LoadedModel out;
  out.config = parse_config(file.config_yaml, path + ":config");
  // vocab_size is not a config key: it is the row count of the token embedding.
  for (const auto& t : file.params)
    if (t.name == "tok_emb.weight" && !t.shape.empty()) out.config.model.vocab_size = t.shape[0];
  QISA_CHECK(out.config.model.vocab_size > 0, "'" + path + "' has no tok_emb.weight", "the file is incomplete");
  out.vocab = file.vocab;
  out.step = file.step;
  out.model = std::make_unique<GPT>(out.config.model, backend, max_batch);
  load_model_state(*out.model, file, path);
  return out;
}

Vocabulary check_corpus_fits_model(const std::string& corpus, const LoadedModel& m, const std::string& model_path) {
  const char* hint = "use the corpus the model was trained on (its data.corpus: qisa inspect shows a checkpoint's config)";
  const CorpusInfo info = read_corpus_info(corpus);
  // The model's vocab_size is the corpus's rounded up to model.vocab_multiple.
  QISA_CHECK(padded_vocab_size(info.vocab_size, m.config.model.vocab_multiple) == m.config.model.vocab_size,
             "corpus '" + corpus + "' has vocab_size " + std::to_string(info.vocab_size) + ", model '" + model_path +
                 "' has " + std::to_string(m.config.model.vocab_size) + " (model.vocab_multiple " +
                 std::to_string(m.config.model.vocab_multiple) + ")",
             hint);
  Vocabulary vocab = read_vocabulary(corpus);
  QISA_CHECK(m.vocab.empty() || m.vocab == vocab,
             "corpus '" + corpus + "' has a different vocabulary from the one model '" + model_path + "' was trained on",
             hint);
  return vocab;
}

}  // namespace qisa
