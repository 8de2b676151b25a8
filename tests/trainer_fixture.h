// Shared pieces of the Trainer tests: a suite fixture with one small corpus prepared from
// test::make_training_text (shared by the suite's tests), and QISA_FAULT set for a scope.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "io/corpus.h"
#include "test_util.h"

namespace qisa::test {

// TEST_F suites derive from this: corpus() is an 800-line corpus made once per suite.
class CorpusSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    write_file(*dir_ / "text.txt", make_training_text(800));
    PrepareOptions p;
    p.inputs = {*dir_ / "text.txt"};
    p.out = *dir_ / "corpus.h5";
    prepare_corpus(p);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string corpus() { return *dir_ / "corpus.h5"; }
  static const TempDir& dir() { return *dir_; }

 private:
  static inline TempDir* dir_ = nullptr;
};

// QISA_FAULT for the lifetime of the object.
class ScopedFault {
 public:
  explicit ScopedFault(const std::string& spec) { setenv("QISA_FAULT", spec.c_str(), 1); }
  ~ScopedFault() { unsetenv("QISA_FAULT"); }
  ScopedFault(const ScopedFault&) = delete;
  ScopedFault& operator=(const ScopedFault&) = delete;
};

}  // namespace qisa::test
