// Assertions on qisa::Error messages, shared by the suites.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "kernels/error.h"

namespace qisa::test {

// The message (what + hint) of the qisa::Error that fn throws; a test failure if it throws none.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  ADD_FAILURE() << "no qisa::Error thrown";
  return "";
}

// Expects the message to mention every string in `needles`.
inline void expect_mentions(const std::string& msg, std::initializer_list<std::string> needles) {
  for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
}

inline void expect_mentions(const std::string& msg, const std::vector<std::string>& needles) {
  for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
}

}  // namespace qisa::test
