#include "io/corpus_reader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "io/corpus.h"
#include "io/hdf5.h"
#include "kernels/error.h"

namespace qisa {

namespace {

using h5::Handle;

std::string q(const std::string& s) { return "'" + s + "'"; }
std::string rerun_hint(const std::string& path) {
  return "the file is corrupt or was edited: re-create it with: qisa prepare --input TEXT... --out " + path;
}

bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}
uint64_t next_prime(uint64_t n) {
  while (!is_prime(n)) ++n;
  return n;
}

// Spans per leaf of the selection tree (see build_selection): measured best at 8 for 512..1024
// spans (H5Sselect_hyperslab OR costs O(spans already selected), H5Smodify_select O(both)).
constexpr size_t kLeafSpans = 8;
// read_range reads at most this many tokens per H5Dread, bounding the staging buffer.
constexpr int64_t kRangePiece = int64_t{1} << 20;

}  // namespace

struct CorpusReader::Impl {
  std::string path, split, dataset;  // dataset: "/train/tokens"
  int64_t n = 0;                      // tokens in the split
  int64_t vocab = 0;
  size_t elem = 0;                    // bytes per stored id: 2 or 4
  hid_t mem_type = H5I_INVALID_HID;   // H5T_NATIVE_UINT16 / UINT32: no conversion on read
  h5::File file;
  Handle dapl, dset, fspace;
  Handle tree;                        // a many-span selection, between build_selection and the read
  int64_t tokens_read = 0, read_calls = 0, spans_read = 0;
  // Scratch reused between calls.
  std::vector<uint16_t> buf16;                          // the union of the spans, in the file's type
  std::vector<uint32_t> buf32;
  std::vector<std::pair<int64_t, uint32_t>> order;      // (offset, window index), sorted
  std::vector<hsize_t> span_start, span_len;            // disjoint spans, increasing
  std::vector<int64_t> pos;                             // window i starts at buf element pos[i]

  Impl(const std::string& p, const std::string& s) : path(p), split(s), dataset("/" + s + "/tokens"),
                                                     file(p, h5::File::Mode::read) {}

  std::string what() const { return "corpus " + q(path) + " split " + q(split); }

  // Selects the disjoint spans (increasing, non-adjacent) in fspace. One span: a plain SET.
  // Many: H5S_SELECT_OR costs O(spans already selected) per call in HDF5 1.10, so an OR loop
  // over 1024 spans is quadratic (4.5 ms measured); instead leaves of kLeafSpans spans are
  // OR-ed in fresh dataspaces and merged pairwise with H5Smodify_select (O(n log n)).
  // Returns the dataspace holding the selection (fspace, or the merged tree's root).
  hid_t build_selection() {
    const size_t m = span_start.size();
    const hsize_t one = 1;
    auto select = [&](hid_t space, size_t i, H5S_seloper_t op) {
      QISA_CHECK(H5Sselect_hyperslab(space, op, &span_start[i], nullptr, &one, &span_len[i]) >= 0,
                 what() + ": H5Sselect_hyperslab failed", "this is a bug in qisa's corpus reader");
    };
    if (m <= kLeafSpans) {
      for (size_t i = 0; i < m; ++i) select(fspace.get(), i, i == 0 ? H5S_SELECT_SET : H5S_SELECT_OR);
      return fspace.get();
    }
    const hsize_t extent = static_cast<hsize_t>(n);
    std::vector<Handle> parts;
    parts.reserve((m + kLeafSpans - 1) / kLeafSpans);
    for (size_t b = 0; b < m; b += kLeafSpans) {
      Handle s(H5Screate_simple(1, &extent, nullptr), H5Sclose);
      QISA_CHECK(s, what() + ": H5Screate_simple failed", "out of memory?");
      for (size_t i = b; i < std::min(m, b + kLeafSpans); ++i) select(s.get(), i, i == b ? H5S_SELECT_SET : H5S_SELECT_OR);
      parts.push_back(std::move(s));
    }
    while (parts.size() > 1) {
      size_t k = 0;
      for (size_t i = 0; i + 1 < parts.size(); i += 2) {
        QISA_CHECK(H5Smodify_select(parts[i].get(), H5S_SELECT_OR, parts[i + 1].get()) >= 0,
                   what() + ": H5Smodify_select failed", "this is a bug in qisa's corpus reader");
        parts[k++] = std::move(parts[i]);
      }
      if (parts.size() % 2) parts[k++] = std::move(parts.back());
      parts.resize(k);
    }
    tree = std::move(parts[0]);
    return tree.get();
  }

  // One H5Dread of the selection in `space` (`total` tokens) into buf.
  void read_selection(hid_t space, hsize_t total) {
    void* data;
    if (elem == 2) {
      buf16.resize(static_cast<size_t>(total));
      data = buf16.data();
    } else {
      buf32.resize(static_cast<size_t>(total));
      data = buf32.data();
    }
    Handle mem(H5Screate_simple(1, &total, nullptr), H5Sclose);
    QISA_CHECK(mem, what() + ": H5Screate_simple failed", "out of memory?");
    const herr_t rc = H5Dread(dset.get(), mem_type, mem.get(), space, H5P_DEFAULT, data);
    // HDF5's reason now: closing the selection's dataspace below clears its error stack.
    const std::string failed = rc < 0 ? h5::with_cause("reading " + std::to_string(total) + " tokens of " + what() +
                                                       " failed (bad checksum or truncated file)")
                                      : std::string();
    tree.reset();
    QISA_CHECK(rc >= 0, failed, rerun_hint(path));
    tokens_read += static_cast<int64_t>(total);
    ++read_calls;
  }

  template <typename U>
  const U* ids() const {
    if constexpr (sizeof(U) == 2) return buf16.data(); else return buf32.data();
  }

  // Every id in buf[0, total) < vocab; on failure names the file position of the first bad id.
  template <typename U>
  void check_ids(size_t total) const {
    const U* p = ids<U>();
    U hi = 0;
    for (size_t i = 0; i < total; ++i) hi = std::max(hi, p[i]);  // vectorizes; the search runs only on failure
    if (static_cast<uint64_t>(hi) < static_cast<uint64_t>(vocab)) return;
    size_t i = 0;
    while (static_cast<uint64_t>(p[i]) < static_cast<uint64_t>(vocab)) ++i;
    // buf element i -> file position through the spans
    int64_t at = static_cast<int64_t>(i);
    for (size_t s = 0; s < span_start.size(); ++s) {
      if (at < static_cast<int64_t>(span_len[s])) { at += static_cast<int64_t>(span_start[s]); break; }
      at -= static_cast<int64_t>(span_len[s]);
    }
    throw Error(q(path + ":" + dataset) + " (split " + q(split) + ") holds token id " + std::to_string(p[i]) +
                    " at position " + std::to_string(at) + ", but vocab_size is " + std::to_string(vocab),
                rerun_hint(path));
  }
  void check_ids(size_t total) const { elem == 2 ? check_ids<uint16_t>(total) : check_ids<uint32_t>(total); }

  template <typename U>
  void copy_windows(size_t count, int len, int32_t* out) const {
    const U* p = ids<U>();
    for (size_t i = 0; i < count; ++i) {
      const U* src = p + pos[i];
      int32_t* dst = out + i * static_cast<size_t>(len);
      for (int k = 0; k < len; ++k) dst[k] = static_cast<int32_t>(src[k]);
    }
  }
  template <typename U>
  void copy_range(size_t count, int32_t* out) const {
    const U* p = ids<U>();
    for (size_t k = 0; k < count; ++k) out[k] = static_cast<int32_t>(p[k]);
  }
};

CorpusReader::CorpusReader(const std::string& path, const std::string& split, double chunk_cache_mb) {
  QISA_CHECK(split == "train" || split == "val", "corpus " + q(path) + ": unknown split " + q(split),
             "the splits are 'train' and 'val'");
  QISA_CHECK(std::isfinite(chunk_cache_mb) && chunk_cache_mb > 0 && chunk_cache_mb < 1e6,
             "corpus " + q(path) + " split " + q(split) + ": chunk cache of " + std::to_string(chunk_cache_mb) +
                 " MiB is not in (0, 1e6)",
             "set data.chunk_cache_mb to a positive size in MiB, e.g. 64");
  CorpusInfo info;
  try {
    info = read_corpus_info(path);  // existence, HDF5, format version, attributes, datasets
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (opening its " + split + " split)", e.hint());
  }
  impl_ = std::make_unique<Impl>(path, split);
  Impl& m = *impl_;
  m.vocab = info.vocab_size;
  m.n = split == "train" ? info.train_tokens : info.val_tokens;
  const hid_t fid = m.file.id();

  // The stored type decides the staging type; the chunk shape sizes the cache.
  hsize_t chunk_tokens = 0;
  {
    Handle d(H5Dopen2(fid, m.dataset.c_str(), H5P_DEFAULT), H5Dclose);
    QISA_CHECK(d, h5::with_cause(m.what() + ": cannot open " + m.dataset), rerun_hint(path));
    Handle t(H5Dget_type(d.get()), H5Tclose);
    const size_t size = t ? H5Tget_size(t.get()) : 0;
    QISA_CHECK(t && H5Tget_class(t.get()) == H5T_INTEGER && H5Tget_sign(t.get()) == H5T_SGN_NONE &&
                   (size == 2 || size == 4),
               m.what() + ": " + m.dataset + " does not hold uint16 or uint32 token ids", rerun_hint(path));
    m.elem = size;
    m.mem_type = size == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32;
    Handle dcpl(H5Dget_create_plist(d.get()), H5Pclose);
    if (dcpl && H5Pget_layout(dcpl.get()) == H5D_CHUNKED) H5Pget_chunk(dcpl.get(), 1, &chunk_tokens);
  }

  // Raw-data chunk cache: nbytes from the config; nslots a prime ~100x the chunks the cache can
  // hold (HDF5's advice; never fewer slots than the split has chunks, so no two cached chunks
  // share a slot); w0 = 1: reads never rewrite a chunk, so evict fully-read chunks first.
  const auto nbytes = static_cast<size_t>(chunk_cache_mb * 1024.0 * 1024.0);
  const hsize_t chunk_bytes = std::max<hsize_t>(1, chunk_tokens) * m.elem;
  const hsize_t split_chunks = chunk_tokens ? (static_cast<hsize_t>(m.n) + chunk_tokens - 1) / chunk_tokens : 1;
  const hsize_t held = std::max<hsize_t>(1, std::min<hsize_t>(nbytes / chunk_bytes, split_chunks));
  const size_t nslots = static_cast<size_t>(next_prime(100 * held));
  m.dapl = Handle(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  QISA_CHECK(m.dapl && H5Pset_chunk_cache(m.dapl.get(), nslots, nbytes, 1.0) >= 0,
             m.what() + ": cannot set the chunk cache (" + std::to_string(nslots) + " slots, " +
                 std::to_string(nbytes) + " bytes)",
             "lower data.chunk_cache_mb");
  m.dset = Handle(H5Dopen2(fid, m.dataset.c_str(), m.dapl.get()), H5Dclose);
  QISA_CHECK(m.dset, h5::with_cause(m.what() + ": cannot open " + m.dataset), rerun_hint(path));
  m.fspace = Handle(H5Dget_space(m.dset.get()), H5Sclose);
  QISA_CHECK(m.fspace, h5::with_cause(m.what() + ": cannot read the dataspace of " + m.dataset), rerun_hint(path));
}

CorpusReader::~CorpusReader() = default;

const std::string& CorpusReader::path() const { return impl_->path; }
const std::string& CorpusReader::split() const { return impl_->split; }
int64_t CorpusReader::size() const { return impl_->n; }
int64_t CorpusReader::vocab_size() const { return impl_->vocab; }
int64_t CorpusReader::tokens_read() const { return impl_->tokens_read; }
int64_t CorpusReader::read_calls() const { return impl_->read_calls; }
int64_t CorpusReader::spans_read() const { return impl_->spans_read; }

void CorpusReader::read_windows(const int64_t* offsets, size_t count, int len, int32_t* out) {
  Impl& m = *impl_;
  if (count == 0) return;
  QISA_CHECK(len >= 1, m.what() + ": window length " + std::to_string(len) + " < 1",
             "this is a bug in the caller: windows hold block_size + 1 tokens");
  QISA_CHECK(count <= std::numeric_limits<uint32_t>::max(), m.what() + ": " + std::to_string(count) + " windows in one read",
             "read fewer windows per call");
  m.order.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const int64_t o = offsets[i];
    QISA_CHECK(o >= 0 && o <= m.n - len,
               m.what() + ": window [" + std::to_string(o) + ", " + std::to_string(o + len) + ") is outside the split of " +
                   std::to_string(m.n) + " tokens",
               "this is a bug in the caller's window arithmetic (offsets must lie in [0, size - len])");
    m.order[i] = {o, static_cast<uint32_t>(i)};
  }
  std::sort(m.order.begin(), m.order.end());

  // Merge overlapping and adjacent windows into disjoint spans; place every window in the buffer.
  m.span_start.clear();
  m.span_len.clear();
  m.pos.resize(count);
  int64_t cur_start = m.order[0].first, cur_end = cur_start, base = 0;  // span [cur_start, cur_end) at buf[base]
  for (const auto& [o, i] : m.order) {
    if (o > cur_end) {  // a gap: close the current span
      m.span_start.push_back(static_cast<hsize_t>(cur_start));
      m.span_len.push_back(static_cast<hsize_t>(cur_end - cur_start));
      base += cur_end - cur_start;
      cur_start = o;
    }
    cur_end = std::max(cur_end, o + len);
    m.pos[i] = base + (o - cur_start);
  }
  m.span_start.push_back(static_cast<hsize_t>(cur_start));
  m.span_len.push_back(static_cast<hsize_t>(cur_end - cur_start));
  const int64_t total = base + (cur_end - cur_start);

  const auto lock = h5::hdf5_lock();
  m.read_selection(m.build_selection(), static_cast<hsize_t>(total));
  m.spans_read += static_cast<int64_t>(m.span_start.size());
  m.check_ids(static_cast<size_t>(total));
  if (m.elem == 2)
    m.copy_windows<uint16_t>(count, len, out);
  else
    m.copy_windows<uint32_t>(count, len, out);
}

void CorpusReader::read_range(int64_t start, int64_t count, int32_t* out) {
  Impl& m = *impl_;
  QISA_CHECK(start >= 0 && count >= 0 && start <= m.n - count,
             m.what() + ": range [" + std::to_string(start) + ", " + std::to_string(start + count) +
                 ") is outside the split of " + std::to_string(m.n) + " tokens",
             "this is a bug in the caller's range arithmetic");
  const auto lock = h5::hdf5_lock();
  for (int64_t done = 0; done < count;) {
    const int64_t piece = std::min(kRangePiece, count - done);
    m.span_start.assign(1, static_cast<hsize_t>(start + done));
    m.span_len.assign(1, static_cast<hsize_t>(piece));
    m.read_selection(m.build_selection(), static_cast<hsize_t>(piece));
    m.spans_read += 1;
    m.check_ids(static_cast<size_t>(piece));
    if (m.elem == 2)
      m.copy_range<uint16_t>(static_cast<size_t>(piece), out + done);
    else
      m.copy_range<uint32_t>(static_cast<size_t>(piece), out + done);
    done += piece;
  }
}

}  // namespace qisa
