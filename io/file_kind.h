// What kind of qisa file an HDF5 file is, so that a reader given the wrong one says what it
// found and what it expected (a model where a corpus belongs must not be answered with "run
// qisa prepare --out" onto the model). Model files and checkpoints carry a root attribute
// `kind`; a corpus has none (format 1 predates it) but has format_version and /train/tokens.
#pragma once
#include <string>

#include "io/hdf5.h"

namespace qisa {

enum class FileKind { corpus, model, checkpoint, other };

FileKind file_kind(const h5::File& f);
// "a qisa corpus (written by qisa prepare)", "a qisa model file (final.h5 of qisa train)", ...
std::string describe(FileKind k);
// Throws unless `f` is of kind `expected`: "'PATH' is a qisa model file ..., not a qisa corpus",
// with `hint`.
void expect_file_kind(const h5::File& f, FileKind expected, const std::string& hint);

}  // namespace qisa
