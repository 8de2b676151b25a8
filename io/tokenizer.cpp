#include "io/tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "kernels/error.h"

namespace qisa {

namespace {

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// "U+00E9 'é'" for messages (the glyph only when it is printable).
std::string describe(char32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
  std::string s = buf;
  if (cp >= 0x20 && cp != 0x7F) s += " '" + encode_utf8(cp) + "'";
  return s;
}

}  // namespace

size_t decode_utf8_at(std::string_view text, size_t pos, char32_t* cp) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) { *cp = b0; return 1; }
  size_t len;
  char32_t min;  // smallest code point that needs `len` bytes: anything below is overlong
  if ((b0 & 0xE0) == 0xC0) { len = 2; min = 0x80; *cp = b0 & 0x1F; }
  else if ((b0 & 0xF0) == 0xE0) { len = 3; min = 0x800; *cp = b0 & 0x0F; }
  else if ((b0 & 0xF8) == 0xF0) { len = 4; min = 0x10000; *cp = b0 & 0x07; }
  else return 0;  // a stray continuation byte, or 0xF8..0xFF
  if (pos + len > text.size()) return 0;  // truncated at the end of the text
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(text[pos + i]);
    if (!is_continuation(b)) return 0;
    *cp = (*cp << 6) | (b & 0x3F);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
  return len;
}

std::string replace_invalid_utf8(std::string_view bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(bytes.size());
  const size_t n = bytes.size();
  for (size_t pos = 0; pos < n;) {
    const auto b0 = static_cast<unsigned char>(bytes[pos]);
    if (b0 < 0x80) {
      out += static_cast<char>(b0);
      ++pos;
      continue;
    }
    // The WHATWG state machine: the lead byte fixes the length and the range of the first
    // continuation byte (which excludes overlong forms, surrogates and > U+10FFFF); the
    // subsequence ends at the first byte out of range, which is then read again as a lead.
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 1;
    else if (b0 >= 0xE0 && b0 <= 0xEF) { need = 2; if (b0 == 0xE0) lo = 0xA0; if (b0 == 0xED) hi = 0x9F; }
    else if (b0 >= 0xF0 && b0 <= 0xF4) { need = 3; if (b0 == 0xF0) lo = 0x90; if (b0 == 0xF4) hi = 0x8F; }
    else { out += kReplacement; ++pos; continue; }
    size_t k = 1;
    for (; k <= need && pos + k < n; ++k) {
      const auto b = static_cast<unsigned char>(bytes[pos + k]);
      if (b < lo || b > hi) break;
      lo = 0x80;
      hi = 0xBF;
    }
    if (k == need + 1) out.append(bytes.substr(pos, k));
    else out += kReplacement;
    pos += k;
  }
  return out;
}

std::optional<std::vector<char32_t>> decode_utf8(std::string_view text, size_t* bad_offset) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    char32_t cp;
    const size_t len = decode_utf8_at(text, pos, &cp);
    if (len == 0) {
      if (bad_offset) *bad_offset = pos;
      return std::nullopt;
    }
    out.push_back(cp);
    pos += len;
  }
  return out;
}

std::string encode_utf8(char32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    throw Error("encode_utf8: " + std::to_string(static_cast<uint32_t>(cp)) + " is not a Unicode scalar value",
                "this is a bug in the caller");
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

CharTokenizer CharTokenizer::from_text(std::string_view text) {
  size_t bad = 0;
  auto cps = decode_utf8(text, &bad);
  if (!cps)
    throw Error("text is not valid UTF-8: bad byte at offset " + std::to_string(bad),
                "convert the text to UTF-8 (e.g. iconv -f latin1 -t utf-8)");
  return from_code_points(std::move(*cps));
}

CharTokenizer CharTokenizer::from_code_points(std::vector<char32_t> code_points) {
  std::sort(code_points.begin(), code_points.end());
  code_points.erase(std::unique(code_points.begin(), code_points.end()), code_points.end());
  std::vector<std::string> vocab;
  vocab.reserve(code_points.size());
  for (char32_t cp : code_points) vocab.push_back(encode_utf8(cp));
  return CharTokenizer(std::move(vocab));
}

CharTokenizer::CharTokenizer(std::vector<std::string> vocab) : vocab_(std::move(vocab)) {
  code_points_.reserve(vocab_.size());
  for (size_t id = 0; id < vocab_.size(); ++id) {
    const std::string& v = vocab_[id];
    char32_t cp = 0;
    const size_t len = v.empty() ? 0 : decode_utf8_at(v, 0, &cp);
    if (len == 0 || len != v.size())
      throw Error("char vocabulary entry " + std::to_string(id) + " is not exactly one UTF-8 character",
                  "the vocabulary is corrupt: re-run qisa prepare");
    // Ids must follow code-point order: that is what makes id_of a binary search and keeps
    // ids identical to the paper's sorted(set(text)).
    if (!code_points_.empty() && cp <= code_points_.back())
      throw Error("char vocabulary entry " + std::to_string(id) + " (" + describe(cp) +
                      ") is not after entry " + std::to_string(id - 1) + " (" + describe(code_points_.back()) +
                      "): the vocabulary must be sorted by code point without duplicates",
                  "the vocabulary is corrupt: re-run qisa prepare");
    code_points_.push_back(cp);
  }
}

int32_t CharTokenizer::id_of(char32_t cp) const {
  auto it = std::lower_bound(code_points_.begin(), code_points_.end(), cp);
  if (it == code_points_.end() || *it != cp) return -1;
  return static_cast<int32_t>(it - code_points_.begin());
}

std::vector<int32_t> CharTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    char32_t cp;
    const size_t len = decode_utf8_at(text, pos, &cp);
    if (len == 0)
      throw Error("text is not valid UTF-8: bad byte at offset " + std::to_string(pos),
                  "convert the text to UTF-8 (e.g. iconv -f latin1 -t utf-8)");
    const int32_t id = id_of(cp);
    if (id < 0)
      throw Error("character " + describe(cp) + " at byte offset " + std::to_string(pos) +
                      " is not in the vocabulary (" + std::to_string(vocab_.size()) + " characters)",
                  "the char tokenizer only knows characters of the training corpus");
    ids.push_back(id);
    pos += len;
  }
  return ids;
}

std::string CharTokenizer::decode(const std::vector<int32_t>& ids) const {
  static constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= 0 && static_cast<size_t>(id) < vocab_.size()) out += vocab_[static_cast<size_t>(id)];
    else out += kReplacement;
  }
  return out;
}

}  // namespace qisa
