// Fuzz target: the HDF5 corpus readers (io/corpus.h, io/corpus_reader.h). The input is a list
// of edits to a valid corpus (h5_spec.h: attributes, datasets' types, shapes, layout and
// content); the edited corpus is written to a scratch file and read back: metadata,
// vocabulary, both splits whole, and window and range reads through CorpusReader.
// qisa::Error is the expected rejection; what is accepted must keep the documented promises
// (every token id < vocab_size, split sizes as read_corpus_info says).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "h5_spec.h"
#include "io/corpus.h"
#include "io/corpus_reader.h"
#include "kernels/error.h"

namespace {

void check_ids(const std::vector<int32_t>& ids, int64_t vocab) {
  for (int32_t id : ids) QISA_FUZZ_REQUIRE(id >= 0 && id < vocab, "a token id outside [0, vocab_size) was accepted");
}

void read_reader(const std::string& path, const char* split, const qisa::CorpusInfo& info) {
  qisa::CorpusReader r(path, split, 1.0);
  QISA_FUZZ_REQUIRE(r.size() == (std::string(split) == "train" ? info.train_tokens : info.val_tokens),
                    "CorpusReader size != read_corpus_info");
  const int64_t n = std::min<int64_t>(r.size(), 4096);
  std::vector<int32_t> out(static_cast<size_t>(n));
  r.read_range(0, n, out.data());
  check_ids(out, info.vocab_size);
  if (r.size() >= 4) {
    const int len = 4;
    const int64_t last = r.size() - len;
    const int64_t offsets[] = {0, last, last / 2, last / 3, 0};
    std::vector<int32_t> win(5 * len);
    r.read_windows(offsets, 5, len, win.data());
    check_ids(win, info.vocab_size);
  }
}

// What `qisa prepare` writes for "ab\nab cé\n" repeated (io/corpus.h): 6 characters, uint16 ids.
qisa::fuzz::FileSpec baseline() {
  using qisa::fuzz::Type;
  qisa::fuzz::FileSpec s;
  s.attrs["format_version"] = {Type::i64, 1, 0, ""};
  s.attrs["vocab_size"] = {Type::i64, 6, 0, ""};
  s.attrs["tokenizer"] = {Type::vstr, 0, 0, "char"};
  s.attrs["val_fraction"] = {Type::f64, 0, 0.1, ""};
  auto tokens = [](hsize_t n) {
    qisa::fuzz::DataSpec d;
    d.type = Type::u16;
    d.dims = {n};
    d.chunk = 65536;
    d.fletcher32 = true;
    d.values = {2, 3, 0, 2, 3, 1, 4, 5, 0};
    return d;
  };
  s.datasets["/train/tokens"] = tokens(54);
  s.datasets["/val/tokens"] = tokens(6);
  qisa::fuzz::DataSpec vocab;
  vocab.type = Type::vstr;
  vocab.dims = {6};
  vocab.strings = {"\n", " ", "a", "b", "c", "\xC3\xA9"};
  s.datasets["/tokenizer/vocab"] = vocab;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static qisa::fuzz::ScratchFile file(".corpus.h5");
  qisa::fuzz::Input in(data, size);
  qisa::fuzz::FileSpec spec = baseline();
  spec.edit(in, {"format_version", "vocab_size", "tokenizer", "val_fraction"},
            {"/train/tokens", "/val/tokens", "/tokenizer/vocab", "/train", "/tokenizer"});
  const std::string& path = file.path();
  spec.write(path);
  qisa::CorpusInfo info;
  try {
    info = qisa::read_corpus_info(path);
  } catch (const qisa::Error&) {
    return 0;
  }
  QISA_FUZZ_REQUIRE(info.vocab_size >= 1 && info.train_tokens >= 0 && info.val_tokens >= 0,
                    "read_corpus_info accepted impossible metadata");
  for (const char* split : {"train", "val"}) {
    try {
      const std::vector<int32_t> ids = qisa::read_split(path, split);
      QISA_FUZZ_REQUIRE(static_cast<int64_t>(ids.size()) ==
                            (std::string(split) == "train" ? info.train_tokens : info.val_tokens),
                        "read_split size != read_corpus_info");
      check_ids(ids, info.vocab_size);
    } catch (const qisa::Error&) {
    }
    try {
      read_reader(path, split, info);
    } catch (const qisa::Error&) {
    }
  }
  try {
    const std::vector<std::string> vocab = qisa::read_vocab(path);
    QISA_FUZZ_REQUIRE(static_cast<int64_t>(vocab.size()) == info.vocab_size, "vocab size != vocab_size attribute");
  } catch (const qisa::Error&) {
  }
  return 0;
}
