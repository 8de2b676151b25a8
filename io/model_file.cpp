#include "io/model_file.h"

#include <algorithm>

#include "io/atomic_file.h"
#include "io/file_kind.h"
#include "io/hdf5.h"
#include "io/vocabulary_file.h"
#include "kernels/error.h"

namespace qisa {

namespace {
constexpr const char* kKind = "qisa-model";

std::vector<hsize_t> to_dims(const std::vector<int64_t>& shape) {
  return std::vector<hsize_t>(shape.begin(), shape.end());
}
}  // namespace

void write_model_file(const std::string& path, const ModelFile& m) {
  AtomicFile out(path);
  {
    h5::File f(out.tmp_path(), h5::File::Mode::create);
    f.set_attr("/", "kind", std::string(kKind));
    f.set_attr("/", "format_version", kModelFileFormatVersion);
    f.set_attr("/", "code_version", std::string(QISA_VERSION));
    f.set_attr("/", "config", m.config_yaml);
    f.set_attr("/", "step", m.step);
    f.create_group("/params");
    for (const auto& p : m.params) {
      h5::WriteOptions opt;
      opt.fletcher32 = true;
      f.write<float>("/params/" + p.name, p.data.data(), to_dims(p.shape), opt);
    }
    for (const auto& s : m.pauli) {
      size_t len = 1;
      for (const auto& v : s.values) len = std::max(len, v.size());
      f.write_strings("/pauli/" + s.name, s.values, to_dims(s.shape), len);
    }
    if (m.vocab.tokenizer == "gpt2")
      write_bpe_tables(f, m.vocab);
    else if (!m.vocab.empty())
      f.write_strings("/tokenizer/vocab", m.vocab.tokens, {static_cast<hsize_t>(m.vocab.size())});
    f.close();
  }
  out.commit();
}

ModelFile read_model_file(const std::string& path) {
  h5::File f(path, h5::File::Mode::read);
  const char* hint = "pass a model file written by `qisa train` (RUN_DIR/final.h5)";
  expect_file_kind(f, FileKind::model, hint);
  const int64_t version = f.attr_int("/", "format_version");
  if (version != kModelFileFormatVersion)
    throw Error("'" + path + "' has model format_version " + std::to_string(version) + ", this qisa reads " +
                    std::to_string(kModelFileFormatVersion),
                "use the qisa version that wrote it, or re-train");
  ModelFile m;
  m.config_yaml = f.attr_string("/", "config");
  m.step = f.attr_int("/", "step");
  for (const auto& name : f.list("/params")) {
    NamedTensor t;
    t.name = name;
    std::vector<hsize_t> dims;
    t.data = f.read<float>("/params/" + name, &dims);
    t.shape.assign(dims.begin(), dims.end());
    m.params.push_back(std::move(t));
  }
  if (f.exists("/pauli")) {
    for (const auto& name : f.list("/pauli")) {
      NamedStrings s;
      s.name = name;
      std::vector<hsize_t> dims;
      s.values = f.read_strings("/pauli/" + name, &dims);
      s.shape.assign(dims.begin(), dims.end());
      m.pauli.push_back(std::move(s));
    }
  }
  m.vocab = read_stored_vocabulary(f);
  return m;
}

}  // namespace qisa
