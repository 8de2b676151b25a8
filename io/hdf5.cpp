#include "io/hdf5.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>

namespace qisa::h5 {

namespace {

// HDF5's reason for the failure just reported, from its error stack: the operating system's, as
// HDF5's file driver records it ("..., errno = 28, error message = 'No space left on device',
// ..."), or a file shorter than its superblock says ("truncated file: eof = 100, ...,
// stored_eof = 200"); else the description of the innermost error, where HDF5 detected the
// problem ("file signature not found", "can't locate attribute", "data error detected by
// Fletcher32 checksum"); "" when the stack is empty. Must run before the next HDF5 call,
// which clears the stack.
std::string error_cause() {
  struct Found {
    std::string system, innermost;
  } found;
  auto visit = [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
    auto& f = *static_cast<Found*>(out);
    if (!e->desc || !*e->desc) return 0;
    std::string desc = e->desc;
    std::replace(desc.begin(), desc.end(), '\n', ' ');
    f.innermost = desc;  // walked from the API call down: the last one is the innermost
    if (!f.system.empty()) return 0;
    const std::string key = "error message = '";
    const auto b = desc.find(key);
    const auto end = b == std::string::npos ? b : desc.find('\'', b + key.size());
    if (desc.rfind("truncated file", 0) == 0) f.system = desc;
    else if (end != std::string::npos) f.system = desc.substr(b + key.size(), end - b - key.size());
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, visit, &found);
  return found.system.empty() ? found.innermost : found.system;
}

}  // namespace

std::string with_cause(const std::string& what) {
  const std::string cause = error_cause();
  return cause.empty() ? what : what + ": " + cause;
}

namespace {

void check(herr_t rc, const std::string& what, const std::string& hint = "") {
  if (rc < 0) throw Error(with_cause(what), hint);
}
hid_t check_id(hid_t id, const std::string& what, const std::string& hint = "") {
  if (id < 0) throw Error(with_cause(what), hint);
  return id;
}

const char* kFileHint = "check that the path exists and is a readable HDF5 file (h5ls PATH)";

// Link-creation property list that creates missing parent groups.
Handle make_lcpl() {
  Handle p(check_id(H5Pcreate(H5P_LINK_CREATE), "H5Pcreate(H5P_LINK_CREATE) failed"), H5Pclose);
  check(H5Pset_create_intermediate_group(p.get(), 1), "H5Pset_create_intermediate_group failed");
  return p;
}

// Group-creation settings (also valid on a file-creation list, which derives from it).
void apply_group_options(hid_t plist, const CreateOptions& c) {
  check(H5Pset_obj_track_times(plist, c.track_times ? 1 : 0), "H5Pset_obj_track_times failed");
  if (c.compact_links) check(H5Pset_link_phase_change(plist, 65535, 65534), "H5Pset_link_phase_change failed");
}

std::string parent_of(const std::string& path) {
  const auto pos = path.rfind('/');
  return pos == std::string::npos || pos == 0 ? std::string("/") : path.substr(0, pos);
}

}  // namespace

std::unique_lock<std::recursive_mutex> hdf5_lock() {
  static std::recursive_mutex mu;
  return std::unique_lock<std::recursive_mutex>(mu);
}

void silence_hdf5_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

File::File(const std::string& path, Mode mode) : File(path, mode, CreateOptions{}) {}

File::File(const std::string& path, Mode mode, const CreateOptions& create)
    : path_(path), create_(create), writable_(mode != Mode::read), uncaught_(std::uncaught_exceptions()) {
  silence_hdf5_errors();
  hid_t id = H5I_INVALID_HID;
  switch (mode) {
    case Mode::read:
      id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
      if (id < 0) throw Error(with_cause("cannot open HDF5 file '" + path + "' for reading"), kFileHint);
      break;
    case Mode::read_write:
      id = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
      if (id < 0) throw Error(with_cause("cannot open HDF5 file '" + path + "' for writing"), kFileHint);
      break;
    case Mode::create: {
      Handle fcpl(check_id(H5Pcreate(H5P_FILE_CREATE), "H5Pcreate(H5P_FILE_CREATE) failed"), H5Pclose);
      apply_group_options(fcpl.get(), create_);  // the root group's settings
      Handle fapl(check_id(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate(H5P_FILE_ACCESS) failed"), H5Pclose);
      if (create_.low != H5F_LIBVER_EARLIEST)
        check(H5Pset_libver_bounds(fapl.get(), create_.low, H5F_LIBVER_LATEST), "H5Pset_libver_bounds failed",
              "this HDF5 library does not know the requested file format version");
      id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get());
      if (id < 0)
        throw Error(with_cause("cannot create HDF5 file '" + path + "'"),
                    "check that the directory exists and is writable, and that the disk is not full");
      break;
    }
  }
  file_ = Handle(id, H5Fclose);
}

File::~File() {
  if (!file_) return;
  if (close_failed_) {
    // HDF5 1.10 tears a file down even when its close fails; a second H5Fclose (or any call on
    // the id) crashes in H5F__close (seen: SIGSEGV writing final.h5 on a full disk). The id is
    // left alone: close() flushes first, so this happens only when the flush succeeded.
    file_.release();
    return;
  }
  if (writable_ && std::uncaught_exceptions() > uncaught_) {  // a failed writer
    discard();
    return;
  }
  if (H5Fclose(file_.get()) < 0) discard();
  file_.release();
}

void File::flush() {
  if (writable_) reserve_space();
  check(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), "H5Fflush failed on '" + path_ + "'",
        "the disk may be full or the file system read-only");
}

int File::sec2_descriptor() const noexcept {
  Handle fapl(H5Fget_access_plist(file_.get()), H5Pclose);
  void* vfd = nullptr;
  if (!fapl || H5Pget_driver(fapl.get()) != H5FD_SEC2 || H5Fget_vfd_handle(file_.get(), fapl.get(), &vfd) < 0 || !vfd)
    return -1;
  return *static_cast<int*>(vfd);
}

// HDF5 1.10.8 cannot recover from a metadata flush that fails: its metadata cache is left with
// its skip list enabled ("slist already enabled?"), every later flush and close of the file
// fail, and its exit handler then crashes on the file (seen: SIGSEGV writing final.h5 on a full
// disk). So the disk blocks of the whole file (its size as HDF5 has allocated it, metadata not
// yet written included) are reserved before HDF5 flushes: a full disk fails here, while the
// file is still whole, and discard() can close it. The file's length does not change.
void File::reserve_space() {
  const int fd = sec2_descriptor();
  hsize_t size = 0;
  if (fd < 0 || H5Fget_filesize(file_.get(), &size) < 0 || size == 0) return;  // another driver: nothing to reserve
  const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
  if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL)
    throw Error("cannot write HDF5 file '" + path_ + "' (" + std::to_string(size) + " bytes): " + std::strerror(rc),
                rc == ENOSPC ? "free disk space on its file system (df -h), or write it elsewhere"
                             : "check that the file system is writable");
}

void File::close() {
  if (!file_) return;
  // Closed here, not in the destructor, to report errors. Everything is flushed first, while
  // the file is still whole: a flush that fails (a full disk) throws with the file open, and
  // the destructor discards it. A close that fails after that is not retried.
  if (writable_) flush();
  if (H5Fclose(file_.get()) < 0) {
    close_failed_ = true;
    throw Error(with_cause("closing HDF5 file '" + path_ + "' failed"), "the disk may be full or the file system read-only");
  }
  file_.release();
}

// HDF5 1.10 keeps a file whose flush fails (a full disk) in its table of open files and
// crashes in its exit handler closing it again (seen: SIGSEGV in H5F__close_cb). So the file's
// descriptor is first pointed at an anonymous in-memory file, where the remaining writes
// succeed and vanish; then every object of the file still open is closed, and the file.
void File::discard() noexcept {
  if (!file_) return;
  if (const int fd = sec2_descriptor(); fd >= 0) {
    const int sink = ::memfd_create("qisa-discarded-hdf5", 0);
    if (sink >= 0) {
      ::dup2(sink, fd);  // the real file's description is closed here
      ::close(sink);
    }
  }
  const unsigned kinds = H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR | H5F_OBJ_LOCAL;
  const ssize_t n = H5Fget_obj_count(file_.get(), kinds);
  std::vector<hid_t> open(static_cast<size_t>(std::max<ssize_t>(n, 0)));
  if (n > 0 && H5Fget_obj_ids(file_.get(), kinds, open.size(), open.data()) >= 0)
    for (hid_t id : open) H5Iget_type(id) == H5I_ATTR ? H5Aclose(id) : H5Oclose(id);
  H5Fclose(file_.release());
}

bool File::exists(const std::string& path) const {
  if (path.empty() || path == "/") return true;
  // walk "/a/b/c": each prefix must exist as a link before the next is asked about
  size_t pos = 0;
  while (true) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (!prefix.empty() && prefix != "/") {
      htri_t r = H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT);
      if (r <= 0) return false;
    }
    if (pos == std::string::npos) return true;
  }
}

bool File::exists_checked(const std::string& path) const {
  if (path.empty() || path == "/") return true;
  size_t pos = 0;
  while (true) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (!prefix.empty() && prefix != "/") {
      htri_t r = H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT);
      if (r < 0)
        throw Error(with_cause("cannot look up '" + where(prefix) + "' (damaged metadata, or a parent is not a group)"),
                    "the file may be corrupt: regenerate it or use an earlier copy");
      if (r == 0) return false;
    }
    if (pos == std::string::npos) return true;
  }
}

Handle File::open_object(const std::string& obj) const {
  if (!exists(obj)) throw Error("'" + where(obj) + "' does not exist", "list the file with: h5ls -r " + path_);
  hid_t id = H5Oopen(file_.get(), obj.c_str(), H5P_DEFAULT);
  return Handle(check_id(id, "cannot open '" + where(obj) + "'", kFileHint), H5Oclose);
}

std::vector<std::string> File::list(const std::string& group) const {
  Handle g = open_object(group);
  H5G_info_t info;
  check(H5Gget_info(g.get(), &info), "'" + where(group) + "' is not a group");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    check(static_cast<herr_t>(len < 0 ? -1 : 0), "cannot list '" + where(group) + "'");
    std::string name(static_cast<size_t>(len), '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<hsize_t> File::dims(const std::string& dataset) const {
  Handle d = open_object(dataset);
  Handle s(check_id(H5Dget_space(d.get()), "'" + where(dataset) + "' is not a dataset"), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(s.get());
  check(rank, "cannot read the shape of '" + where(dataset) + "'");
  std::vector<hsize_t> out(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(s.get(), out.data(), nullptr);
  return out;
}

hsize_t File::stored_count(const std::string& dataset, std::vector<hsize_t>* dims_out) const {
  std::vector<hsize_t> d = dims(dataset);
  hsize_t n = 1;
  for (hsize_t x : d)
    if (__builtin_mul_overflow(n, x, &n))
      throw Error("'" + where(dataset) + "' has an impossible shape (more than 2^64 elements)",
                  "the file is corrupt: regenerate it or use an earlier copy");
  if (n > 0) {
    Handle ds = open_object(dataset);
    Handle ft(check_id(H5Dget_type(ds.get()), "cannot read the type of '" + where(dataset) + "'"), H5Tclose);
    // Fixed-size elements take their size; variable-length ones (strings) at least a byte.
    const bool variable = H5Tget_class(ft.get()) == H5T_VLEN || H5Tis_variable_str(ft.get()) > 0;
    const hsize_t elem = variable ? 1 : std::max<hsize_t>(1, H5Tget_size(ft.get()));
    hsize_t need = 0;
    const bool overflow = __builtin_mul_overflow(n, elem, &need);
    const hsize_t stored = H5Dget_storage_size(ds.get());
    if (overflow || stored < need)
      throw Error("'" + where(dataset) + "' claims " + std::to_string(n) + " elements of " + std::to_string(elem) +
                      " bytes, but the file holds only " + std::to_string(stored) + " bytes of its data",
                  "the file is truncated or corrupt: regenerate it or use an earlier copy");
  }
  if (dims_out) *dims_out = d;
  return n;
}

void File::read_raw(const std::string& dataset, hid_t mem_type, void* out, hsize_t expect_count) const {
  Handle d = open_object(dataset);
  Handle s(check_id(H5Dget_space(d.get()), "'" + where(dataset) + "' is not a dataset"), H5Sclose);
  hssize_t n = H5Sget_simple_extent_npoints(s.get());
  if (n < 0) throw Error(with_cause("cannot read the shape of '" + where(dataset) + "'"), kFileHint);
  if (static_cast<hsize_t>(n) != expect_count)
    throw Error("'" + where(dataset) + "' has " + std::to_string(n) + " elements, expected " +
                    std::to_string(expect_count),
                "the file was written by a different configuration or version");
  if (n == 0) return;
  check(H5Dread(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
        "reading '" + where(dataset) + "' failed (bad checksum, truncated file, or wrong type)",
        "the file may be corrupt: regenerate it or use an earlier copy");
}

void File::read_slice_raw(const std::string& dataset, hid_t mem_type, hsize_t start, hsize_t count,
                          void* out) const {
  Handle d = open_object(dataset);
  Handle s(check_id(H5Dget_space(d.get()), "'" + where(dataset) + "' is not a dataset"), H5Sclose);
  hsize_t n = 0;
  if (H5Sget_simple_extent_ndims(s.get()) != 1)
    throw Error("'" + where(dataset) + "' is not one-dimensional", "slices are read from 1-D token arrays");
  H5Sget_simple_extent_dims(s.get(), &n, nullptr);
  if (start + count > n)
    throw Error("slice [" + std::to_string(start) + ", " + std::to_string(start + count) + ") is outside '" +
                    where(dataset) + "' of length " + std::to_string(n),
                "this is a bug in the caller's window arithmetic");
  if (count == 0) return;
  check(H5Sselect_hyperslab(s.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr),
        "H5Sselect_hyperslab failed on '" + where(dataset) + "'");
  Handle m(check_id(H5Screate_simple(1, &count, nullptr), "H5Screate_simple failed"), H5Sclose);
  check(H5Dread(d.get(), mem_type, m.get(), s.get(), H5P_DEFAULT, out),
        "reading a slice of '" + where(dataset) + "' failed (bad checksum or truncated file)",
        "the file may be corrupt: regenerate it");
}

std::vector<std::string> File::read_strings(const std::string& dataset, std::vector<hsize_t>* dims) const {
  std::vector<hsize_t> d;
  const hsize_t n = stored_count(dataset, &d);
  Handle ds = open_object(dataset);
  Handle ft(check_id(H5Dget_type(ds.get()), "cannot read the type of '" + where(dataset) + "'"), H5Tclose);
  if (H5Tget_class(ft.get()) != H5T_STRING)
    throw Error("'" + where(dataset) + "' does not hold strings", "the file was not written by qisa");
  std::vector<std::string> out;
  out.reserve(n);
  if (H5Tis_variable_str(ft.get()) > 0) {
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(ft.get()));
    std::vector<char*> ptrs(n, nullptr);
    if (n > 0) {
      check(H5Dread(ds.get(), mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()),
            "reading strings from '" + where(dataset) + "' failed");
      for (char* p : ptrs) out.emplace_back(p ? p : "");
      Handle sp(H5Dget_space(ds.get()), H5Sclose);
      H5Dvlen_reclaim(mt.get(), sp.get(), H5P_DEFAULT, ptrs.data());
    }
  } else {
    size_t len = H5Tget_size(ft.get());
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.get(), len);
    H5Tset_strpad(mt.get(), H5T_STR_NULLPAD);
    H5Tset_cset(mt.get(), H5Tget_cset(ft.get()));  // HDF5 converts neither ASCII <-> UTF-8
    std::vector<char> buf(n * len);
    if (n > 0)
      check(H5Dread(ds.get(), mt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()),
            "reading strings from '" + where(dataset) + "' failed");
    for (hsize_t i = 0; i < n; ++i) {
      const char* p = buf.data() + i * len;
      out.emplace_back(p, strnlen(p, len));
    }
  }
  if (dims) *dims = d;
  return out;
}

void File::create_group(const std::string& group) {
  if (exists(group)) return;
  create_group(parent_of(group));  // made here, not by the link-creation list, so they get create_
  Handle gcpl(check_id(H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate(H5P_GROUP_CREATE) failed"), H5Pclose);
  apply_group_options(gcpl.get(), create_);
  Handle g(check_id(H5Gcreate2(file_.get(), group.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT),
                    "cannot create group '" + where(group) + "'"),
           H5Gclose);
}

Handle File::make_dcpl(const std::vector<hsize_t>& dims, const WriteOptions& opt) const {
  Handle dcpl(check_id(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate failed"), H5Pclose);
  check(H5Pset_obj_track_times(dcpl.get(), create_.track_times ? 1 : 0), "H5Pset_obj_track_times failed");
  hsize_t total = 1;
  for (auto x : dims) total *= x;
  const bool filtered = opt.fletcher32 || opt.deflate > 0;
  if (!dims.empty() && total > 0 && (opt.chunk > 0 || filtered || !opt.chunk_shape.empty())) {
    std::vector<hsize_t> chunk = dims;
    if (!opt.chunk_shape.empty()) {
      if (opt.chunk_shape.size() != dims.size())
        throw Error("chunk shape has " + std::to_string(opt.chunk_shape.size()) + " dims, the dataset " +
                    std::to_string(dims.size()), "this is a bug in the caller");
      for (size_t i = 0; i < dims.size(); ++i) chunk[i] = std::min(dims[i], opt.chunk_shape[i]);
    } else {
      chunk[0] = std::min<hsize_t>(dims[0], opt.chunk > 0 ? opt.chunk : dims[0]);
    }
    for (auto& c : chunk) c = std::max<hsize_t>(c, 1);
    check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk failed");
    if (opt.deflate > 0) check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(opt.deflate)), "H5Pset_deflate failed");
    if (opt.fletcher32) check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32 failed");
  }
  return dcpl;
}

Dataset File::create_dataset(const std::string& dataset, hid_t file_type, const std::vector<hsize_t>& dims,
                             const WriteOptions& opt) {
  Handle space(check_id(dims.empty() ? H5Screate(H5S_SCALAR)
                                     : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                        "H5Screate failed for '" + where(dataset) + "'"),
               H5Sclose);
  Handle dcpl = make_dcpl(dims, opt);
  create_group(parent_of(dataset));
  Handle d(check_id(H5Dcreate2(file_.get(), dataset.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(),
                               H5P_DEFAULT),
                    "cannot create dataset '" + where(dataset) + "'", "does it exist already?"),
           H5Dclose);
  return Dataset(std::move(d), where(dataset));
}

Dataset File::open_dataset(const std::string& dataset) const {
  if (!exists(dataset))
    throw Error("'" + where(dataset) + "' does not exist", "list the file with: h5ls -r " + path_);
  hid_t id = H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT);
  return Dataset(Handle(check_id(id, "cannot open dataset '" + where(dataset) + "'", kFileHint), H5Dclose),
                 where(dataset));
}

void File::write_raw(const std::string& dataset, hid_t file_type, hid_t mem_type, const void* data,
                     const std::vector<hsize_t>& dims, const WriteOptions& opt) {
  Handle space(check_id(dims.empty() ? H5Screate(H5S_SCALAR)
                                     : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                        "H5Screate failed for '" + where(dataset) + "'"),
               H5Sclose);
  Handle dcpl = make_dcpl(dims, opt);
  hsize_t total = 1;
  for (auto x : dims) total *= x;
  create_group(parent_of(dataset));
  Handle lcpl = make_lcpl();
  Handle d(check_id(H5Dcreate2(file_.get(), dataset.c_str(), file_type, space.get(), lcpl.get(), dcpl.get(),
                               H5P_DEFAULT),
                    "cannot create dataset '" + where(dataset) + "'", "does it exist already?"),
           H5Dclose);
  if (total > 0)
    check(H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
          "writing '" + where(dataset) + "' failed", "the disk may be full");
}

void File::write_strings(const std::string& dataset, const std::vector<std::string>& values,
                         const std::vector<hsize_t>& dims, size_t fixed_len, const WriteOptions& opt) {
  hsize_t total = 1;
  for (auto x : dims) total *= x;
  if (total != values.size()) throw Error("write_strings: shape does not match the number of strings for '" + where(dataset) + "'");
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  Handle space(check_id(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "H5Screate failed"),
               H5Sclose);
  Handle dcpl = make_dcpl(dims, opt);
  create_group(parent_of(dataset));
  Handle lcpl = make_lcpl();
  if (fixed_len > 0) {
    const bool ascii = std::all_of(values.begin(), values.end(), [](const std::string& v) {
      return std::all_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    });
    H5Tset_size(type.get(), fixed_len);
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
    H5Tset_cset(type.get(), ascii ? H5T_CSET_ASCII : H5T_CSET_UTF8);
    std::vector<char> buf(values.size() * fixed_len, '\0');
    for (size_t i = 0; i < values.size(); ++i) {
      if (values[i].size() > fixed_len) throw Error("string '" + values[i] + "' longer than " + std::to_string(fixed_len));
      std::memcpy(buf.data() + i * fixed_len, values[i].data(), values[i].size());
    }
    Handle d(check_id(H5Dcreate2(file_.get(), dataset.c_str(), type.get(), space.get(), lcpl.get(), dcpl.get(),
                                 H5P_DEFAULT),
                      "cannot create dataset '" + where(dataset) + "'"),
             H5Dclose);
    if (!values.empty())
      check(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()),
            "writing '" + where(dataset) + "' failed", "the disk may be full");
  } else {
    H5Tset_size(type.get(), H5T_VARIABLE);
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    std::vector<const char*> ptrs;
    ptrs.reserve(values.size());
    for (auto& s : values) ptrs.push_back(s.c_str());
    Handle d(check_id(H5Dcreate2(file_.get(), dataset.c_str(), type.get(), space.get(), lcpl.get(), dcpl.get(),
                                 H5P_DEFAULT),
                      "cannot create dataset '" + where(dataset) + "'"),
             H5Dclose);
    if (!values.empty())
      check(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()),
            "writing '" + where(dataset) + "' failed", "the disk may be full");
  }
}

bool File::has_attr(const std::string& obj, const std::string& name) const {
  if (!exists(obj)) return false;
  return H5Aexists_by_name(file_.get(), obj.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> File::attr_names(const std::string& obj) const {
  Handle o = open_object(obj);
  H5O_info_t info;
#if H5_VERSION_GE(1, 12, 0)
  check(H5Oget_info3(o.get(), &info, H5O_INFO_NUM_ATTRS), "H5Oget_info failed on '" + where(obj) + "'");
#else
  check(H5Oget_info2(o.get(), &info, H5O_INFO_NUM_ATTRS), "H5Oget_info failed on '" + where(obj) + "'");
#endif
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    ssize_t len = H5Aget_name_by_idx(o.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    std::string name(static_cast<size_t>(std::max<ssize_t>(len, 0)), '\0');
    H5Aget_name_by_idx(o.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

namespace {
Handle open_attr(hid_t file, const std::string& path, const std::string& obj, const std::string& name) {
  hid_t a = H5Aopen_by_name(file, obj.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0)
    throw Error(with_cause("attribute '" + name + "' missing on '" + path + ":" + obj + "'"),
                "the file was not written by this version of qisa, or is not the kind of file expected");
  return Handle(a, H5Aclose);
}
}  // namespace

int64_t File::attr_int(const std::string& obj, const std::string& name) const {
  Handle a = open_attr(file_.get(), path_, obj, name);
  int64_t v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_INT64, &v), "attribute '" + name + "' on '" + where(obj) + "' is not an integer");
  return v;
}

double File::attr_double(const std::string& obj, const std::string& name) const {
  Handle a = open_attr(file_.get(), path_, obj, name);
  double v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), "attribute '" + name + "' on '" + where(obj) + "' is not a number");
  return v;
}

std::string File::attr_string(const std::string& obj, const std::string& name) const {
  Handle a = open_attr(file_.get(), path_, obj, name);
  Handle ft(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(ft.get()) != H5T_STRING)
    throw Error("attribute '" + name + "' on '" + where(obj) + "' is not a string");
  if (H5Tis_variable_str(ft.get()) > 0) {
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(ft.get()));
    char* p = nullptr;
    check(H5Aread(a.get(), mt.get(), &p), "reading attribute '" + name + "' on '" + where(obj) + "' failed");
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  size_t len = H5Tget_size(ft.get());
  std::vector<char> buf(len + 1, '\0');
  Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mt.get(), len + 1);  // room for the terminator: a null-padded string may fill all len bytes
  H5Tset_cset(mt.get(), H5Tget_cset(ft.get()));
  check(H5Aread(a.get(), mt.get(), buf.data()), "reading attribute '" + name + "' on '" + where(obj) + "' failed");
  return std::string(buf.data(), strnlen(buf.data(), len));
}

namespace {
void write_attr(hid_t file, const std::string& fpath, const std::string& obj, const std::string& name, hid_t type,
                const void* value) {
  if (H5Aexists_by_name(file, obj.c_str(), name.c_str(), H5P_DEFAULT) > 0)
    check(H5Adelete_by_name(file, obj.c_str(), name.c_str(), H5P_DEFAULT),
          "cannot replace attribute '" + name + "' on '" + fpath + ":" + obj + "'");
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(check_id(H5Acreate_by_name(file, obj.c_str(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                      H5P_DEFAULT),
                    "cannot create attribute '" + name + "' on '" + fpath + ":" + obj + "'"),
           H5Aclose);
  check(H5Awrite(a.get(), type, value), "writing attribute '" + name + "' on '" + fpath + ":" + obj + "' failed");
}
}  // namespace

void File::set_attr(const std::string& obj, const std::string& name, int64_t value) {
  write_attr(file_.get(), path_, obj, name, H5T_NATIVE_INT64, &value);
}
void File::set_attr(const std::string& obj, const std::string& name, double value) {
  write_attr(file_.get(), path_, obj, name, H5T_NATIVE_DOUBLE, &value);
}
void File::set_attr_fixed(const std::string& obj, const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  check(H5Tset_size(type.get(), std::max<size_t>(value.size(), 1)), "H5Tset_size failed");
  check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad failed");
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset failed");
  std::vector<char> buf(std::max<size_t>(value.size(), 1), '\0');
  std::memcpy(buf.data(), value.data(), value.size());
  write_attr(file_.get(), path_, obj, name, type.get(), buf.data());
}

void File::set_attr_u64(const std::string& obj, const std::string& name, uint64_t value) {
  write_attr(file_.get(), path_, obj, name, H5T_NATIVE_UINT64, &value);
}

uint64_t File::attr_u64(const std::string& obj, const std::string& name) const {
  Handle a = open_attr(file_.get(), path_, obj, name);
  uint64_t v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_UINT64, &v), "attribute '" + name + "' on '" + where(obj) + "' is not an integer");
  return v;
}

void File::set_attr(const std::string& obj, const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* p = value.c_str();
  write_attr(file_.get(), path_, obj, name, type.get(), &p);
}

namespace {
// Adds the boxes covering flat elements [a, b) of the sub-array whose leading coordinates
// (dims < k) are fixed in `start` (the caller keeps them), at most two per level plus one.
void add_flat_boxes(hid_t space, const std::vector<hsize_t>& dims, size_t k, std::vector<hsize_t>& start,
                    hsize_t a, hsize_t b, bool& first) {
  if (a >= b) return;
  hsize_t inner = 1;
  for (size_t i = k + 1; i < dims.size(); ++i) inner *= dims[i];
  auto box = [&](hsize_t row0, hsize_t rows) {  // rows [row0, row0+rows) of dim k, all of dims > k
    std::vector<hsize_t> s(dims.size(), 0), c(dims.size(), 1);
    for (size_t i = 0; i < k; ++i) s[i] = start[i];
    s[k] = row0;
    c[k] = rows;
    for (size_t i = k + 1; i < dims.size(); ++i) c[i] = dims[i];
    check(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, s.data(), nullptr, c.data(), nullptr),
          "H5Sselect_hyperslab failed");
    first = false;
  };
  hsize_t row = a / inner;
  const hsize_t last = (b - 1) / inner;
  if (row == last && (a % inner != 0 || b % inner != 0)) {  // inside one row: descend
    start[k] = row;
    add_flat_boxes(space, dims, k + 1, start, a - row * inner, b - row * inner, first);
    return;
  }
  if (a % inner != 0) {  // partial head row
    start[k] = row;
    add_flat_boxes(space, dims, k + 1, start, a % inner, inner, first);
    ++row;
  }
  const hsize_t full_end = b / inner;  // rows [row, full_end) are whole
  if (full_end > row) box(row, full_end - row);
  if (b % inner != 0) {  // partial tail row
    start[k] = full_end;
    add_flat_boxes(space, dims, k + 1, start, 0, b % inner, first);
  }
}
}  // namespace

void select_flat(hid_t space, const std::vector<hsize_t>& dims, hsize_t start, hsize_t count) {
  hsize_t n = 1;
  for (auto x : dims) n *= x;
  if (dims.empty() || start > n || count > n - start)
    throw Error("element range [" + std::to_string(start) + ", " + std::to_string(start + count) +
                    ") is outside a dataset of " + std::to_string(n) + " elements",
                "this is a bug in the caller's offset arithmetic");
  if (count == 0) {
    check(H5Sselect_none(space), "H5Sselect_none failed");
    return;
  }
  std::vector<hsize_t> coord(dims.size(), 0);
  bool first = true;
  add_flat_boxes(space, dims, 0, coord, start, start + count, first);
}

Dataset::Dataset(Handle id, std::string where) : id_(std::move(id)), where_(std::move(where)) {
  Handle s(check_id(H5Dget_space(id_.get()), "cannot read the dataspace of '" + where_ + "'"), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(s.get());
  check(rank, "cannot read the shape of '" + where_ + "'");
  dims_.resize(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(s.get(), dims_.data(), nullptr);
}

hsize_t Dataset::numel() const {
  hsize_t n = 1;
  for (auto x : dims_) n *= x;
  return n;
}

void Dataset::write_flat_raw(hsize_t start, hsize_t count, hid_t mem_type, const void* data) {
  if (!id_) throw Error("'" + where_ + "' is closed", "this is a bug: write before close");
  Handle fs(check_id(H5Dget_space(id_.get()), "H5Dget_space failed on '" + where_ + "'"), H5Sclose);
  select_flat(fs.get(), dims_, start, count);
  if (count == 0) return;
  Handle ms(check_id(H5Screate_simple(1, &count, nullptr), "H5Screate_simple failed"), H5Sclose);
  check(H5Dwrite(id_.get(), mem_type, ms.get(), fs.get(), H5P_DEFAULT, data),
        "writing elements [" + std::to_string(start) + ", " + std::to_string(start + count) + ") of '" + where_ +
            "' failed",
        "the disk may be full");
}

void Dataset::read_flat_raw(hsize_t start, hsize_t count, hid_t mem_type, void* out) const {
  if (!id_) throw Error("'" + where_ + "' is closed", "this is a bug: read before close");
  Handle fs(check_id(H5Dget_space(id_.get()), "H5Dget_space failed on '" + where_ + "'"), H5Sclose);
  select_flat(fs.get(), dims_, start, count);
  if (count == 0) return;
  Handle ms(check_id(H5Screate_simple(1, &count, nullptr), "H5Screate_simple failed"), H5Sclose);
  check(H5Dread(id_.get(), mem_type, ms.get(), fs.get(), H5P_DEFAULT, out),
        "reading elements [" + std::to_string(start) + ", " + std::to_string(start + count) + ") of '" + where_ +
            "' failed (bad checksum, truncated file, or wrong type)",
        "the file may be corrupt: regenerate it or use an earlier copy");
}

void Dataset::close() {
  if (!id_) return;
  check(H5Dclose(id_.get()), "closing '" + where_ + "' failed", "the disk may be full");
  id_.release();  // a failed close keeps the id: File::discard() or the destructor releases it
}

}  // namespace qisa::h5
