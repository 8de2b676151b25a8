#include "launcher/run_setup.h"

#include "io/corpus.h"

namespace qisa::cli {

Config load_checked_config(const std::string& path, std::vector<std::string> overrides, int threads) {
  if (threads > 0) overrides.push_back("train.threads=" + std::to_string(threads));
  Config cfg = load_config(path, overrides);
  const CorpusInfo info = read_corpus_info(cfg.data.corpus);
  check_against_corpus(cfg, info);
  return cfg;
}

}  // namespace qisa::cli
