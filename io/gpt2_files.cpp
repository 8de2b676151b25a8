#include "io/gpt2_files.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/bpe.h"
#include "kernels/error.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

constexpr size_t kGpt2Merges = 50000;

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string fetch_hint(const std::string& dir) {
  return "fetch them with: bash cluster/fetch_gpt2_bpe.sh " + dir + " (or pass --gpt2-dir DIR)";
}

std::string read_whole(const std::string& path, const std::string& dir) {
  std::error_code ec;
  QISA_CHECK(fs::is_regular_file(path, ec), "GPT-2 vocabulary file " + q(path) + " does not exist", fetch_hint(dir));
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  QISA_CHECK(in.good() || in.eof(), "cannot read " + q(path), "check the file's permissions");
  return ss.str();
}

std::vector<std::string> parse_encoder(const std::string& path, const std::string& dir) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_whole(path, dir));
  } catch (const nlohmann::json::exception& e) {
    throw Error(q(path) + " is not valid JSON: " + e.what(), fetch_hint(dir));
  }
  QISA_CHECK(j.is_object(), q(path) + " is not a JSON object (token string -> id)", fetch_hint(dir));
  std::vector<std::string> tokens(j.size());
  std::vector<bool> seen(j.size(), false);
  for (const auto& [token, id] : j.items()) {
    QISA_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < static_cast<int64_t>(j.size()),
               q(path) + ": token " + q(token) + " has id " + id.dump() + ", not in [0, " + std::to_string(j.size()) + ")",
               fetch_hint(dir));
    const auto i = id.get<size_t>();
    QISA_CHECK(!seen[i], q(path) + ": id " + std::to_string(i) + " is given to two tokens", fetch_hint(dir));
    seen[i] = true;
    tokens[i] = token;
  }
  return tokens;
}

// As the reference reads it: bpe_data.split("\n")[1:-1] (the version line and the empty
// string after the last newline dropped).
std::vector<std::string> parse_merges(const std::string& path, const std::string& dir) {
  const std::string text = read_whole(path, dir);
  QISA_CHECK(text.rfind("#version", 0) == 0, q(path) + " does not start with a '#version' line", fetch_hint(dir));
  QISA_CHECK(!text.empty() && text.back() == '\n', q(path) + " does not end with a newline (truncated?)", fetch_hint(dir));
  std::vector<std::string> lines;
  size_t start = text.find('\n') + 1;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    lines.push_back(text.substr(start, nl - start));
  return lines;
}

}  // namespace

std::string gpt2_files_dir(const std::string& dir) {
  if (!dir.empty()) return dir;
  if (const char* e = std::getenv("QISA_GPT2_DIR"); e && *e) return e;
  if (const char* e = std::getenv("QISA_DATA"); e && *e) return (fs::path(e) / "gpt2").string();
  // data/gpt2 of the working directory, else of the repository whose build/qisa runs.
  std::error_code ec;
  if (fs::exists("data/gpt2", ec)) return "data/gpt2";
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path repo_data = exe.parent_path().parent_path() / "data" / "gpt2";
    if (fs::exists(repo_data / "encoder.json", ec)) return repo_data.string();
  }
  return "data/gpt2";
}

Vocabulary load_gpt2_vocabulary(const std::string& dir_option) {
  const std::string dir = gpt2_files_dir(dir_option);
  const std::string enc_path = (fs::path(dir) / "encoder.json").string();
  const std::string bpe_path = (fs::path(dir) / "vocab.bpe").string();
  Vocabulary v;
  v.tokenizer = "gpt2";
  v.tokens = parse_encoder(enc_path, dir);
  v.merges = parse_merges(bpe_path, dir);
  QISA_CHECK(v.size() == Gpt2Bpe::kGpt2VocabSize && v.tokens[Gpt2Bpe::kEndOfText] == "<|endoftext|>",
             q(enc_path) + " has " + std::to_string(v.size()) + " tokens (token 50256: " +
                 q(v.size() > Gpt2Bpe::kEndOfText ? v.tokens[Gpt2Bpe::kEndOfText] : "") +
                 "); GPT-2's has 50257 with <|endoftext|> = 50256",
             fetch_hint(dir));
  QISA_CHECK(v.merges.size() == kGpt2Merges,
             q(bpe_path) + " has " + std::to_string(v.merges.size()) + " merges; GPT-2's has 50000", fetch_hint(dir));
  Gpt2Bpe check(v.tokens, v.merges, q(dir));  // parts and results are tokens, merges in training order
  return v;
}

}  // namespace qisa
