// Every file qisa writes through HDF5 on a real full disk (issue 17 A.1). A full disk while
// writing final.h5 used to end in a segfault: HDF5 1.10.8 cannot recover from a metadata flush
// that fails (its metadata cache stays "slist already enabled?"), every later close of the file
// fails, and its exit handler crashes on the file. io/hdf5.cpp now reserves the file's blocks
// before each flush and discards a writer that failed.
//
// For each amount of free space, from none to enough, a child process writes the file: it must
// succeed or fail with one qisa::Error naming the cause, and then exit normally (HDF5's exit
// handler runs there). Afterwards no temporary is left, the space is given back, and the file at
// the final name is either the earlier one, byte for byte, or the new one, complete.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "io/corpus.h"
#include "io/model_file.h"
#include "kernels/error.h"
#include "test_util.h"

namespace qisa {
namespace {

namespace fs = std::filesystem;

enum Outcome { kWritten = 0, kNoSpace = 1, kOtherError = 2, kOtherException = 3 };

// Runs `write` in a child that then exits normally; returns its Outcome, or -signal.
int outcome_in_child(const std::function<void()>& write) {
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child < 0) return kOtherException;
  if (child == 0) {
    int code = kWritten;
    try {
      write();
    } catch (const Error& e) {
      code = std::string(e.what()).find("No space left on device") != std::string::npos ? kNoSpace : kOtherError;
      if (code == kOtherError) std::fprintf(stderr, "child: %s\n", e.what());
    } catch (...) {
      code = kOtherException;
    }
    std::exit(code);  // exit handlers, HDF5's included, run here
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> t;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) t.push_back(e.path().string());
  return t;
}

// The sweep: `write` writes a new version of `final_path` (in a tmpfs of 512 KiB), `check`
// tells whether the file at `final_path` is the new version, complete. An earlier version is
// there first.
void sweep_free_space(const std::string& dir, const std::string& final_path, const std::function<void()>& write_old,
                      const std::function<void()>& write, const std::function<bool()>& is_new) {
  write_old();
  const std::string old_bytes = test::read_file(final_path);
  const std::string filler = test::fill_disk(dir);
  const uintmax_t full = fs::file_size(filler);
  int written = 0, failed = 0;
  for (uintmax_t room = 0; room <= 256 * 1024 && written < 2; room += 4096) {
    SCOPED_TRACE("free space " + std::to_string(room) + " bytes");
    fs::resize_file(filler, full - room);
    const uint64_t free_before = test::free_bytes(dir);
    const int r = outcome_in_child(write);
    ASSERT_TRUE(r == kWritten || r == kNoSpace) << (r < 0 ? "the writer died of signal " + std::to_string(-r)
                                                           : "the writer ended with outcome " + std::to_string(r));
    EXPECT_EQ(temporaries(dir), std::vector<std::string>{});
    if (r == kNoSpace) {
      ++failed;
      EXPECT_EQ(test::free_bytes(dir), free_before);  // no descriptor holds a removed temporary
      EXPECT_EQ(test::read_file(final_path), old_bytes);
    } else {
      ++written;
      EXPECT_TRUE(is_new());
      fs::remove(final_path);
      write_old();  // the next try replaces the earlier version again
    }
  }
  EXPECT_GT(failed, 3);   // the sweep went through failures ...
  EXPECT_GT(written, 0);  // ... up to a size that fits
}

ModelFile model_of(int64_t step, size_t floats) {
  ModelFile m;
  m.config_yaml = "model: {}\n";
  m.step = step;
  NamedTensor t;
  t.name = "w";
  t.shape = {static_cast<int64_t>(floats)};
  t.data.assign(floats, static_cast<float>(step));
  m.params.push_back(t);
  return m;
}

TEST(FullDisk, AModelFileWriteFailsCleanlyAtEveryFreeSpace) {
  test::TempDir dir;
  const std::string why = test::mount_private_tmpfs(dir.path(), "512k");
  if (!why.empty()) GTEST_SKIP() << "no tmpfs of our own: " << why;
  const std::string path = dir / "final.h5";
  sweep_free_space(
      dir.path(), path, [&] { write_model_file(path, model_of(1, 100)); },
      [&] { write_model_file(path, model_of(2, 10000)); },  // 40 KB of parameters
      [&] {
        const ModelFile m = read_model_file(path);
        return m.step == 2 && m.params.size() == 1 && m.params[0].data == model_of(2, 10000).params[0].data;
      });
}

TEST(FullDisk, ACorpusWriteFailsCleanlyAtEveryFreeSpace) {
  test::TempDir in_dir, dir;
  const std::string why = test::mount_private_tmpfs(dir.path(), "512k");
  if (!why.empty()) GTEST_SKIP() << "no tmpfs of our own: " << why;
  std::string small, big;
  for (int i = 0; i < 40; ++i) small += "to be or not to be\n";
  for (int i = 0; i < 2000; ++i) big += "that is the question " + std::to_string(i % 7) + "\n";  // 46 KB
  test::write_file(in_dir / "small.txt", small);
  test::write_file(in_dir / "big.txt", big);
  const std::string path = dir / "corpus.h5";
  auto prepare = [&](const std::string& input) {
    PrepareOptions o;
    o.inputs = {input};
    o.out = path;
    prepare_corpus(o);
  };
  sweep_free_space(
      dir.path(), path, [&] { prepare(in_dir / "small.txt"); }, [&] { prepare(in_dir / "big.txt"); },
      [&] {
        const CorpusInfo info = read_corpus_info(path);
        return info.train_tokens + info.val_tokens == static_cast<int64_t>(big.size());
      });
}

}  // namespace
}  // namespace qisa
