// The one exception type of qisa: what failed (naming the file/key/value or call), a hint,
// and where in our code it was raised. `main` prints it as one line and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>
#include <version>

#if defined(__cpp_lib_source_location)
#include <source_location>
#endif

namespace qisa {

#if defined(__cpp_lib_source_location)
using SourceLocation = std::source_location;
#else
// libstdc++'s std::source_location needs __builtin_source_location, which clang has only from
// version 15 on; the fuzz build uses Debian 12's clang 14. These builtins give the same.
struct SourceLocation {
  static constexpr SourceLocation current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
    SourceLocation l;
    l.file_ = file;
    l.line_ = line;
    return l;
  }
  constexpr const char* file_name() const { return file_; }
  constexpr unsigned line() const { return line_; }

 private:
  const char* file_ = "";
  unsigned line_ = 0;
};
#endif

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, std::string hint = {},
                 SourceLocation loc = SourceLocation::current());
  const std::string& hint() const { return hint_; }
  const std::string& where() const { return where_; }  // "io/config.cpp:42"
  // "what; hint: ..." (no location): the line a user sees.
  std::string message() const;

 private:
  std::string hint_;
  std::string where_;
};

// An Error that every rank of a job raises together, after agreeing on it through a
// collective (a non-finite step, a checkpoint that could not be written): no peer is left
// waiting, so the job ends without MPI_Abort; rank 0 prints it and every rank exits 1.
class CollectiveError : public Error {
 public:
  explicit CollectiveError(const std::string& what, std::string hint = {},
                           SourceLocation loc = SourceLocation::current())
      : Error(what, std::move(hint), loc) {}
};

// QISA_CHECK(cond, what, hint): throw qisa::Error when cond is false. `what` and `hint`
// are only evaluated on failure, so they may build strings freely.
#define QISA_CHECK(cond, what, hint)                \
  do {                                              \
    if (!(cond)) throw ::qisa::Error((what), (hint)); \
  } while (0)

}  // namespace qisa
