// Shared by the commands that train: config + overrides -> a config checked against its corpus.
#pragma once
#include <string>
#include <vector>

#include "io/config.h"

namespace qisa::cli {

// Loads CONFIG with the overrides, applies --threads (when > 0) as train.threads, reads the
// corpus metadata and checks the config against it.
Config load_checked_config(const std::string& path, std::vector<std::string> overrides, int threads);

}  // namespace qisa::cli
