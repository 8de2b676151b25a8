// Checkpoints (io/checkpoint.h): round trips in pieces, clear errors, detection of damage
// (fletcher32 on data, HDF5 metadata checksums), crash safety of the write, the store.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <thread>

#include "io/bpe.h"
#include "io/checkpoint.h"
#include "io/hdf5.h"
#include "io/tokenizer.h"
#include "kernels/error.h"
#include "expect_error.h"
#include "test_util.h"

namespace qisa {
namespace {

using test::error_of;
using test::expect_mentions;

namespace fs = std::filesystem;

// ------------------------------------------------------------------ helpers

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// Deterministic tensor values: element i of tensor `salt`.
float value(int64_t salt, int64_t i) { return static_cast<float>(salt * 1000003 + i) * 0.25f - 7.0f; }

struct Content {
  TrainState state;
  std::string config;
  std::vector<std::string> vocab;
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<std::string>>> strings;
  std::map<std::string, std::vector<TensorSpec>> specs;  // group -> tensors
};

// A small model-like checkpoint: `tensors` tensors of odd shapes in each group, Pauli strings,
// a multi-byte vocabulary. Written in whole-tensor pieces (piece tests are separate).
Content sample_content(int64_t step, int tensors = 6) {
  Content c;
  c.state = {step, 3, 640 + step, 640 * 65 + step, 0xFEDCBA9876543210ull, 4, 5};
  c.state.spikes = 7;
  c.state.skipped_spikes = 6;
  c.state.spike_loss_ema = 0.1 + 1e-17 * static_cast<double>(step);  // every bit of a double
  c.state.spike_grad_norm_ema = 1.0 / 3.0;
  c.state.spike_steps_seen = 21;
  c.state.spikes_in_a_row = 2;
  c.config = "model:\n  n_embd: 16   # a comment\n  attention: qisa\ntrain:\n  lr: 0.003\n  name: \"é, ü, 字\"\n";
  c.vocab = {"\n", " ", "a", "é", "字", "😀"};
  c.strings["blocks.0.attn.v.pauli"] = {{2, 3}, {"IXZ", "YII", "ZZI", "IIX", "XYZ", "IYI"}};
  c.strings["blocks.1.attn.v.pauli"] = {{1, 2}, {"X", "IZ"}};
  const std::vector<std::vector<int64_t>> shapes = {{7, 5}, {3, 4, 5}, {11}, {2, 3, 2, 2}, {1}, {13, 1}};
  for (const char* g : {"params", "optim/m", "optim/v"})
    for (int t = 0; t < tensors; ++t)
      c.specs[g].push_back(TensorSpec{"blocks." + std::to_string(t) + ".w", shapes[static_cast<size_t>(t) % shapes.size()]});
  return c;
}

int64_t salt_of(const std::string& group, size_t t) { return static_cast<int64_t>(group.size() * 100 + t); }

void write_content(const std::string& path, const Content& c) {
  CheckpointWriter w(path);
  w.set_config(c.config);
  w.set_state(c.state);
  w.set_vocab(c.vocab);
  for (const auto& [name, s] : c.strings) w.write_strings(name, s.first, s.second);
  for (const auto& [g, specs] : c.specs)
    for (size_t t = 0; t < specs.size(); ++t) {
      w.begin_tensor(g, specs[t]);
      std::vector<float> v(static_cast<size_t>(specs[t].numel()));
      for (size_t i = 0; i < v.size(); ++i) v[i] = value(salt_of(g, t), static_cast<int64_t>(i));
      w.write_piece(0, v.data(), static_cast<int64_t>(v.size()));
    }
  w.commit();
}

void write_small(const std::string& path, int64_t step) { write_content(path, sample_content(step)); }

// Everything a resume reads, in one comparable string (floats by bit pattern).
std::string dump(const CheckpointReader& r) {
  std::ostringstream o;
  const TrainState s = r.state();
  o << s.step << ' ' << s.epoch << ' ' << s.samples_seen << ' ' << s.tokens_seen << ' ' << s.seed << ' ' << s.world_size
    << ' ' << s.skipped_nonfinite << ' ' << s.spikes << ' ' << s.skipped_spikes << ' ' << s.spike_steps_seen << ' '
    << s.spikes_in_a_row << ' ' << std::hexfloat << s.spike_loss_ema << ' ' << s.spike_grad_norm_ema << std::defaultfloat
    << '\n'
    << r.config_yaml() << '\n'
    << r.code_version() << '\n';
  for (const auto& v : r.vocab()) o << v << '\x1f';
  for (const auto& n : r.string_names()) {
    std::vector<int64_t> shape;
    o << '\n' << n;
    for (const auto& v : r.read_strings(n, &shape)) o << ' ' << v;
    for (auto d : shape) o << ' ' << d;
  }
  for (const char* g : {"params", "optim/m", "optim/v"})
    for (const auto& t : r.tensors(g)) {
      o << '\n' << g << '/' << t.name;
      for (auto d : t.shape) o << ' ' << d;
      std::vector<float> v(static_cast<size_t>(t.numel()));
      r.read_piece(g, t.name, 0, v.data(), t.numel());
      o.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
    }
  return o.str();
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f) << path;
  f.seekg(static_cast<std::streamoff>(offset));
  char b = 0;
  f.read(&b, 1);
  ASSERT_TRUE(f) << "offset " << offset << " is past the end of " << path;
  b = static_cast<char>(b ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&b, 1);
}

struct ChunkLocation {
  uint64_t addr = 0, size = 0;
};

// File offset and stored size of chunk `index` of a dataset.
ChunkLocation chunk_location(const std::string& path, const std::string& dataset, hsize_t index = 0) {
  h5::File f(path, h5::File::Mode::read);
  h5::Handle d(H5Dopen2(f.id(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  EXPECT_TRUE(d) << dataset;
  h5::Handle space(H5Dget_space(d.get()), H5Sclose);
  std::vector<hsize_t> offset(8);
  unsigned mask = 0;
  haddr_t addr = 0;
  hsize_t size = 0;
  EXPECT_GE(H5Dget_chunk_info(d.get(), space.get(), index, offset.data(), &mask, &addr, &size), 0) << dataset;
  return {static_cast<uint64_t>(addr), static_cast<uint64_t>(size)};
}

// ------------------------------------------------------------------ round trips

TEST(Checkpoint, PiecesOfOddSizesInAnyOrderRoundTrip) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("QISA_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  const std::string path = dir / "ckpt_00000007.h5";
  // Shapes across chunk boundaries: many chunks in 1-D, rows split by chunks (257 per row,
  // 255 rows per chunk), a last dim longer than a chunk, small and single-element tensors.
  const std::vector<TensorSpec> specs = {{"big1d", {200003}}, {"rows", {300, 257}}, {"wide", {2, 3, 70001}},
                                         {"cube", {3, 5, 7}},  {"one", {1}},          {"tall", {131073, 1}}};
  std::map<std::string, std::vector<float>> want;
  {
    CheckpointWriter w(path);
    w.set_config("model: {}\n");
    w.set_state(TrainState{7, 0, 7, 7, 1, 1});
    for (const char* g : {"params", "optim/m", "optim/v"}) {
      std::vector<size_t> order(specs.size());
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t t : order) {
        const TensorSpec& s = specs[t];
        auto& v = want[std::string(g) + "/" + s.name];
        v = test::random_vector<float>(rng, static_cast<size_t>(s.numel()), -3, 3);
        // Random cut points, pieces written in shuffled order.
        std::vector<int64_t> cuts = {0, s.numel()};
        std::uniform_int_distribution<int64_t> at(0, s.numel());
        for (int k = 0; k < 9; ++k) cuts.push_back(at(rng));
        std::sort(cuts.begin(), cuts.end());
        cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
        std::vector<size_t> pieces(cuts.size() - 1);
        std::iota(pieces.begin(), pieces.end(), 0);
        std::shuffle(pieces.begin(), pieces.end(), rng);
        w.begin_tensor(g, s);
        for (size_t p : pieces) w.write_piece(cuts[p], v.data() + cuts[p], cuts[p + 1] - cuts[p]);
      }
    }
    w.commit();
  }
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"ckpt_00000007.h5"}));  // no temporary left
  CheckpointReader r(path);
  EXPECT_NO_THROW(r.verify());
  for (const char* g : {"params", "optim/m", "optim/v"}) {
    const auto got = r.tensors(g);
    ASSERT_EQ(got.size(), specs.size()) << g;
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& t : got) shapes[t.name] = t.shape;
    for (const auto& s : specs) {
      EXPECT_EQ(shapes[s.name], s.shape) << g << "/" << s.name;
      const auto& v = want[std::string(g) + "/" + s.name];
      std::vector<float> all(v.size());
      r.read_piece(g, s.name, 0, all.data(), s.numel());
      EXPECT_EQ(all, v) << g << "/" << s.name;
      // Odd pieces read back at random places.
      std::uniform_int_distribution<int64_t> at(0, s.numel() - 1);
      for (int k = 0; k < 5; ++k) {
        const int64_t a = at(rng), n = std::uniform_int_distribution<int64_t>(0, s.numel() - a)(rng);
        std::vector<float> piece(static_cast<size_t>(n));
        r.read_piece(g, s.name, a, piece.data(), n);
        EXPECT_TRUE(std::equal(piece.begin(), piece.end(), v.begin() + a)) << g << "/" << s.name << " [" << a << ", +" << n << ")";
      }
    }
  }
  expect_mentions(error_of([&] {
                    float x[2];
                    r.read_piece("params", "one", 0, x, 2);
                  }),
                  {path, "/params/one", "outside"});
}

TEST(Checkpoint, StateConfigVocabAndStringsRoundTrip) {
  test::TempDir dir;
  const Content c = sample_content(42);
  write_content(dir / "c.h5", c);
  CheckpointReader r(dir / "c.h5");
  const TrainState s = r.state();
  EXPECT_EQ(s.step, 42);
  EXPECT_EQ(s.epoch, 3);
  EXPECT_EQ(s.samples_seen, 682);
  EXPECT_EQ(s.tokens_seen, 640 * 65 + 42);
  EXPECT_EQ(s.seed, 0xFEDCBA9876543210ull);  // all 64 bits
  EXPECT_EQ(s.world_size, 4);
  EXPECT_EQ(s.skipped_nonfinite, 5);
  EXPECT_EQ(s.spikes, 7);
  EXPECT_EQ(s.skipped_spikes, 6);
  EXPECT_EQ(s.spike_loss_ema, c.state.spike_loss_ema);  // bit for bit
  EXPECT_EQ(s.spike_grad_norm_ema, 1.0 / 3.0);
  EXPECT_EQ(s.spike_steps_seen, 21);
  EXPECT_EQ(s.spikes_in_a_row, 2);
  EXPECT_EQ(r.config_yaml(), c.config);
  EXPECT_EQ(r.code_version(), QISA_VERSION);
  EXPECT_EQ(r.vocab(), c.vocab);
  EXPECT_EQ(r.string_names(), (std::vector<std::string>{"blocks.0.attn.v.pauli", "blocks.1.attn.v.pauli"}));
  for (const auto& [name, want] : c.strings) {
    std::vector<int64_t> shape;
    EXPECT_EQ(r.read_strings(name, &shape), want.second) << name;
    EXPECT_EQ(shape, want.first) << name;
  }
  const auto specs = r.tensors("params");
  ASSERT_EQ(specs.size(), 6u);
  EXPECT_EQ(specs[1].name, "blocks.1.w");  // name order
  EXPECT_EQ(specs[1].shape, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_TRUE(r.tensors("optim/m").size() == 6 && r.tensors("optim/v").size() == 6);
  EXPECT_NO_THROW(r.verify());

  // Without a vocabulary or strings: both read back empty.
  {
    CheckpointWriter w(dir / "bare.h5");
    w.set_config("");
    w.set_state(TrainState{});
    w.set_vocab({});
    w.begin_tensor("params", TensorSpec{"x", {2}});
    const float x[2] = {1, 2};
    w.write_piece(0, x, 2);
    w.commit();
  }
  {  // written before skipped_nonfinite and spike detection existed: they read as 0 (a fresh detector)
    hid_t f = H5Fopen((dir / "bare.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    for (const char* a : {"skipped_nonfinite", "spikes", "skipped_spikes", "spike_steps_seen", "spikes_in_a_row",
                          "spike_loss_ema", "spike_grad_norm_ema"})
      EXPECT_GE(H5Adelete_by_name(f, "/state", a, H5P_DEFAULT), 0) << a;
    H5Fclose(f);
  }
  CheckpointReader b(dir / "bare.h5");
  const TrainState old = b.state();
  EXPECT_EQ(old.skipped_nonfinite, 0);
  EXPECT_EQ(old.spikes, 0);
  EXPECT_EQ(old.skipped_spikes, 0);
  EXPECT_EQ(old.spike_steps_seen, 0);
  EXPECT_EQ(old.spikes_in_a_row, 0);
  EXPECT_EQ(old.spike_loss_ema, 0.0);
  EXPECT_EQ(old.spike_grad_norm_ema, 0.0);
  EXPECT_TRUE(b.vocab().empty());
  EXPECT_TRUE(b.string_names().empty());
  EXPECT_TRUE(b.tensors("optim/m").empty());
  EXPECT_EQ(b.config_yaml(), "");
  EXPECT_NO_THROW(b.verify());
}

// The /state attributes are written and read through one table: a state whose every field holds
// a value of its own (no two alike, none the default) comes back equal, so a field missing from
// the table (written but not read, or neither) fails here.
TEST(Checkpoint, EveryTrainStateFieldRoundTrips) {
  test::TempDir dir;
  TrainState s;
  s.step = 101;
  s.epoch = 102;
  s.samples_seen = 103;
  s.tokens_seen = 104;
  s.seed = 0xFEDCBA9876543210ull;
  s.world_size = 106;
  s.skipped_nonfinite = 107;
  s.spikes = 108;
  s.skipped_spikes = 109;
  s.spike_steps_seen = 110;
  s.spikes_in_a_row = 111;
  s.spike_loss_ema = 0.1 + 1e-16;
  s.spike_grad_norm_ema = 1.0 / 3.0;
  Content c = sample_content(101, 1);
  c.state = s;
  write_content(dir / "s.h5", c);
  EXPECT_EQ(CheckpointReader(dir / "s.h5").state(), s);
  EXPECT_EQ(inspect_checkpoint(dir / "s.h5").state, s);
}

// Every dataset is chunked with fletcher32 (strings too), and the file uses the HDF5 >= 1.10
// format whose metadata blocks carry checksums (superblock version 3).
TEST(Checkpoint, EveryDatasetIsChecksummedAndMetadataFormatIsV110) {
  test::TempDir dir;
  write_small(dir / "c.h5", 1);
  h5::File f(dir / "c.h5", h5::File::Mode::read);
  H5F_info2_t info;
  ASSERT_GE(H5Fget_info2(f.id(), &info), 0);
  EXPECT_GE(info.super.version, 3u);
  std::vector<std::string> datasets = {"/tokenizer/vocab"};
  for (const char* g : {"/params", "/optim/m", "/optim/v", "/pauli"})
    for (const auto& n : f.list(g)) datasets.push_back(std::string(g) + "/" + n);
  EXPECT_EQ(datasets.size(), 1u + 18u + 2u);
  for (const auto& ds : datasets) {
    h5::Handle d(H5Dopen2(f.id(), ds.c_str(), H5P_DEFAULT), H5Dclose);
    h5::Handle dcpl(H5Dget_create_plist(d.get()), H5Pclose);
    EXPECT_EQ(H5Pget_layout(dcpl.get()), H5D_CHUNKED) << ds;
    bool fletcher = false;
    for (int i = 0; i < H5Pget_nfilters(dcpl.get()); ++i) {
      unsigned flags = 0, config = 0;
      size_t n = 0;
      fletcher |= H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &n, nullptr, 0, nullptr, &config) ==
                  H5Z_FILTER_FLETCHER32;
    }
    EXPECT_TRUE(fletcher) << ds;
    h5::Handle type(H5Dget_type(d.get()), H5Tclose);
    EXPECT_LE(H5Tis_variable_str(type.get()), 0) << ds << ": variable-length strings are not checksummed";
  }
}

TEST(Checkpoint, SameContentGivesTheSameBytes) {
  test::TempDir dir;
  write_small(dir / "a.h5", 5);
  write_small(dir / "b.h5", 5);
  EXPECT_EQ(test::read_file(dir / "a.h5"), test::read_file(dir / "b.h5")) << "timestamps or other noise in the file";
}

// ------------------------------------------------------------------ clear errors

TEST(Checkpoint, OpenErrorsNameTheFileTheValueAndAHint) {
  test::TempDir dir;
  const std::string missing = dir / "none.h5";
  expect_mentions(error_of([&] { CheckpointReader r(missing); }), {missing, "does not exist"});

  test::write_file(dir / "text.h5", "model: not a checkpoint\n");
  expect_mentions(error_of([&] { CheckpointReader r(dir / "text.h5"); }), {dir / "text.h5", "not an HDF5 file", "hint"});

  {
    h5::File f(dir / "nokind.h5", h5::File::Mode::create);
    f.create_group("/params");
    f.close();
  }
  expect_mentions(error_of([&] { CheckpointReader r(dir / "nokind.h5"); }),
                  {dir / "nokind.h5", "not a qisa checkpoint", "'kind'", "hint"});

  {
    h5::File f(dir / "model.h5", h5::File::Mode::create);
    f.set_attr("/", "kind", std::string("qisa-model"));
    f.close();
  }
  expect_mentions(error_of([&] { CheckpointReader r(dir / "model.h5"); }),
                  {dir / "model.h5", "\"qisa-model\"", "final model file"});

  write_small(dir / "v2.h5", 1);
  {
    h5::File f(dir / "v2.h5", h5::File::Mode::read_write);
    f.set_attr("/", "format_version", int64_t{2});
    f.close();
  }
  expect_mentions(error_of([&] { CheckpointReader r(dir / "v2.h5"); }),
                  {dir / "v2.h5", "format_version 2", "reads format_version 1", "hint"});
}

TEST(Checkpoint, WriterRejectsMisuseAndLeavesNothing) {
  test::TempDir dir;
  const std::string path = dir / "ckpt_00000001.h5";
  const float x[4] = {1, 2, 3, 4};
  {  // a tensor not fully written
    CheckpointWriter w(path);
    w.set_config("");
    w.set_state(TrainState{});
    w.begin_tensor("params", TensorSpec{"a", {2, 2}});
    w.write_piece(2, x, 2);
    expect_mentions(error_of([&] { w.commit(); }), {path, "/params/a", "2 of its 4 elements"});
    expect_mentions(error_of([&] { w.commit(); }), {"earlier write", "failed"});  // poisoned
  }
  EXPECT_TRUE(entries(dir.path()).empty());
  {  // overlapping and out-of-range pieces, a bad group
    CheckpointWriter w(path);
    w.begin_tensor("params", TensorSpec{"a", {4}});
    w.write_piece(0, x, 3);
    expect_mentions(error_of([&] { w.write_piece(2, x, 2); }), {"/params/a", "[2, 4)", "overlaps"});
  }
  {
    CheckpointWriter w(path);
    w.begin_tensor("params", TensorSpec{"a", {4}});
    expect_mentions(error_of([&] { w.write_piece(3, x, 2); }), {"/params/a", "outside"});
  }
  {
    CheckpointWriter w(path);
    expect_mentions(error_of([&] { w.begin_tensor("grads", TensorSpec{"a", {4}}); }), {"'grads'"});
  }
  {
    CheckpointWriter w(path);
    w.set_config("");
    expect_mentions(error_of([&] { w.commit(); }), {path, "set_state"});
  }
  EXPECT_TRUE(entries(dir.path()).empty());
}

// ------------------------------------------------------------------ damage is detected

TEST(Checkpoint, FlippedByteInAFloatChunkFailsVerifyAndTheStoreFallsBack) {
  test::TempDir dir;
  CheckpointStore store(dir.path(), 5);
  write_small(store.path_for(1), 1);
  write_small(store.path_for(2), 2);
  const std::string bad = store.path_for(2);
  const ChunkLocation c = chunk_location(bad, "/optim/m/blocks.1.w");
  ASSERT_GT(c.size, 8u);
  flip_byte(bad, c.addr + c.size / 2);

  CheckpointReader r(bad);  // the metadata is intact: it opens
  expect_mentions(error_of([&] { r.verify(); }), {bad, "/optim/m/blocks.1.w", "checksum"});
  std::vector<float> v(60);
  EXPECT_THROW(r.read_piece("optim/m", "blocks.1.w", 0, v.data(), 60), Error);
  EXPECT_NO_THROW(r.read_piece("optim/m", "blocks.0.w", 0, v.data(), 35));  // the others read fine

  std::vector<std::string> warnings;
  const auto chosen = store.newest_valid([&](const std::string& w) { warnings.push_back(w); });
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(*chosen, store.path_for(1));
  ASSERT_EQ(warnings.size(), 1u);
  expect_mentions(warnings[0], {bad, "/optim/m/blocks.1.w"});
  EXPECT_EQ(warnings[0].find('\n'), std::string::npos);
}

TEST(Checkpoint, FlippedByteInAStringDatasetFailsVerify) {
  test::TempDir dir;
  for (const std::string ds : {"/pauli/blocks.0.attn.v.pauli", "/tokenizer/vocab"}) {
    const std::string path = dir / "c.h5";
    write_small(path, 1);
    const ChunkLocation c = chunk_location(path, ds);
    flip_byte(path, c.addr + 1);
    CheckpointReader r(path);
    expect_mentions(error_of([&] { r.verify(); }), {path, ds});
  }
}

TEST(Checkpoint, TruncatedFileIsRejectedAndTheStoreFallsBack) {
  test::TempDir dir;
  CheckpointStore store(dir.path(), 5);
  write_small(store.path_for(1), 1);
  write_small(store.path_for(2), 2);
  const auto size = fs::file_size(store.path_for(2));
  for (uintmax_t keep : {size - 1, size / 2, uintmax_t{100}, uintmax_t{0}}) {
    SCOPED_TRACE("truncated to " + std::to_string(keep) + " of " + std::to_string(size) + " bytes");
    write_small(store.path_for(2), 2);
    fs::resize_file(store.path_for(2), keep);
    expect_mentions(error_of([&] {
                      CheckpointReader r(store.path_for(2));
                      r.verify();
                    }),
                    {store.path_for(2)});
    std::vector<std::string> warnings;
    EXPECT_EQ(store.newest_valid([&](const std::string& w) { warnings.push_back(w); }), store.path_for(1));
    EXPECT_EQ(warnings.size(), 1u);
  }
}

// Flip one byte at a time, every `stride` bytes of a whole small checkpoint (metadata and
// data interleave in it), and open + verify + read everything in a child process. What is
// guaranteed: no flip changes what a resume reads without an error, none crashes or hangs
// HDF5, and damage to the superblock is found at open. Which flips hit unused bytes depends on
// HDF5's allocator, so their number is reported, not asserted.
// QISA_FLIP_STRIDE=1 sweeps every byte (slow; the numbers in the implementation notes).
TEST(Checkpoint, MetadataFlipsAreDetectedOrHarmless) {
  test::TempDir dir;
  const std::string good = dir / "good.h5", bad = dir / "bad.h5";
  write_content(good, sample_content(9, 24));  // 72 tensors: groups with many links
  const std::string ref = dump(CheckpointReader(good));
  const std::string bytes = test::read_file(good);
  uint64_t stride = 97;
  if (const char* e = std::getenv("QISA_FLIP_STRIDE"); e && *e) stride = std::max<uint64_t>(1, std::strtoull(e, nullptr, 10));
  constexpr uint64_t kSuperblockV3 = 48;  // signature .. checksum

  enum Outcome { kOpen = 1, kVerify = 2, kSame = 3, kChanged = 4, kOther = 5 };
  std::map<int, int> count;
  std::vector<std::string> bad_cases;
  for (uint64_t at = 0; at < bytes.size(); at += stride) {
    std::string b = bytes;
    b[at] = static_cast<char>(b[at] ^ 0x5A);
    test::write_file(bad, b);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(20);  // a hang is a failure too
      int rc = kOther;
      try {
        std::optional<CheckpointReader> r;
        try {
          r.emplace(bad);
        } catch (const Error&) {
          _exit(kOpen);
        }
        try {
          r->verify();
        } catch (const Error&) {
          _exit(kVerify);
        }
        rc = dump(*r) == ref ? kSame : kChanged;
      } catch (...) {
        rc = kOther;
      }
      _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    const int outcome = WIFEXITED(status) ? WEXITSTATUS(status) : 100 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ++count[outcome];
    if (outcome != kOpen && outcome != kVerify && outcome != kSame)
      bad_cases.push_back("byte " + std::to_string(at) + ": outcome " + std::to_string(outcome));
    if (at < kSuperblockV3) {
      EXPECT_EQ(outcome, kOpen) << "superblock byte " << at;
    }
  }
  int flips = 0, crashed = 0;
  for (const auto& [outcome, n] : count) {
    flips += n;
    if (outcome >= 100) crashed += n;
  }
  std::printf("[ flips    ] file of %zu bytes, every %llu-th byte: %d flips: %d detected at open, %d at verify, %d "
              "harmless (unused bytes), %d changed content silently, %d foreign exception, %d crashed or hung\n",
              bytes.size(), static_cast<unsigned long long>(stride), flips, count[kOpen], count[kVerify], count[kSame],
              count[kChanged], count[kOther], crashed);
  EXPECT_TRUE(bad_cases.empty()) << bad_cases.size() << " flips changed content silently, threw a foreign "
                                 << "exception, crashed or hung; first: " << bad_cases.front();
  EXPECT_GT(count[kOpen] + count[kVerify], 0);
}

// ------------------------------------------------------------------ crash safety

TEST(Checkpoint, WriterKilledMidWriteLeavesThePreviousCheckpoint) {
  test::TempDir dir;
  CheckpointStore store(dir.path(), 3);
  write_small(store.path_for(1), 1);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    setenv("QISA_FAULT", "checkpoint.piece:sleep=50", 1);
    try {
      CheckpointWriter w(store.path_for(2));
      w.set_config("x");
      w.set_state(TrainState{2, 0, 2, 2, 1, 1});
      std::vector<float> v(1000, 1.0f);
      w.begin_tensor("params", TensorSpec{"w", {1000}});
      for (int64_t a = 0; a < 1000; a += 10) w.write_piece(a, v.data() + a, 10);  // 100 pieces, 5 s
      w.commit();
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  const std::string tmp = store.path_for(2) + ".tmp-" + std::to_string(child);
  for (int i = 0; i < 500 && !fs::exists(tmp); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(fs::exists(tmp)) << "the writer's temporary never appeared";
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // a few pieces in
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer ended before it was killed";

  EXPECT_TRUE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(store.path_for(2)));
  EXPECT_EQ(store.list(), std::vector<std::string>{store.path_for(1)});
  EXPECT_NO_THROW(CheckpointReader(store.path_for(1)).verify());
  std::vector<std::string> warnings;
  EXPECT_EQ(store.newest_valid([&](const std::string& w) { warnings.push_back(w); }), store.path_for(1));
  EXPECT_TRUE(warnings.empty());
  // Opened by mistake, the temporary is not taken for a checkpoint.
  EXPECT_THROW(CheckpointReader{tmp}, Error);

  // prune removes the dead writer's temporary but not a live writer's (ours).
  const std::string live = store.path_for(3) + ".tmp-" + std::to_string(getpid());
  test::write_file(live, "in progress");
  store.prune();
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(store.path_for(1)));
}

TEST(Checkpoint, FailedCommitLeavesNoFinalFileAndNoTemporary) {
  test::TempDir dir;
  CheckpointStore store(dir.path(), 3);
  auto write = [&](int64_t step) { write_small(store.path_for(step), step); };
  // The final name is taken by a directory: the rename fails.
  fs::create_directories(store.path_for(5) + "/inside");
  expect_mentions(error_of([&] { write(5); }), {store.path_for(5), "rename"});
  EXPECT_TRUE(fs::is_directory(store.path_for(5) + "/inside"));
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"ckpt_00000005.h5"}));
  EXPECT_TRUE(store.list().empty());
  // Faults injected mid-write and just before the rename; a full disk at a given step.
  for (const char* fault : {"checkpoint.piece:throw", "checkpoint.commit:throw", "checkpoint.piece@step=6:enospc",
                            "checkpoint.commit@step=6:enospc"}) {
    SCOPED_TRACE(fault);
    setenv("QISA_FAULT", fault, 1);
    const std::string msg = error_of([&] { write(6); });
    expect_mentions(msg, {"fault injected"});
    if (std::string(fault).find("enospc") != std::string::npos) expect_mentions(msg, {"No space left on device"});
    unsetenv("QISA_FAULT");
    EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"ckpt_00000005.h5"}));
  }
  setenv("QISA_FAULT", "checkpoint.piece@step=7:enospc", 1);  // another step: not this checkpoint
  write(6);
  unsetenv("QISA_FAULT");
  EXPECT_EQ(store.list(), std::vector<std::string>{store.path_for(6)});
}

// A real full disk (a small tmpfs): the write fails naming the cause, nothing of it stays on
// the disk or open in the process (HDF5 1.10 would otherwise keep the failed file in its table
// and crash at exit), and the previous checkpoint is intact.
TEST(Checkpoint, AFullDiskFailsTheWriteNamingTheCauseAndReleasesItsSpace) {
  test::TempDir dir;
  const std::string why = test::mount_private_tmpfs(dir.path(), "512k");
  if (!why.empty()) GTEST_SKIP() << "no tmpfs of our own: " << why;
  CheckpointStore store(dir.path(), 3);
  write_small(store.path_for(1), 1);
  const Content big = sample_content(2, 40);  // ~40 KiB of tensors
  const std::string filler = test::fill_disk(dir.path());
  fs::resize_file(filler, fs::file_size(filler) - 16 * 1024);  // room for a part of it only
  const uint64_t free_before = test::free_bytes(dir.path());
  // First in a child that then exits normally: HDF5's exit handler must find nothing of the
  // failed file left open.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      write_content(store.path_for(2), big);
    } catch (const Error&) {
      std::exit(0);
    }
    std::exit(2);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child " << (WIFSIGNALED(status) ? "died of signal " + std::to_string(WTERMSIG(status)) : "exited "
                          + std::to_string(WEXITSTATUS(status)));
  expect_mentions(error_of([&] { write_content(store.path_for(2), big); }),
                  {store.path_for(2) + ".tmp-", "No space left on device"});
  EXPECT_EQ(entries(dir.path()), (std::set<std::string>{"ckpt_00000001.h5", "filler"}));
  EXPECT_EQ(test::free_bytes(dir.path()), free_before);  // no descriptor holds the removed temporary
  EXPECT_EQ(store.newest_valid(nullptr), store.path_for(1));
  fs::remove(filler);
  write_content(store.path_for(2), big);  // with room again, the same writer code succeeds
  EXPECT_EQ(store.newest_valid(nullptr), store.path_for(2));
}

// ------------------------------------------------------------------ the store

TEST(Checkpoint, StoreListsNewestFirstAndPruneKeepsTheNewest) {
  test::TempDir dir;
  CheckpointStore store(dir / "ckpts", 2);
  EXPECT_TRUE(store.list().empty());  // no directory yet
  EXPECT_EQ(store.path_for(12), dir / "ckpts/ckpt_00000012.h5");
  for (int64_t step : {3, 12, 7, 100000000}) write_small(store.path_for(step), step);
  // Not checkpoints: other names, a directory, temporaries.
  test::write_file(dir / "ckpts/notes.txt", "x");
  test::write_file(dir / "ckpts/ckpt_12.h5", "x");
  test::write_file(dir / "ckpts/ckpt_0000001x.h5", "x");
  fs::create_directories(dir / "ckpts/ckpt_00000099.h5");
  const pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, nullptr, 0);
  const std::string dead_tmp = dir / ("ckpts/ckpt_00000013.h5.tmp-" + std::to_string(gone));
  const std::string live_tmp = dir / ("ckpts/ckpt_00000014.h5.tmp-" + std::to_string(getpid()));
  test::write_file(dead_tmp, "x");
  test::write_file(live_tmp, "x");

  EXPECT_EQ(store.list(), (std::vector<std::string>{store.path_for(100000000), store.path_for(12), store.path_for(7),
                                                    store.path_for(3)}));
  EXPECT_EQ(store.newest_valid(nullptr), store.path_for(100000000));
  store.prune();
  EXPECT_EQ(store.list(), (std::vector<std::string>{store.path_for(100000000), store.path_for(12)}));
  EXPECT_EQ(entries(dir / "ckpts"), (std::set<std::string>{"ckpt_100000000.h5", "ckpt_00000012.h5", "notes.txt",
                                                            "ckpt_12.h5", "ckpt_0000001x.h5", "ckpt_00000099.h5",
                                                            fs::path(live_tmp).filename().string()}));
  store.prune();  // idempotent
  EXPECT_EQ(store.list().size(), 2u);
  EXPECT_THROW(CheckpointStore(dir.path(), 0), Error);
  EXPECT_EQ(CheckpointStore(dir / "missing", 1).newest_valid(nullptr), std::nullopt);
}

// A tensor whose shape the file does not hold (its chunks never written) is reported before
// anyone allocates numel() floats for it, and verify() does not read terabytes of fill values.
TEST(Checkpoint, TensorShapesTheFileDoesNotHoldAreErrors) {
  test::TempDir dir;
  const std::string path = dir / "huge.h5";
  {
    h5::File f(path, h5::File::Mode::create);
    f.set_attr_fixed("/", "kind", "qisa-checkpoint");
    f.set_attr("/", "format_version", int64_t{1});
    f.set_attr_fixed("/", "config", "");
    f.create_group("/state");
    for (const char* a : {"step", "epoch", "samples_seen", "tokens_seen", "world_size"}) f.set_attr("/state", a, int64_t{1});
    f.set_attr_u64("/state", "seed", 1);
    h5::WriteOptions chunked;
    chunked.chunk_shape = {1024, 1024};
    f.create_dataset("/params/w", H5T_IEEE_F32LE, {hsize_t{1} << 20, hsize_t{1} << 20}, chunked).close();
    f.close();
  }
  CheckpointReader r(path);
  expect_mentions(error_of([&] { r.tensors("params"); }), {path + ":/params/w", "claims 1099511627776 elements"});
  expect_mentions(error_of([&] { r.verify(); }), {"failed verification at '/params/w'", "claims"});
}

// ------------------------------------------------------------------ bounded memory

// Built with AddressSanitizer (cluster/sanitize.sh)? Its quarantine keeps freed memory
// resident, so a bound on the peak RSS does not hold there.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

long vm_hwm_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

// A 64 MiB tensor written and verified in 4 MiB pieces: the peak RSS grows by far less than
// the tensor (a writer or verify() that buffered it would add 64 MiB). Measured in a child
// whose peak is reset first (/proc/self/clear_refs), so earlier tests do not mask it.
TEST(Checkpoint, SavingAndVerifyingAreBoundedInMemory) {
  if (kAddressSanitizer) GTEST_SKIP() << "AddressSanitizer's quarantine makes the peak RSS meaningless";
  test::TempDir dir;
  const std::string path = dir / "big.h5", report = dir / "rss.txt";
  constexpr int64_t kN = int64_t{16} << 20, kPiece = int64_t{1} << 20;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int rc = 0;
    try {
      std::vector<float> buf(static_cast<size_t>(kPiece));
      { std::ofstream("/proc/self/clear_refs") << "5"; }
      const long base = vm_hwm_kib();
      {
        CheckpointWriter w(path);
        w.set_config("");
        w.set_state(TrainState{});
        w.begin_tensor("params", TensorSpec{"big", {kN / 1024, 1024}});
        for (int64_t a = 0; a < kN; a += kPiece) {
          for (int64_t i = 0; i < kPiece; ++i) buf[static_cast<size_t>(i)] = value(1, a + i);
          w.write_piece(a, buf.data(), kPiece);
        }
        w.commit();
      }
      const long after_save = vm_hwm_kib();
      CheckpointReader r(path);
      r.verify();
      r.read_piece("params", "big", kN - 5, buf.data(), 5);
      if (buf[4] != value(1, kN - 1)) rc = 2;
      const long after_verify = vm_hwm_kib();
      std::ofstream(report) << base << ' ' << after_save << ' ' << after_verify;
    } catch (...) {
      rc = 3;
    }
    _exit(rc);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  std::istringstream in(test::read_file(report));
  long base = 0, save = 0, verify = 0;
  in >> base >> save >> verify;
  ASSERT_GT(base, 0) << "no VmHWM in /proc/self/status";
  std::printf("[ memory   ] 64 MiB tensor: peak RSS +%ld KiB after save, +%ld KiB after verify\n", save - base,
              verify - base);
  EXPECT_LT(save - base, 24 * 1024);
  EXPECT_LT(verify - base, 24 * 1024);
}

// ------------------------------------------------------------------ inspect

TEST(Checkpoint, InspectSummarisesAndJudgesTheChecksums) {
  test::TempDir dir;
  write_small(dir / "good.h5", 17);
  const CheckpointSummary s = inspect_checkpoint(dir / "good.h5");
  EXPECT_EQ(s.path, dir / "good.h5");
  EXPECT_EQ(s.state.step, 17);
  EXPECT_EQ(s.state.world_size, 4);
  EXPECT_EQ(s.tensors, 6);
  EXPECT_EQ(s.parameters, 35 + 60 + 11 + 24 + 1 + 13);
  EXPECT_EQ(s.optim_tensors, 12);
  EXPECT_EQ(s.string_datasets, 2);
  EXPECT_EQ(s.vocab_size, 6);
  EXPECT_EQ(s.code_version, QISA_VERSION);
  EXPECT_TRUE(s.checksums_ok) << s.checksum_error;

  write_small(dir / "bad.h5", 17);
  const ChunkLocation c = chunk_location(dir / "bad.h5", "/params/blocks.2.w");
  flip_byte(dir / "bad.h5", c.addr + 3);
  const CheckpointSummary b = inspect_checkpoint(dir / "bad.h5");
  EXPECT_FALSE(b.checksums_ok);
  expect_mentions(b.checksum_error, {"/params/blocks.2.w"});
  EXPECT_EQ(b.state.step, 17);  // the rest is still shown
}

TEST(Checkpoint, InspectCommandLine) {
  if (!fs::exists(test::qisa_bin())) GTEST_SKIP() << test::qisa_bin() << " is not built";
  test::TempDir dir;
  write_small(dir / "good.h5", 17);
  write_small(dir / "bad.h5", 17);
  const ChunkLocation c = chunk_location(dir / "bad.h5", "/params/blocks.2.w");
  flip_byte(dir / "bad.h5", c.addr + 3);
  const std::string q = test::qisa_bin() + " inspect ";

  auto r = test::run_command(q + dir / "good.h5");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  expect_mentions(r.output, {"step", "17", "tokens seen", "world size", "parameters", "144", "tensors", "checksums",
                             "ok", "n_embd: 16"});
  r = test::run_command(q + dir / "good.h5 --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  expect_mentions(r.output, {"\"step\":17", "\"parameters\":144", "\"tensors\":6", "\"world_size\":4",
                             "\"checksums\":\"ok\"", "\"config\":\"model:\\n"});

  for (const std::string flag : {"", " --json"}) {
    r = test::run_command(q + dir / "bad.h5" + flag);
    EXPECT_NE(r.exit_code, 0) << r.output;
    expect_mentions(r.output, {"/params/blocks.2.w", dir / "bad.h5"});
  }
  r = test::run_command(q + dir / "missing.h5");
  EXPECT_NE(r.exit_code, 0) << r.output;
  r = test::run_command(test::qisa_bin() + " inspect --help");
  EXPECT_EQ(r.exit_code, 0);
  expect_mentions(r.output, {"--json", "checkpoint"});
}

// A gpt2 vocabulary goes into checksummed byte tables (/tokenizer/encoder, /tokenizer/merges):
// it reads back equal, and a flipped byte in it fails verify like any other dataset.
TEST(Checkpoint, Gpt2VocabularyRoundTripsAndIsChecksummed) {
  test::TempDir dir;
  Vocabulary v;
  v.tokenizer = "gpt2";
  for (int b = 0; b < 256; ++b) v.tokens.push_back(encode_utf8(gpt2_byte_char(static_cast<uint8_t>(b))));
  v.tokens.push_back("Ġt");
  v.merges = {"Ġ t"};
  for (const std::string ds : {"/tokenizer/encoder", "/tokenizer/merges"}) {
    const std::string path = dir / "c.h5";
    {
      CheckpointWriter w(path);
      w.set_config("model: {}\n");
      w.set_state(TrainState{1, 0, 1, 16, 7, 1});
      w.set_vocabulary(v);
      w.begin_tensor("params", TensorSpec{"w", {2}});
      const float x[2] = {1.0f, 2.0f};
      w.write_piece(0, x, 2);
      w.commit();
    }
    {
      CheckpointReader r(path);
      EXPECT_EQ(r.vocabulary(), v);
      EXPECT_TRUE(r.vocab().empty());  // no char strings
      EXPECT_NO_THROW(r.verify());
    }
    EXPECT_EQ(inspect_checkpoint(path).vocab_size, 257);
    flip_byte(path, chunk_location(path, ds).addr + 1);
    CheckpointReader r(path);
    expect_mentions(error_of([&] { r.verify(); }), {path, "/tokenizer"});
  }
}

}  // namespace
}  // namespace qisa
