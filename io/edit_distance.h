// Levenshtein distance with unit costs, over any sequences of comparable items (characters
// for CER and typo suggestions, words for WER).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace qisa {

template <typename Seq>
int64_t edit_distance(const Seq& a, const Seq& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int64_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min(sub, std::min(prev[j], cur[j - 1]) + 1);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace qisa
