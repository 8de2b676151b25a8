// Fuzz target: the YAML config loader (io/config.h). The input is YAML text, optionally
// followed by NUL-separated command-line overrides ("model.n_layer=4"). qisa::Error is the
// expected rejection of bad input; anything else escaping is a bug. A config that parses
// must survive its own round trip: to_yaml() parsed back gives the same Config (config.h).
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "io/config.h"
#include "kernels/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string text = input.substr(0, nul);
  std::vector<std::string> overrides;
  for (size_t pos = nul; pos != std::string::npos && pos < input.size();) {
    const size_t next = input.find('\0', pos + 1);
    overrides.push_back(input.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1));
    pos = next;
  }
  qisa::Config c;
  try {
    c = qisa::parse_config(text, "fuzz.yaml", overrides);
  } catch (const qisa::Error&) {
    return 0;  // rejected with a message: fine
  }
  const std::string yaml = c.to_yaml();
  qisa::Config back;
  try {
    back = qisa::parse_config(yaml, c.source);
  } catch (const qisa::Error& e) {
    std::fprintf(stderr, "to_yaml() output does not parse: %s\n--- yaml:\n%s\n", e.what(), yaml.c_str());
    QISA_FUZZ_REQUIRE(false, "to_yaml() of a valid config must parse");
  }
  QISA_FUZZ_REQUIRE(back == c, "parse(to_yaml(c)) must equal c");
  QISA_FUZZ_REQUIRE(back.to_yaml() == yaml, "to_yaml must be stable");
  return 0;
}
