// The one exception type of qisa: what failed (naming the file/key/value or call), a hint,
// and where in our code it was raised. `main` prints it as one line and exits non-zero.
#pragma once
#include <source_location>
#include <stdexcept>
#include <string>

namespace qisa {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, std::string hint = {},
                 std::source_location loc = std::source_location::current());
  const std::string& hint() const { return hint_; }
  const std::string& where() const { return where_; }  // "io/config.cpp:42"
  // "what; hint: ..." (no location): the line a user sees.
  std::string message() const;

 private:
  std::string hint_;
  std::string where_;
};

// QISA_CHECK(cond, what, hint): throw qisa::Error when cond is false. `what` and `hint`
// are only evaluated on failure, so they may build strings freely.
#define QISA_CHECK(cond, what, hint)                \
  do {                                              \
    if (!(cond)) throw ::qisa::Error((what), (hint)); \
  } while (0)

}  // namespace qisa
