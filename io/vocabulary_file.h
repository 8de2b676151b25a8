// How corpora, model files and checkpoints store a Vocabulary (io/vocabulary.h):
//   char: /tokenizer/vocab     strings, index = id (each file kind writes them as it always has)
//   gpt2: /tokenizer/encoder   uint8: the token strings in id order, each followed by '\n'
//         /tokenizer/merges    uint8: the merge lines in rank order, each followed by '\n'
// The byte-level alphabet has no '\n', so the newline form is exact (and is vocab.bpe's own
// layout). The uint8 datasets are chunked and fletcher32-checksummed: a checkpoint must not
// read a byte outside a checksum (variable-length strings live in the unchecksummed global
// heap), and they take 1.5 MB where fixed-length strings would take 26 MB.
#pragma once
#include "io/hdf5.h"
#include "io/vocabulary.h"

namespace qisa {

void write_bpe_tables(h5::File& f, const Vocabulary& v);
// The gpt2 tables when present (tokenizer "gpt2"), else /tokenizer/vocab (tokenizer "char"),
// else an empty Vocabulary. A lookup that fails (damaged metadata) throws.
Vocabulary read_stored_vocabulary(const h5::File& f);

}  // namespace qisa
