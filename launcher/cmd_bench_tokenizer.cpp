// qisa bench tokenizer FILE: encode/decode throughput of a tokenizer on one core.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/bpe.h"
#include "io/gpt2_files.h"
#include "io/tokenizer.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"

namespace qisa::cli {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QISA_CHECK(in, "cannot read '" + path + "'", "check the path");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  QISA_CHECK(!s.empty(), "'" + path + "' is empty", "pass a UTF-8 text file");
  return s;
}

}  // namespace

void add_bench_tokenizer(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "tokenizer",
      "Encode FILE (repeated to at least --min-mb MB) with a fresh tokenizer on one core: MB/s (10^6 bytes) of encode, "
      "of the first copy alone (cold word cache) and of decode, and whether decode(encode(text)) == text");
  struct Args {
    std::string file, tokenizer = "gpt2", gpt2_dir;
    double min_mb = 5;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("file", a->file, "UTF-8 text, e.g. data/tinyshakespeare.txt")->required()->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", a->tokenizer, "gpt2 or char")->check(CLI::IsMember({"gpt2", "char"}))->capture_default_str();
  cmd->add_option("--gpt2-dir", a->gpt2_dir, "folder with encoder.json and vocab.bpe (see qisa prepare --help)");
  cmd->add_option("--min-mb", a->min_mb, "repeat the file until the text has at least this many MB")
      ->check(real_in(0, 65536, true))
      ->capture_default_str();
  cmd->callback([a] {
    const std::string once = read_text(a->file);
    std::string text;
    int64_t copies = 0;
    for (; static_cast<double>(text.size()) < a->min_mb * 1e6 || copies == 0; ++copies) text += once;
    const double mb = static_cast<double>(text.size()) / 1e6;
    nlohmann::json j{{"bench", "tokenizer"}, {"tokenizer", a->tokenizer}, {"file", a->file},
                     {"bytes", text.size()}, {"copies", copies}};
    std::vector<int32_t> ids;
    std::string back;
    double encode_s = 0, decode_s = 0;
    if (a->tokenizer == "gpt2") {
      auto t0 = std::chrono::steady_clock::now();
      const Vocabulary v = load_gpt2_vocabulary(a->gpt2_dir);
      Gpt2Bpe bpe(v.tokens, v.merges, "the GPT-2 vocabulary");
      j["load_ms"] = 1e3 * seconds_since(t0);
      {
        Gpt2Bpe cold(v.tokens, v.merges, "the GPT-2 vocabulary");
        t0 = std::chrono::steady_clock::now();
        cold.encode(once);
        j["cold_mb_per_s"] = static_cast<double>(once.size()) / 1e6 / seconds_since(t0);
      }
      t0 = std::chrono::steady_clock::now();
      ids = bpe.encode(text);
      encode_s = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      back = bpe.decode(ids.data(), ids.size());
      decode_s = seconds_since(t0);
      j["cache_entries"] = bpe.cache_entries();
    } else {
      const CharTokenizer tok = CharTokenizer::from_text(once);
      auto t0 = std::chrono::steady_clock::now();
      ids = tok.encode(text);
      encode_s = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      back = tok.decode(ids);
      decode_s = seconds_since(t0);
    }
    j["tokens"] = ids.size();
    j["bytes_per_token"] = static_cast<double>(text.size()) / static_cast<double>(ids.size());
    j["encode_mb_per_s"] = mb / encode_s;
    j["decode_mb_per_s"] = mb / decode_s;
    j["roundtrip"] = back == text;
    std::printf("%s\n", j.dump().c_str());
  });
}

}  // namespace qisa::cli
