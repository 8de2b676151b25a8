// AtomicFile (io/atomic_file.h): a temporary left by a killed writer (kill -9 leaves
// "<final>.tmp-<pid>" behind) is removed by the next write of the same file, and said; a live
// writer's temporary and files that only look alike are left alone.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "io/atomic_file.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;

pid_t gone_pid() {  // a pid whose process has exited and been reaped
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  return child;
}

TEST(AtomicFile, RemovesTheTemporaryOfAWriterThatIsGoneAndNothingElse) {
  test::TempDir dir;
  const std::string final_path = dir / "corpus.h5";
  const std::string stale = final_path + ".tmp-" + std::to_string(gone_pid());
  const std::string live = final_path + ".tmp-1";            // pid 1 is alive
  const std::string other = dir / "other.h5.tmp-999999";     // another file's temporary
  const std::string lookalike = final_path + ".tmp-notes";   // not a pid
  for (const auto& f : {stale, live, other, lookalike}) test::write_file(f, "x");
  testing::internal::CaptureStderr();
  write_text_atomic(final_path, "done");
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_NE(said.find("qisa: removed '" + stale + "', a temporary file left by a writer that is gone"),
            std::string::npos)
      << said;
  for (const auto& f : {live, other, lookalike}) EXPECT_TRUE(fs::exists(f)) << f;
  EXPECT_EQ(test::read_file(final_path), "done");
}

}  // namespace
}  // namespace qisa
