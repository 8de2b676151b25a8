#include "io/file_kind.h"

#include "kernels/error.h"

namespace qisa {

FileKind file_kind(const h5::File& f) {
  if (f.has_attr("/", "kind")) {
    const std::string kind = f.attr_string("/", "kind");
    if (kind == "qisa-model") return FileKind::model;
    if (kind == "qisa-checkpoint") return FileKind::checkpoint;
    return FileKind::other;
  }
  if (f.has_attr("/", "format_version") && f.exists("/train/tokens")) return FileKind::corpus;
  return FileKind::other;
}

std::string describe(FileKind k) {
  switch (k) {
    case FileKind::corpus: return "a qisa corpus (written by qisa prepare)";
    case FileKind::model: return "a qisa model file (the final.h5 of qisa train)";
    case FileKind::checkpoint: return "a qisa checkpoint (RUN_DIR/checkpoints/ckpt_<step>.h5)";
    case FileKind::other: break;
  }
  return "an HDF5 file that qisa did not write";
}

void expect_file_kind(const h5::File& f, FileKind expected, const std::string& hint) {
  const FileKind found = file_kind(f);
  if (found == expected) return;
  const std::string what = expected == FileKind::corpus       ? "a qisa corpus"
                           : expected == FileKind::model      ? "a qisa model file"
                           : expected == FileKind::checkpoint ? "a qisa checkpoint"
                                                              : "another file";
  std::string found_text = describe(found);
  if (found == FileKind::other)
    found_text = f.has_attr("/", "kind") ? "an HDF5 file of another kind (kind = \"" + f.attr_string("/", "kind") + "\")"
                                         : "an HDF5 file that qisa did not write (no root attribute 'kind')";
  throw Error("'" + f.path() + "' is " + found_text + ", not " + what, hint);
}

}  // namespace qisa
