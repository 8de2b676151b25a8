// Small RAII layer over the HDF5 C API. Every call is checked; failures throw qisa::Error
// naming the file and the object, with HDF5's own reason (with_cause). HDF5's error-stack
// printing is turned off: we print one line instead.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/error.h"

namespace qisa::h5 {

// An owned hid_t with its matching close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) { reset(); id_ = std::exchange(o.id_, H5I_INVALID_HID); close_ = o.close_; }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset() noexcept {
    if (id_ >= 0 && close_) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t get() const { return id_; }
  hid_t release() noexcept { return std::exchange(id_, H5I_INVALID_HID); }  // caller closes
  explicit operator bool() const { return id_ >= 0; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Element types we store. Reads convert from the stored numeric type (HDF5 does it).
template <typename T> hid_t native_type();
template <> inline hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> inline hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> inline hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <> inline hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> inline hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <> inline hid_t native_type<uint16_t>() { return H5T_NATIVE_UINT16; }
template <> inline hid_t native_type<uint32_t>() { return H5T_NATIVE_UINT32; }
template <> inline hid_t native_type<uint64_t>() { return H5T_NATIVE_UINT64; }

struct WriteOptions {
  hsize_t chunk = 0;        // elements per chunk along dim 0 (0: contiguous, unless filters need chunks)
  bool fletcher32 = false;  // checksum every chunk
  int deflate = 0;          // gzip level 0..9
  std::vector<hsize_t> chunk_shape;  // the full chunk shape (one entry per dim); overrides `chunk`
};

// How a File opened with Mode::create lays out what it creates. The defaults are HDF5's.
struct CreateOptions {
  // Oldest file format HDF5 may use. H5F_LIBVER_V110 (readable by HDF5 >= 1.10) gives
  // superblock v3, v2 object headers and fixed-array chunk indexes, all with metadata
  // checksums; V18 still indexes chunks with v1 B-trees, which carry none.
  H5F_libver_t low = H5F_LIBVER_EARLIEST;
  // false: no timestamps in object headers, so the same content gives the same bytes.
  bool track_times = true;
  // true: group links stay in the (checksummed) object header at any count instead of moving
  // to dense storage (fractal heap + B-tree) past 8 links. Flipped bytes in dense link
  // storage crashed HDF5 1.10.8 in our experiments; in the object header they are detected.
  bool compact_links = false;
};

// A flattened (row-major) element range [start, start+count) of an N-D dataspace, selected as
// the union of at most 2*rank-1 hyperslab boxes. Throws unless the range is inside `dims`.
void select_flat(hid_t space, const std::vector<hsize_t>& dims, hsize_t start, hsize_t count);

// An open dataset. Keeping it open between partial writes keeps its chunk cache, so pieces
// that split a chunk are assembled in memory and each chunk is filtered (checksummed) once.
class Dataset {
 public:
  Dataset(Handle id, std::string where);
  hid_t id() const { return id_.get(); }
  const std::string& where() const { return where_; }  // "file:/path", for messages
  const std::vector<hsize_t>& dims() const { return dims_; }
  hsize_t numel() const;
  // Elements [start, start+count) of the row-major flattening (hyperslab I/O).
  template <typename T>
  void write_flat(hsize_t start, hsize_t count, const T* data) { write_flat_raw(start, count, native_type<T>(), data); }
  template <typename T>
  void read_flat(hsize_t start, hsize_t count, T* out) const { read_flat_raw(start, count, native_type<T>(), out); }
  void write_flat_raw(hsize_t start, hsize_t count, hid_t mem_type, const void* data);
  void read_flat_raw(hsize_t start, hsize_t count, hid_t mem_type, void* out) const;
  // Explicit close that reports errors (flushing the chunk cache writes the last chunks).
  void close();

 private:
  Handle id_;
  std::string where_;
  std::vector<hsize_t> dims_;
};

class File {
 public:
  enum class Mode { read, read_write, create };  // create truncates
  File(const std::string& path, Mode mode);
  // Mode::create with a chosen layout (`create` applies to the file and to every object made
  // through this File).
  File(const std::string& path, Mode mode, const CreateOptions& create);
  // Closes the file. A file opened for writing that is destroyed while an exception unwinds the
  // stack (a write failed: a full disk), or whose close() failed, is discarded instead (see
  // discard()): a writer that failed writes nothing more, and its caller removes the file.
  ~File();
  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;
  const std::string& path() const { return path_; }
  hid_t id() const { return file_.get(); }
  void flush();
  // Explicit close that reports errors (the destructor swallows them). A file opened for writing
  // is flushed first: a flush that fails leaves the file open and intact, so that the
  // destructor can discard it.
  void close();
  // Abandons a file being written whose writes fail (a full disk): closes it and everything of
  // it still open without writing anything more to the disk, so that no descriptor is held and
  // HDF5 has nothing left to close at exit. The caller then removes the file.
  void discard() noexcept;

  // Does the object at `path` ("/a/b/c") exist? Every parent link is checked, so nested
  // paths with missing parents answer false instead of failing.
  bool exists(const std::string& path) const;
  // Like exists(), but a lookup that fails (e.g. a parent's object header fails its checksum)
  // throws instead of answering false, so optional content cannot silently vanish.
  bool exists_checked(const std::string& path) const;
  // Names of the members of a group, in name order.
  std::vector<std::string> list(const std::string& group) const;
  std::vector<hsize_t> dims(const std::string& dataset) const;
  // The number of elements of a dataset, checked against what the file holds before anyone
  // allocates memory for them: a damaged or edited file can claim any shape (a chunked
  // dataset whose chunks were never written costs no disk and reads back as fill values).
  // qisa writes every element and compresses nothing, so a dataset's raw data in the file
  // takes at least the elements' size (a byte each when variable-length); throws when it does
  // not, or when the shape overflows. `dims` receives the shape.
  hsize_t stored_count(const std::string& dataset, std::vector<hsize_t>* dims = nullptr) const;

  // Whole-dataset read into a vector (converted to T); `dims` receives the shape.
  template <typename T>
  std::vector<T> read(const std::string& dataset, std::vector<hsize_t>* dims = nullptr) const {
    std::vector<hsize_t> d;
    const hsize_t n = stored_count(dataset, &d);
    std::vector<T> out(n);
    read_raw(dataset, native_type<T>(), out.data(), n);
    if (dims) *dims = d;
    return out;
  }
  // Contiguous 1-D slice [start, start+count) of a 1-D dataset (hyperslab read).
  template <typename T>
  void read_slice(const std::string& dataset, hsize_t start, hsize_t count, T* out) const {
    read_slice_raw(dataset, native_type<T>(), start, count, out);
  }
  // Strings (fixed or variable length), flattened; `dims` receives the shape.
  std::vector<std::string> read_strings(const std::string& dataset, std::vector<hsize_t>* dims = nullptr) const;

  // Write a new dataset (parents created). `dims` empty means a scalar.
  template <typename T>
  void write(const std::string& dataset, const T* data, const std::vector<hsize_t>& dims,
             const WriteOptions& opt = {}) {
    write_raw(dataset, native_type<T>(), native_type<T>(), data, dims, opt);
  }
  // Write with an explicit stored type (e.g. uint16 tokens from a uint32 buffer).
  template <typename T>
  void write_as(const std::string& dataset, hid_t stored_type, const T* data,
                const std::vector<hsize_t>& dims, const WriteOptions& opt = {}) {
    write_raw(dataset, stored_type, native_type<T>(), data, dims, opt);
  }
  // Fixed-length strings of `len` bytes (null padded; tagged ASCII, or UTF-8 when a byte is >= 0x80)
  // when len > 0, else variable-length UTF-8.
  // `opt` may chunk and checksum them; note that the characters of variable-length strings
  // live in the global heap, which no checksum covers: use fixed-length strings for that.
  void write_strings(const std::string& dataset, const std::vector<std::string>& values,
                     const std::vector<hsize_t>& dims, size_t fixed_len = 0, const WriteOptions& opt = {});
  void create_group(const std::string& group);  // and its missing parents
  // Creates a dataset without writing it; fill it through the returned Dataset.
  Dataset create_dataset(const std::string& dataset, hid_t file_type, const std::vector<hsize_t>& dims,
                         const WriteOptions& opt = {});
  Dataset open_dataset(const std::string& dataset) const;

  // Attributes on the object at `obj` ("/" for the root).
  bool has_attr(const std::string& obj, const std::string& name) const;
  int64_t attr_int(const std::string& obj, const std::string& name) const;
  double attr_double(const std::string& obj, const std::string& name) const;
  std::string attr_string(const std::string& obj, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& obj) const;
  void set_attr(const std::string& obj, const std::string& name, int64_t value);
  void set_attr(const std::string& obj, const std::string& name, double value);
  void set_attr(const std::string& obj, const std::string& name, const std::string& value);
  // A fixed-length string attribute: stored inside the object header, so the header's
  // metadata checksum covers it (a variable-length string's bytes go to the global heap).
  void set_attr_fixed(const std::string& obj, const std::string& name, const std::string& value);
  void set_attr_u64(const std::string& obj, const std::string& name, uint64_t value);
  uint64_t attr_u64(const std::string& obj, const std::string& name) const;

  // Reads a dataset and fails unless every chunk's checksum (if any) verifies: HDF5 checks
  // fletcher32 on read, so reading is the verification.
  void read_raw(const std::string& dataset, hid_t mem_type, void* out, hsize_t expect_count) const;

 private:
  void read_slice_raw(const std::string& dataset, hid_t mem_type, hsize_t start, hsize_t count, void* out) const;
  void write_raw(const std::string& dataset, hid_t file_type, hid_t mem_type, const void* data,
                 const std::vector<hsize_t>& dims, const WriteOptions& opt);
  Handle open_object(const std::string& obj) const;
  std::string where(const std::string& obj) const { return path_ + ":" + obj; }
  void reserve_space();  // the disk blocks of the whole file, before a flush (see hdf5.cpp)
  int sec2_descriptor() const noexcept;  // the file's descriptor under the default (sec2) driver, else -1

  Handle make_dcpl(const std::vector<hsize_t>& dims, const WriteOptions& opt) const;

  std::string path_;
  Handle file_;
  CreateOptions create_;
  bool writable_ = false;      // opened with Mode::read_write or Mode::create
  bool close_failed_ = false;  // H5Fclose failed: HDF5 may have freed the file; never call it again
  int uncaught_ = 0;           // std::uncaught_exceptions() when opened
};

// Turn off HDF5's automatic error-stack printing (idempotent). Called by File.
void silence_hdf5_errors();

// HDF5's serial library (Debian's, and the default build) is not thread-safe. A qisa process
// reads and writes HDF5 from one thread, except where the ranks of a job run as threads of one
// process (the NCCL tests on the emulated device, tests/thread_world.h): the training loop's
// reads (CorpusReader) hold this process-wide lock, so such ranks may read at the same time.
// Files are opened and closed outside the loop, from one thread.
std::unique_lock<std::recursive_mutex> hdf5_lock();

// `what` + ": " + HDF5's reason for the failure of the HDF5 call just made (the system's error
// message, a truncated file, or else the innermost error of HDF5's stack, e.g. "file signature
// not found"), or `what` alone when HDF5 recorded none. Every error this layer (and the corpus
// reader) raises after a failed HDF5 call goes through it; call it before any other HDF5 call,
// which clears the stack.
std::string with_cause(const std::string& what);

}  // namespace qisa::h5
