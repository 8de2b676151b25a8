// Structured fuzzing of HDF5 files: a FileSpec describes a file (root attributes, datasets
// with type, shape, layout and content); the fuzz input is a list of edits to a valid baseline
// spec, and the edited spec is written with the HDF5 C API. The readers under test then see
// well-formed HDF5 whose CONTENT is arbitrary: wrong types and ranks, huge or empty shapes
// (unwritten, so the file stays small), missing or extra objects, strange strings and ids.
// Why not mutate the bytes of these files: their metadata carries no checksums, and HDF5
// 1.10.8 itself crashes, hangs or leaks on damaged metadata within seconds (seen: SEGV and
// memcpy-param-overlap in H5HG_read on a variable-length string of a damaged global heap, an
// endless H5HG_read/H5C_protect loop), which would hide everything in our code. Checkpoints
// have metadata checksums, so fuzz_checkpoint does mutate bytes.
#pragma once
#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace qisa::fuzz {

// Reads the fuzz input front to back; past its end every read gives zeros.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  bool done() const { return i_ >= n_; }
  uint8_t byte() { return i_ < n_ ? p_[i_++] : 0; }
  size_t pick(size_t n) { return n == 0 ? 0 : byte() % n; }
  uint64_t le(int bytes) {
    uint64_t v = 0;
    for (int b = 0; b < bytes; ++b) v |= uint64_t{byte()} << (8 * b);
    return v;
  }
  std::string text(size_t max_len) {
    const size_t len = std::min<size_t>(byte(), max_len);
    std::string s;
    for (size_t k = 0; k < len && !done(); ++k) s += static_cast<char>(byte());
    return s;
  }
  // Small values, boundaries of the integer types, or 8 raw bytes.
  int64_t integer() {
    static constexpr int64_t kValues[] = {0, 1, 2, 3, 4, 5, 6, 7, -1, -2, 255, 256, 65535, 65536, 65537,
                                          INT32_MAX, int64_t{INT32_MAX} + 1, INT64_MAX, INT64_MIN};
    const size_t k = pick(std::size(kValues) + 1);
    return k < std::size(kValues) ? kValues[k] : static_cast<int64_t>(le(8));
  }
  double real() {
    static constexpr double kValues[] = {0.0, 0.1, 1.0, -1.0, 0.5, 1e300, -1e300, 1e-320, 65535.0, 65536.0};
    const size_t k = pick(std::size(kValues) + 3);
    if (k < std::size(kValues)) return kValues[k];
    if (k == std::size(kValues)) return __builtin_nan("");
    if (k == std::size(kValues) + 1) return __builtin_inf();
    const uint64_t bits = le(8);
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  // A dataset extent: small, around the 64 Ki chunk, or huge (never written: see FileSpec).
  hsize_t extent() {
    static constexpr hsize_t kValues[] = {0, 1, 2, 3, 4, 5, 6, 16, 65535, 65536, 65537, hsize_t{1} << 31,
                                          hsize_t{1} << 32, hsize_t{1} << 40, hsize_t{1} << 62};
    const size_t k = pick(std::size(kValues) + 1);
    return k < std::size(kValues) ? kValues[k] : le(2);
  }

 private:
  const uint8_t* p_;
  size_t n_, i_ = 0;
};

enum class Type : uint8_t { u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, u16be, vstr, fstr, count };

inline bool is_string(Type t) { return t == Type::vstr || t == Type::fstr; }

inline hid_t file_type(Type t) {
  switch (t) {
    case Type::u8: return H5T_STD_U8LE;
    case Type::u16: return H5T_STD_U16LE;
    case Type::u32: return H5T_STD_U32LE;
    case Type::u64: return H5T_STD_U64LE;
    case Type::i8: return H5T_STD_I8LE;
    case Type::i16: return H5T_STD_I16LE;
    case Type::i32: return H5T_STD_I32LE;
    case Type::i64: return H5T_STD_I64LE;
    case Type::f32: return H5T_IEEE_F32LE;
    case Type::f64: return H5T_IEEE_F64LE;
    case Type::u16be: return H5T_STD_U16BE;
    default: return H5T_STD_I64LE;
  }
}

struct AttrSpec {
  Type type = Type::i64;
  int64_t i = 0;
  double d = 0;
  std::string s;
};

struct DataSpec {
  Type type = Type::f32;
  std::vector<hsize_t> dims;         // empty: a scalar
  hsize_t chunk = 0;                 // elements per chunk along each dim (clamped); 0: contiguous
  bool fletcher32 = false;
  bool written = true;               // false: never written, every element reads as the fill value
  std::vector<double> values;        // numeric content, cycled; empty: element i is i % 7
  std::vector<std::string> strings;  // string content, cycled; empty: "a"
  bool as_group = false;             // a group at this path instead of a dataset
};

class FileSpec {
 public:
  std::map<std::string, AttrSpec> attrs;     // on the root group
  std::map<std::string, DataSpec> datasets;  // by full path

  // Applies edits read from `in` until it is exhausted. `attr_names` and `paths` are the
  // names the reader under test looks for; an edit may also make up a name.
  void edit(Input& in, const std::vector<std::string>& attr_names, const std::vector<std::string>& paths) {
    while (!in.done()) {
      const uint8_t op = in.byte() % 9;
      if (op <= 1) {
        const size_t k = in.pick(attr_names.size() + 1);
        const std::string name = k < attr_names.size() ? attr_names[k] : in.text(8);
        if (op == 1) { attrs.erase(name); continue; }
        AttrSpec& a = attrs[name];
        a.type = static_cast<Type>(in.pick(static_cast<size_t>(Type::count)));
        a.i = in.integer();
        a.d = in.real();
        a.s = in.pick(2) ? in.text(200) : a.s;
        continue;
      }
      const size_t k = in.pick(paths.size() + 1);
      const std::string path = k < paths.size() ? paths[k] : "/" + in.text(8);
      if (op == 2) { datasets.erase(path); continue; }
      DataSpec& d = datasets[path];
      switch (op) {
        case 3: d.type = static_cast<Type>(in.pick(static_cast<size_t>(Type::count))); break;
        case 4: {
          d.dims.resize(in.pick(4));
          for (auto& x : d.dims) x = in.extent();
          break;
        }
        case 5: {
          d.values.resize(1 + in.pick(16));
          for (auto& v : d.values) v = in.pick(2) ? static_cast<double>(in.integer()) : in.real();
          break;
        }
        case 6: {
          d.strings.resize(1 + in.pick(16));
          for (auto& s : d.strings) s = in.text(12);
          break;
        }
        case 7: {
          static constexpr hsize_t kChunks[] = {0, 1, 3, 64, 65536};
          d.chunk = kChunks[in.pick(std::size(kChunks))];
          d.fletcher32 = in.pick(2);
          d.written = in.pick(4) != 0;
          break;
        }
        case 8: d.as_group = !d.as_group; break;
      }
    }
  }

  // Writes the spec to `path` (replacing it). Objects that HDF5 refuses to create (e.g. a
  // chunk of a 0-length dimension, a dataset below a dataset) are left out.
  void write(const std::string& path) const {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return;
    for (const auto& [name, a] : attrs) write_attr(f, name, a);
    const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    for (const auto& [p, d] : datasets) {
      if (d.as_group) {
        const hid_t g = H5Gcreate2(f, p.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (g >= 0) H5Gclose(g);
      } else {
        write_dataset(f, lcpl, p, d);
      }
    }
    H5Pclose(lcpl);
    H5Fclose(f);
  }

 private:
  static hid_t string_type(Type t, size_t fixed_len) {
    const hid_t s = H5Tcopy(H5T_C_S1);
    H5Tset_size(s, t == Type::vstr ? H5T_VARIABLE : std::max<size_t>(fixed_len, 1));
    if (t == Type::fstr) H5Tset_strpad(s, H5T_STR_NULLPAD);
    H5Tset_cset(s, H5T_CSET_UTF8);
    return s;
  }

  static void write_attr(hid_t f, const std::string& name, const AttrSpec& a) {
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t type = is_string(a.type) ? string_type(a.type, a.s.size()) : H5Tcopy(file_type(a.type));
    const hid_t attr = H5Acreate2(f, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0) {
      if (a.type == Type::vstr) {
        const char* p = a.s.c_str();
        H5Awrite(attr, type, &p);
      } else if (a.type == Type::fstr) {
        std::vector<char> buf(std::max<size_t>(a.s.size(), 1), '\0');
        std::memcpy(buf.data(), a.s.data(), a.s.size());
        H5Awrite(attr, type, buf.data());
      } else if (a.type == Type::f32 || a.type == Type::f64) {
        H5Awrite(attr, H5T_NATIVE_DOUBLE, &a.d);
      } else {
        H5Awrite(attr, H5T_NATIVE_INT64, &a.i);
      }
      H5Aclose(attr);
    }
    H5Tclose(type);
    H5Sclose(space);
  }

  static void write_dataset(hid_t f, hid_t lcpl, const std::string& path, const DataSpec& d) {
    constexpr hsize_t kMaxWritten = hsize_t{1} << 16;  // elements written at most: files stay small
    hsize_t n = 1;
    bool overflow = false;
    for (hsize_t x : d.dims) overflow |= __builtin_mul_overflow(n, x, &n);
    const hid_t space = d.dims.empty() ? H5Screate(H5S_SCALAR)
                                       : H5Screate_simple(static_cast<int>(d.dims.size()), d.dims.data(), nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    bool chunked = false;
    if (d.chunk > 0 && !d.dims.empty()) {
      std::vector<hsize_t> chunk(d.dims.size());
      for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = std::max<hsize_t>(1, std::min(d.dims[i], d.chunk));
      chunked = H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()) >= 0;
      if (chunked && d.fletcher32) H5Pset_fletcher32(dcpl);
    }
    size_t fixed_len = 1;
    for (const auto& s : d.strings) fixed_len = std::max(fixed_len, s.size());
    const hid_t type = is_string(d.type) ? string_type(d.type, fixed_len) : H5Tcopy(file_type(d.type));
    const hid_t ds = H5Dcreate2(f, path.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds >= 0) {
      // Small datasets are written whole; big chunked 1-D ones only their first chunk(s): the
      // rest keeps the fill value and costs no disk (never a big contiguous one: HDF5 would
      // allocate and fill all of it).
      const hsize_t count = overflow ? 0 : std::min(n, kMaxWritten);
      const bool chunked_1d = chunked && d.dims.size() == 1;
      if (d.written && count > 0 && (count == n || chunked_1d)) {
        const hid_t mem = H5Screate_simple(1, &count, nullptr);
        const hid_t fsel = H5Scopy(space);
        const hsize_t start = 0;
        if (count < n) H5Sselect_hyperslab(fsel, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
        if (is_string(d.type)) {
          const std::vector<std::string> fallback{"a"};
          const auto& src = d.strings.empty() ? fallback : d.strings;
          if (d.type == Type::vstr) {
            std::vector<const char*> ptrs(count);
            for (hsize_t i = 0; i < count; ++i) ptrs[i] = src[i % src.size()].c_str();
            H5Dwrite(ds, type, mem, fsel, H5P_DEFAULT, ptrs.data());
          } else {
            std::vector<char> buf(count * fixed_len, '\0');
            for (hsize_t i = 0; i < count; ++i) {
              const std::string& s = src[i % src.size()];
              std::memcpy(buf.data() + i * fixed_len, s.data(), s.size());
            }
            H5Dwrite(ds, type, mem, fsel, H5P_DEFAULT, buf.data());
          }
        } else {
          std::vector<double> buf(count);
          for (hsize_t i = 0; i < count; ++i)
            buf[i] = d.values.empty() ? static_cast<double>(i % 7) : d.values[i % d.values.size()];
          H5Dwrite(ds, H5T_NATIVE_DOUBLE, mem, fsel, H5P_DEFAULT, buf.data());
        }
        H5Sclose(fsel);
        H5Sclose(mem);
      }
      H5Dclose(ds);
    }
    H5Tclose(type);
    H5Pclose(dcpl);
    H5Sclose(space);
  }
};

}  // namespace qisa::fuzz
