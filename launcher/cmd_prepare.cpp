// qisa prepare: text files -> HDF5 token corpus (io/corpus.h does the work).
#include <cstdio>
#include <memory>

#include "io/corpus.h"
#include "launcher/commands.h"

namespace qisa::cli {

void add_prepare(CLI::App& app) {
  auto opt = std::make_shared<PrepareOptions>();  // owned by the callback, which outlives parsing
  CLI::App* cmd = app.add_subcommand(
      "prepare",
      "Tokenize UTF-8 text files into an HDF5 corpus (/train/tokens, /val/tokens, /tokenizer/vocab) for qisa train.");
  cmd->add_option("--input,-i", opt->inputs,
                  "UTF-8 text file(s), concatenated in the order given (byte for byte, no separator). "
                  "Repeat the option or list several files.")
      ->required()
      ->type_name("FILE");
  cmd->add_option("--out,-o", opt->out,
                  "Corpus file to write (HDF5, e.g. data/shakespeare.h5). Written atomically: on any error "
                  "nothing is left at this path. An existing file is replaced.")
      ->required()
      ->type_name("CORPUS.h5");
  cmd->add_option("--tokenizer", opt->tokenizer,
                  "Tokenizer. Supported: char (one token per Unicode character, ids sorted by code point, "
                  "as in the paper).")
      ->capture_default_str()
      ->type_name("NAME");
  cmd->add_option("--val-fraction", opt->val_fraction,
                  "Fraction of the tokens, taken from the END of the text, that forms the validation split; "
                  "in [0, 1). 0 = no validation split (qisa train then cannot evaluate).")
      ->capture_default_str()
      ->type_name("F");
  cmd->footer("Example: qisa prepare --input data/tinyshakespeare.txt --out data/shakespeare.h5");
  cmd->callback([opt] {
    const PrepareResult r = prepare_corpus(*opt);
    std::printf("qisa prepare: wrote %s: tokenizer %s, vocab_size %lld, train %lld tokens, val %lld tokens "
                "(%zu input file%s, %lld bytes)\n",
                opt->out.c_str(), opt->tokenizer.c_str(), static_cast<long long>(r.vocab_size),
                static_cast<long long>(r.train_tokens), static_cast<long long>(r.val_tokens), opt->inputs.size(),
                opt->inputs.size() == 1 ? "" : "s", static_cast<long long>(r.bytes_read));
  });
}

}  // namespace qisa::cli
