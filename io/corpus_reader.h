// Reads token windows of one split of a corpus (io/corpus.h) without loading the split:
// hyperslab reads through a tuned chunk cache. Each rank reads only the windows it trains on.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace qisa {

class CorpusReader {
 public:
  // split: "train" or "val". chunk_cache_mb: HDF5 raw-data chunk cache for this dataset.
  CorpusReader(const std::string& path, const std::string& split, double chunk_cache_mb);
  ~CorpusReader();
  CorpusReader(const CorpusReader&) = delete;
  CorpusReader& operator=(const CorpusReader&) = delete;

  const std::string& path() const;
  const std::string& split() const;
  int64_t size() const;        // tokens in the split
  int64_t vocab_size() const;
  // out[i*len + k] = tokens[offsets[i] + k] for i < count, k < len. Windows may overlap and
  // come in any order; the spans they cover are merged and read in one H5Dread. Every id is
  // checked against vocab_size.
  void read_windows(const int64_t* offsets, size_t count, int len, int32_t* out);
  // out[k] = tokens[start + k], k < count.
  void read_range(int64_t start, int64_t count, int32_t* out);
  // Tokens requested from HDF5 so far (what tests use to show a rank never reads the whole split).
  int64_t tokens_read() const;
  // H5Dread calls and disjoint spans read so far: read_windows makes one call per invocation, and
  // a sequential rank slice (adjacent windows) is one span.
  int64_t read_calls() const;
  int64_t spans_read() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qisa
