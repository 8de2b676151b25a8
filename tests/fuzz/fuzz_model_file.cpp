// Fuzz target: the model-file loader (io/model_file.h) and the config it carries (what
// `qisa eval` and `qisa sample` parse before building the model). The input is a list of
// edits to a valid final.h5 of a tiny QISA model (h5_spec.h); the edited file is written to
// a scratch file and loaded. qisa::Error is the expected rejection; what is accepted must be
// consistent (every tensor and string list as long as its shape says).
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "h5_spec.h"
#include "io/config.h"
#include "io/model_file.h"
#include "kernels/error.h"

namespace {

qisa::fuzz::FileSpec baseline() {
  using qisa::fuzz::DataSpec;
  using qisa::fuzz::Type;
  qisa::fuzz::FileSpec s;
  s.attrs["kind"] = {Type::vstr, 0, 0, "qisa-model"};
  s.attrs["format_version"] = {Type::i64, 1, 0, ""};
  s.attrs["code_version"] = {Type::vstr, 0, 0, "0.1.0"};
  s.attrs["config"] = {Type::vstr, 0, 0,
                       "model:\n  block_size: 4\n  n_embd: 4\n  n_layer: 1\n  attention: qisa\ndata:\n  corpus: c.h5\n"};
  s.attrs["step"] = {Type::i64, 1, 0, ""};
  auto tensor = [](std::vector<hsize_t> dims) {
    DataSpec d;
    d.type = Type::f32;
    d.dims = std::move(dims);
    d.chunk = 65536;
    d.fletcher32 = true;
    d.values = {0.5, -0.25, 1.0};
    return d;
  };
  s.datasets["/params/tok_emb.weight"] = tensor({6, 4});
  s.datasets["/params/pos_emb.weight"] = tensor({4, 4});
  s.datasets["/params/blocks.0.ln_1.bias"] = tensor({4});
  DataSpec pauli;
  pauli.type = Type::fstr;
  pauli.dims = {1, 4};
  pauli.strings = {"IIXZ", "YIII", "IZZI", "XXYY"};
  s.datasets["/pauli/blocks.0.attn.v.pauli"] = pauli;
  DataSpec vocab;
  vocab.type = Type::vstr;
  vocab.dims = {6};
  vocab.strings = {"\n", " ", "a", "b", "c", "\xC3\xA9"};
  s.datasets["/tokenizer/vocab"] = vocab;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static qisa::fuzz::ScratchFile file(".model.h5");
  qisa::fuzz::Input in(data, size);
  qisa::fuzz::FileSpec spec = baseline();
  spec.edit(in, {"kind", "format_version", "code_version", "config", "step"},
            {"/params/tok_emb.weight", "/params/blocks.0.ln_1.bias", "/pauli/blocks.0.attn.v.pauli",
             "/tokenizer/vocab", "/params", "/pauli", "/tokenizer"});
  const std::string& path = file.path();
  spec.write(path);
  qisa::ModelFile m;
  try {
    m = qisa::read_model_file(path);
  } catch (const qisa::Error&) {
    return 0;
  }
  for (const auto& t : m.params) {
    QISA_FUZZ_REQUIRE(static_cast<int64_t>(t.data.size()) == qisa::fuzz::shape_elements(t.shape), "tensor size != product of its shape");
  }
  for (const auto& s : m.pauli) {
    QISA_FUZZ_REQUIRE(static_cast<int64_t>(s.values.size()) == qisa::fuzz::shape_elements(s.shape), "string count != product of the shape");
  }
  try {
    qisa::parse_config(m.config_yaml, path + ":config");
  } catch (const qisa::Error&) {
  }
  return 0;
}
