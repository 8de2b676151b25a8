#include "io/gpt2_pretokenizer.h"

#include <algorithm>
#include <array>
#include <string>

#include "io/tokenizer.h"
#include "io/unicode_tables.h"
#include "kernels/error.h"

namespace qisa {

namespace {

template <size_t N>
bool in_ranges(const char32_t (&ranges)[N][2], char32_t cp) {
  // First range whose end is >= cp; cp is inside when that range starts at or before it.
  const auto* it = std::lower_bound(std::begin(ranges), std::end(ranges), cp,
                                    [](const char32_t(&r)[2], char32_t c) { return r[1] < c; });
  return it != std::end(ranges) && (*it)[0] <= cp;
}

CharClass classify(char32_t cp) {
  if (in_ranges(unicode::kJsSpaceRanges, cp)) return CharClass::space;
  if (in_ranges(unicode::kLetterRanges, cp)) return CharClass::letter;
  if (in_ranges(unicode::kNumberRanges, cp)) return CharClass::number;
  return CharClass::other;
}

// The Basic Multilingual Plane in one 64 KiB table: text is nearly all BMP, and a lookup is
// much cheaper than three binary searches (CJK text would otherwise pay them per character).
const std::array<CharClass, 0x10000>& bmp_table() {
  static const auto table = [] {
    std::array<CharClass, 0x10000> t{};
    for (char32_t cp = 0; cp < 0x10000; ++cp) t[cp] = classify(cp);
    return t;
  }();
  return table;
}

}  // namespace

CharClass gpt2_char_class(char32_t cp) { return cp < 0x10000 ? bmp_table()[cp] : classify(cp); }

size_t Gpt2Pretokenizer::read(size_t pos, char32_t* cp, CharClass* cls) const {
  static const std::array<CharClass, 0x10000>& bmp = bmp_table();
  const auto b = static_cast<unsigned char>(text_[pos]);
  if (b < 0x80) {
    *cp = b;
    *cls = bmp[b];
    return 1;
  }
  const size_t len = decode_utf8_at(text_, pos, cp);
  QISA_CHECK(len > 0, "text is not valid UTF-8: bad byte at offset " + std::to_string(pos),
             "convert the text to UTF-8 (e.g. iconv -f latin1 -t utf-8)");
  *cls = *cp < 0x10000 ? bmp[*cp] : classify(*cp);
  return len;
}

size_t Gpt2Pretokenizer::run_end(size_t pos, CharClass cls) const {
  char32_t cp;
  CharClass c;
  while (pos < text_.size()) {
    const size_t len = read(pos, &cp, &c);
    if (c != cls) break;
    pos += len;
  }
  return pos;
}

bool Gpt2Pretokenizer::next(std::string_view* piece) {
  const size_t n = text_.size(), start = pos_;
  if (start >= n) return false;
  char32_t cp;
  CharClass cls;
  const size_t len = read(start, &cp, &cls);
  size_t end;
  if (cp == U'\'' && start + 1 < n) {
    // 's|'t|'re|'ve|'m|'ll|'d (tried first, lowercase only)
    const char a = text_[start + 1], b = start + 2 < n ? text_[start + 2] : '\0';
    if (a == 's' || a == 't' || a == 'm' || a == 'd') {
      pos_ = start + 2;
      *piece = text_.substr(start, 2);
      return true;
    }
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
      pos_ = start + 3;
      *piece = text_.substr(start, 3);
      return true;
    }
  }
  if (cls != CharClass::space) {
    // \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+ : a run of one class
    end = run_end(start + len, cls);
  } else {
    CharClass next_cls = CharClass::space;
    char32_t next_cp = 0;
    const size_t next_len = (cp == U' ' && start + 1 < n) ? read(start + 1, &next_cp, &next_cls) : 0;
    if (next_len > 0 && next_cls != CharClass::space) {
      // " ?\p{L}+" etc.: one space (U+0020 only) glued to the run that follows it
      end = run_end(start + 1 + next_len, next_cls);
    } else {
      // \s+(?!\S) | \s+ : the whitespace run, less its last character when a non-space
      // follows and the run is longer than one (that character then starts the next piece,
      // e.g. "a   b" -> "a", "  ", " b").
      size_t last = start;
      end = start + len;
      CharClass c;
      while (end < n) {
        const size_t l = read(end, &cp, &c);
        if (c != CharClass::space) break;
        last = end;
        end += l;
      }
      if (end < n && last > start) end = last;
    }
  }
  pos_ = end;
  *piece = text_.substr(start, end - start);
  return true;
}

std::vector<std::string_view> gpt2_pieces(std::string_view text) {
  std::vector<std::string_view> out;
  Gpt2Pretokenizer p(text);
  std::string_view piece;
  while (p.next(&piece)) out.push_back(piece);
  return out;
}

}  // namespace qisa
