#include "io/bpe.h"

#include <algorithm>
#include <array>
#include <functional>

#include "io/gpt2_pretokenizer.h"
#include "io/tokenizer.h"
#include "kernels/error.h"

namespace qisa {

namespace {

constexpr size_t kCacheMaxEntries = size_t{1} << 20;  // ~100 MB at most before it is dropped
constexpr size_t kCacheMaxPiece = 256;  // longer pieces (base64, long digit runs) rarely repeat
constexpr const char* kEndOfTextString = "<|endoftext|>";

// bytes_to_unicode of GPT-2: printable Latin-1 bytes stand for themselves, the other 68 bytes
// for U+0100.. in byte order (so no token string holds a space, a control or a newline).
struct ByteAlphabet {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 0x144> to_byte{};  // every character used is < U+0144; -1: not in it
  ByteAlphabet() {
    to_byte.fill(-1);
    char32_t extra = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? static_cast<char32_t>(b) : extra++;
      to_byte[to_char[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

// The bytes a token string stands for; throws unless every character is in the alphabet.
std::string token_bytes(const std::string& token, const std::string& what, const std::string& source) {
  const char* hint = "the vocabulary is not GPT-2's byte-level format: use encoder.json from cluster/fetch_gpt2_bpe.sh";
  QISA_CHECK(!token.empty(), source + ": " + what + " is an empty string", hint);
  std::string out;
  for (size_t pos = 0; pos < token.size();) {
    char32_t cp;
    const size_t len = decode_utf8_at(token, pos, &cp);
    QISA_CHECK(len > 0 && cp < alphabet().to_byte.size() && alphabet().to_byte[cp] >= 0,
               source + ": " + what + " " + q(token) + " has a character outside the byte-level alphabet at byte " +
                   std::to_string(pos),
               hint);
    out += static_cast<char>(alphabet().to_byte[cp]);
    pos += len;
  }
  return out;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32 | static_cast<uint32_t>(b);
}

}  // namespace

char32_t gpt2_byte_char(uint8_t byte) { return alphabet().to_char[byte]; }

Gpt2Bpe::Gpt2Bpe(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
                 const std::string& source) {
  QISA_CHECK(!tokens.empty() && tokens.size() < (size_t{1} << 31), source + " has " + std::to_string(tokens.size()) + " tokens",
             "use GPT-2's encoder.json (cluster/fetch_gpt2_bpe.sh)");
  std::unordered_map<std::string, int32_t> id_of;  // token string -> id
  id_of.reserve(tokens.size());
  offsets_.reserve(tokens.size() + 1);
  for (size_t id = 0; id < tokens.size(); ++id) {
    offsets_.push_back(static_cast<uint32_t>(bytes_.size()));
    const std::string& t = tokens[id];
    bytes_ += token_bytes(t, "token " + std::to_string(id), source);
    const bool fresh = id_of.emplace(t, static_cast<int32_t>(id)).second;
    QISA_CHECK(fresh, source + ": token " + std::to_string(id) + " " + q(t) + " appears twice",
               "the vocabulary is corrupt: fetch it again (cluster/fetch_gpt2_bpe.sh)");
    if (t == kEndOfTextString) end_of_text_ = static_cast<int32_t>(id);
  }
  offsets_.push_back(static_cast<uint32_t>(bytes_.size()));
  for (int b = 0; b < 256; ++b) {
    const auto it = id_of.find(encode_utf8(gpt2_byte_char(static_cast<uint8_t>(b))));
    QISA_CHECK(it != id_of.end(), source + " has no token for byte " + std::to_string(b),
               "byte-level BPE needs all 256 single-byte tokens: use GPT-2's encoder.json");
    byte_id_[b] = it->second;
  }
  // formed[id]: the rank of the merge that makes token id (-1: a single byte, never merged).
  std::vector<int32_t> formed(tokens.size(), INT32_MAX);
  for (int b = 0; b < 256; ++b) formed[static_cast<size_t>(byte_id_[b])] = -1;
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& line = merges[r];
    const std::string what = source + ": merge " + std::to_string(r) + " " + q(line);
    const size_t sp = line.find(' ');
    QISA_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() && line.find(' ', sp + 1) == std::string::npos,
               what + " is not two tokens separated by one space", "use GPT-2's vocab.bpe (cluster/fetch_gpt2_bpe.sh)");
    const std::string first = line.substr(0, sp), second = line.substr(sp + 1);
    int32_t ids[3];
    const std::string parts[3] = {first, second, first + second};
    for (int k = 0; k < 3; ++k) {
      const auto it = id_of.find(parts[k]);
      QISA_CHECK(it != id_of.end(), what + ": " + q(parts[k]) + " is not a token of the vocabulary",
                 "vocab.bpe and encoder.json must come from the same tokenizer (cluster/fetch_gpt2_bpe.sh)");
      ids[k] = it->second;
    }
    // Merging by a heap of (rank, position) equals the reference's "merge every occurrence of
    // the best pair, then look again" only when merges never use a token formed later.
    for (int k = 0; k < 2; ++k)
      QISA_CHECK(formed[static_cast<size_t>(ids[k])] < static_cast<int32_t>(r),
                 what + " uses " + q(parts[k]) + " before a merge forms it",
                 "merges must be in the order BPE training wrote them: use GPT-2's vocab.bpe");
    const bool fresh = merges_.emplace(pair_key(ids[0], ids[1]), Merge{static_cast<int32_t>(r), ids[2]}).second;
    QISA_CHECK(fresh, what + " appears twice", "the merges are corrupt: fetch them again (cluster/fetch_gpt2_bpe.sh)");
    auto& f = formed[static_cast<size_t>(ids[2])];
    f = std::min(f, static_cast<int32_t>(r));
  }
}

const Gpt2Bpe::Merge* Gpt2Bpe::find_merge(int32_t a, int32_t b) const {
  const auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void Gpt2Bpe::merge_piece(std::string_view piece, std::vector<int32_t>* out) {
  QISA_CHECK(piece.size() < (size_t{1} << 31), "a piece of " + std::to_string(piece.size()) + " bytes is too long for BPE",
             "split the text: 2 GiB without a space or punctuation is not text");
  const int n = static_cast<int>(piece.size());
  sym_.resize(static_cast<size_t>(n));
  next_.resize(static_cast<size_t>(n));
  prev_.resize(static_cast<size_t>(n));
  heap_.clear();
  const auto push = [&](int left) {
    if (const Merge* m = find_merge(sym_[left], sym_[next_[left]])) {
      heap_.push_back(static_cast<uint64_t>(m->rank) << 32 | static_cast<uint32_t>(left));
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    }
  };
  for (int i = 0; i < n; ++i) {
    sym_[i] = byte_id_[static_cast<unsigned char>(piece[static_cast<size_t>(i)])];
    next_[i] = i + 1 < n ? i + 1 : -1;
    prev_[i] = i - 1;
  }
  for (int i = 0; i + 1 < n; ++i) push(i);
  // Lowest rank first, leftmost first among equal ranks: the reference merges every
  // non-overlapping occurrence of the best pair left to right; the pairs a merge creates rank
  // later (checked in the constructor), so they cannot cut in. Entries whose pair has changed
  // since they were pushed are skipped.
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    const uint64_t top = heap_.back();
    heap_.pop_back();
    const int left = static_cast<int>(top & 0xFFFFFFFFu);
    const int right = next_[left];
    if (sym_[left] < 0 || right < 0) continue;
    const Merge* m = find_merge(sym_[left], sym_[right]);
    if (m == nullptr || static_cast<uint64_t>(m->rank) != top >> 32) continue;
    sym_[left] = m->merged;
    sym_[right] = -1;
    next_[left] = next_[right];
    if (next_[left] >= 0) prev_[next_[left]] = left;
    if (prev_[left] >= 0) push(prev_[left]);
    if (next_[left] >= 0) push(left);
  }
  for (int i = 0; i >= 0; i = next_[i]) out->push_back(sym_[i]);
}

void Gpt2Bpe::encode(std::string_view text, std::vector<int32_t>* out) {
  Gpt2Pretokenizer pieces(text);
  std::string_view piece;
  while (pieces.next(&piece)) {
    if (piece.size() == 1) {  // one byte: its token (no cache traffic for ",", "\n", ...)
      out->push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
      continue;
    }
    if (const auto it = cache_.find(piece); it != cache_.end()) {
      const int32_t* ids = cache_ids_.data() + it->second.offset;
      out->insert(out->end(), ids, ids + it->second.count);
      continue;
    }
    const size_t before = out->size();
    merge_piece(piece, out);
    if (piece.size() > kCacheMaxPiece) continue;
    if (cache_.size() >= kCacheMaxEntries) {
      cache_.clear();
      cache_ids_.clear();
    }
    cache_.emplace(std::string(piece), Span{static_cast<uint32_t>(cache_ids_.size()),
                                            static_cast<uint32_t>(out->size() - before)});
    cache_ids_.insert(cache_ids_.end(), out->begin() + static_cast<std::ptrdiff_t>(before), out->end());
  }
}

std::vector<int32_t> Gpt2Bpe::encode(std::string_view text) {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  encode(text, &ids);
  return ids;
}

std::string Gpt2Bpe::decode_bytes(const int32_t* ids, size_t n) const {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= size()) {
      out += "\xEF\xBF\xBD";
      continue;
    }
    const auto id = static_cast<size_t>(ids[i]);
    out.append(bytes_, offsets_[id], offsets_[id + 1] - offsets_[id]);
  }
  return out;
}

std::string Gpt2Bpe::decode(const int32_t* ids, size_t n) const { return replace_invalid_utf8(decode_bytes(ids, n)); }

}  // namespace qisa
