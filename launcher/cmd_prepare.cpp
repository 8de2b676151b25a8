// qisa prepare: text files, or the token files of llm.c / nanoGPT, -> HDF5 token corpus
// (io/corpus.h and io/token_import.h do the work).
#include <cstdio>
#include <memory>

#include "io/corpus.h"
#include "io/token_import.h"
#include "kernels/error.h"
#include "launcher/commands.h"
#include "launcher/numbers.h"

namespace qisa::cli {

namespace {

// "\n", "\t", "\r" and "\\" in a --doc-separator, so that shells need no $'...' quoting.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == '\\' ? '\\' : (out += '\\', c);
  }
  return out;
}

struct Args {
  PrepareOptions text;
  std::vector<std::string> llmc, raw_u16;
  std::string tokenizer;  // "" = char for text, gpt2 for token files
  double val_fraction = 0.1;
  std::string doc_separator;
};

// A corpus without a val split is valid (eval --split train reads it), but qisa train evaluates
// on val and refuses it: say so now, not at the first training run.
void note_empty_val(int64_t val_tokens) {
  if (val_tokens > 0) return;
  std::printf("note: the corpus has no validation split: qisa train evaluates on it and will refuse this corpus "
              "(re-run with --val-fraction > 0, e.g. 0.1, to train on it; qisa eval --split train reads it as is)\n");
}

void run(const Args& a, bool val_fraction_given) {
  const int sources = !a.text.inputs.empty() + !a.llmc.empty() + !a.raw_u16.empty();
  QISA_CHECK(sources == 1, "qisa prepare: pass exactly one of --input, --import-llmc, --import-raw-u16",
             "--input for text files; --import-llmc / --import-raw-u16 for token files of llm.c / nanoGPT");
  if (!a.text.inputs.empty()) {
    PrepareOptions o = a.text;
    o.tokenizer = a.tokenizer.empty() ? "char" : a.tokenizer;
    o.val_fraction = a.val_fraction;
    o.doc_separator = unescape(a.doc_separator);
    const PrepareResult r = prepare_corpus(o);
    std::printf("qisa prepare: wrote %s: tokenizer %s, vocab_size %lld, train %lld tokens, val %lld tokens "
                "(%zu input file%s, %lld bytes",
                o.out.c_str(), o.tokenizer.c_str(), static_cast<long long>(r.vocab_size),
                static_cast<long long>(r.train_tokens), static_cast<long long>(r.val_tokens), o.inputs.size(),
                o.inputs.size() == 1 ? "" : "s", static_cast<long long>(r.bytes_read));
    if (o.tokenizer == "gpt2")
      std::printf(", %lld document%s", static_cast<long long>(r.documents), r.documents == 1 ? "" : "s");
    std::printf(")\n");
    note_empty_val(r.val_tokens);
    return;
  }
  QISA_CHECK(a.doc_separator.empty(), "qisa prepare: --doc-separator applies to text (--input), not to token files",
             "token files keep the document separators they were written with");
  ImportOptions o;
  o.format = a.llmc.empty() ? TokenFileFormat::raw_u16 : TokenFileFormat::llmc;
  o.inputs = a.llmc.empty() ? a.raw_u16 : a.llmc;
  o.out = a.text.out;
  o.tokenizer = a.tokenizer.empty() ? "gpt2" : a.tokenizer;
  o.gpt2_dir = a.text.gpt2_dir;
  if (val_fraction_given) o.val_fraction = a.val_fraction;
  const ImportResult r = import_token_files(o);
  std::printf("qisa prepare: wrote %s: imported %zu %s file%s (tokenizer %s, vocab_size %lld): train %lld tokens, "
              "val %lld tokens (",
              o.out.c_str(), o.inputs.size(), to_string(o.format), o.inputs.size() == 1 ? "" : "s", o.tokenizer.c_str(),
              static_cast<long long>(r.vocab_size), static_cast<long long>(r.train_tokens),
              static_cast<long long>(r.val_tokens));
  if (o.val_fraction)
    std::printf("the last %g of the files' tokens is val)\n", *o.val_fraction);
  else
    std::printf("by file name: %lld train, %lld val file%s)\n", static_cast<long long>(r.train_files),
                static_cast<long long>(r.val_files), r.val_files == 1 ? "" : "s");
  note_empty_val(r.val_tokens);
}

}  // namespace

void add_prepare(CLI::App& app) {
  auto a = std::make_shared<Args>();  // owned by the callback, which outlives parsing
  CLI::App* cmd = app.add_subcommand(
      "prepare",
      "Tokenize UTF-8 text files (or import the token files of llm.c / nanoGPT) into an HDF5 corpus "
      "(/train/tokens, /val/tokens, the tokenizer) for qisa train.");
  auto* input = cmd->add_option("--input,-i", a->text.inputs,
                                "UTF-8 text file(s). char: concatenated in the order given (byte for byte, no "
                                "separator); gpt2: each file is a document, <|endoftext|> between documents. Repeat "
                                "the option or list several files.")
                    ->type_name("FILE");
  auto* llmc = cmd->add_option("--import-llmc", a->llmc,
                               "Import llm.c token shards (1024-byte header: magic 20240520, version 1, token count; "
                               "uint16 tokens). Split by file name (*_train_*, *_val_*) unless --val-fraction is given.")
                   ->type_name("FILE.bin");
  auto* raw = cmd->add_option("--import-raw-u16", a->raw_u16,
                              "Import headerless little-endian uint16 token files (nanoGPT's train.bin, val.bin). "
                              "Split by file name unless --val-fraction is given.")
                  ->type_name("FILE.bin");
  input->excludes(llmc)->excludes(raw);
  llmc->excludes(raw);
  cmd->add_option("--out,-o", a->text.out,
                  "Corpus file to write (HDF5, e.g. data/shakespeare.h5). Written atomically: on any error "
                  "nothing is left at this path. An existing file is replaced.")
      ->required()
      ->type_name("CORPUS.h5");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "char (one token per Unicode character, ids sorted by code point, as in the paper; the default "
                  "for text) or gpt2 (GPT-2's byte-level BPE, 50257 tokens; the default and only choice for token "
                  "files, whose ids it names).")
      ->type_name("NAME");
  auto* vf = cmd->add_option("--val-fraction", a->val_fraction,
                             "Fraction of the tokens, taken from the END, that forms the validation split; in [0, 1). "
                             "0 = no validation split. Text: default 0.1. Token files: splits their concatenation "
                             "instead of the file names.")
                 ->type_name("F")
                 ->check(real_in(0, 1));  // finite; 1 itself is refused with the reason by prepare
  cmd->add_option("--gpt2-dir", a->text.gpt2_dir,
                  "Folder with GPT-2's encoder.json and vocab.bpe (default: $QISA_GPT2_DIR, else $QISA_DATA/gpt2, "
                  "else data/gpt2; fetch them with cluster/fetch_gpt2_bpe.sh).")
      ->type_name("DIR");
  cmd->add_option("--doc-separator", a->doc_separator,
                  "gpt2: also split each input file into documents at this string (removed; <|endoftext|> goes "
                  "between documents). \\n, \\t, \\r and \\\\ are understood, e.g. '\\n\\n\\n'.")
      ->type_name("STR");
  cmd->footer(
      "Examples:\n"
      "  qisa prepare --input data/tinyshakespeare.txt --out data/shakespeare.h5\n"
      "  qisa prepare --tokenizer gpt2 --input a.txt b.txt --out data/docs_gpt2.h5\n"
      "  qisa prepare --import-llmc fineweb_train_000001.bin fineweb_val_000000.bin --out data/fineweb.h5");
  cmd->callback([a, vf] { run(*a, vf->count() > 0); });
}

}  // namespace qisa::cli
