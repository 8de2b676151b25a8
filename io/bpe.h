// GPT-2's byte-level BPE (OpenAI's encoder.py; token for token what the npm package
// gpt-3-encoder produces): text -> pre-tokenizer pieces (io/gpt2_pretokenizer.h) -> UTF-8
// bytes -> byte-level symbols -> merges by rank. Works with any vocabulary in GPT-2's format
// (encoder.json's token strings and vocab.bpe's merges); the GPT-2 one has 50257 tokens.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qisa {

// GPT-2's bytes_to_unicode: the printable character that stands for each byte in token strings.
char32_t gpt2_byte_char(uint8_t byte);

class Gpt2Bpe {
 public:
  static constexpr int32_t kEndOfText = 50256;  // "<|endoftext|>" in GPT-2's vocabulary
  static constexpr int64_t kGpt2VocabSize = 50257;

  // tokens: the token strings (index = id) in the byte-level alphabet, as the keys of
  // encoder.json; merges: vocab.bpe's merge lines "first second", by rank. Every byte's
  // character must be a token, every merge's parts and result must be tokens, and a merge may
  // only use tokens formed by earlier merges (the order BPE training writes them in). Errors
  // name `source` and the entry.
  Gpt2Bpe(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
          const std::string& source = "the BPE vocabulary");

  int64_t size() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  // The id of "<|endoftext|>", or -1 when the vocabulary has none.
  int32_t end_of_text() const { return end_of_text_; }

  // Appends the ids of `text`, which must be valid UTF-8 (else qisa::Error naming the byte
  // offset). "<|endoftext|>" in the text is ordinary text, as in the npm encoder: only a caller
  // that separates documents inserts end_of_text(). Not thread-safe: pieces seen before come
  // from a cache.
  void encode(std::string_view text, std::vector<int32_t>* out);
  std::vector<int32_t> encode(std::string_view text);

  // The bytes that the ids stand for; ids outside the vocabulary give U+FFFD's bytes.
  std::string decode_bytes(const int32_t* ids, size_t n) const;
  // decode_bytes read as UTF-8 as the npm decoder's TextDecoder does: each maximal ill-formed
  // subsequence becomes one U+FFFD (a leading BOM is kept, which TextDecoder would drop).
  std::string decode(const int32_t* ids, size_t n) const;

  size_t cache_entries() const { return cache_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;  // id of first+second
  };
  struct Span {
    uint32_t offset, count;  // ids in cache_ids_
  };
  struct ViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  const Merge* find_merge(int32_t a, int32_t b) const;
  // BPE of one piece (its raw bytes), appended to out.
  void merge_piece(std::string_view piece, std::vector<int32_t>* out);

  std::string bytes_;             // every token's bytes, back to back
  std::vector<uint32_t> offsets_; // token id's bytes: bytes_[offsets_[id], offsets_[id + 1])
  int32_t byte_id_[256];          // the single-byte token of each byte
  int32_t end_of_text_ = -1;
  std::unordered_map<uint64_t, Merge> merges_;  // (first << 32 | second) -> rank, result
  // Word cache: piece bytes -> its ids. Cleared when it grows past a bound, so that a long
  // stream of distinct pieces cannot take unbounded memory.
  std::unordered_map<std::string, Span, ViewHash, std::equal_to<>> cache_;
  std::vector<int32_t> cache_ids_;
  // Scratch of merge_piece: symbols as a linked list, and a min-heap of (rank << 32 | position).
  std::vector<int32_t> sym_, next_, prev_;
  std::vector<uint64_t> heap_;
};

}  // namespace qisa
