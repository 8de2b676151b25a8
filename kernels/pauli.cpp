#include "kernels/pauli.h"

#include <bit>

#include "kernels/error.h"
#include "kernels/philox.h"

namespace qisa {

PauliTerm pack_pauli(std::string_view letters) {
  const int n = static_cast<int>(letters.size());
  QISA_CHECK(n >= 1 && n <= kMaxPauliQubits,
             "Pauli string '" + std::string(letters) + "' has " + std::to_string(n) + " letters",
             "a Pauli string has 1.." + std::to_string(kMaxPauliQubits) + " letters (one per qubit)");
  PauliTerm t{0, 0, 0, 0};
  for (int k = 0; k < n; ++k) {
    const uint32_t bit = 1u << (n - 1 - k);  // qubit 0 = most significant bit
    switch (letters[k]) {
      case 'I': break;
      case 'X': t.flip |= bit; break;
      case 'Z': t.phase |= bit; break;
      case 'Y': t.flip |= bit; t.phase |= bit; ++t.y_count; break;
      default:
        throw Error("Pauli string '" + std::string(letters) + "' has letter '" + std::string(1, letters[k]) +
                        "' at position " + std::to_string(k),
                    "letters must be I, X, Y or Z (upper case)");
    }
  }
  // Re<u|P|u> for real u: i^y (-1)^... is real only for even y; y%4==2 flips the sign.
  t.sign = (t.y_count % 2 != 0) ? 0 : (t.y_count % 4 == 0 ? 1 : -1);
  return t;
}

std::vector<PauliTerm> pack_paulis(const std::vector<std::string>& strings, int n_qubits) {
  std::vector<PauliTerm> out;
  out.reserve(strings.size());
  for (const auto& s : strings) {
    QISA_CHECK(static_cast<int>(s.size()) == n_qubits,
               "Pauli string '" + s + "' has " + std::to_string(s.size()) + " letters, expected " +
                   std::to_string(n_qubits),
               "every string of a model has n_qubits = ceil(log2(n_embd)) letters");
    out.push_back(pack_pauli(s));
  }
  return out;
}

std::string unpack_pauli(const PauliTerm& term, int n_qubits) {
  std::string s(static_cast<size_t>(n_qubits), 'I');
  for (int k = 0; k < n_qubits; ++k) {
    const uint32_t bit = 1u << (n_qubits - 1 - k);
    const bool f = term.flip & bit, p = term.phase & bit;
    s[k] = f ? (p ? 'Y' : 'X') : (p ? 'Z' : 'I');
  }
  return s;
}

void validate_pauli_terms(const PauliTerm* terms, size_t count, int n_qubits) {
  QISA_CHECK(n_qubits >= 1 && n_qubits <= kMaxPauliQubits, "n_qubits is " + std::to_string(n_qubits),
             "use 1.." + std::to_string(kMaxPauliQubits) + " qubits");
  QISA_CHECK(count == 0 || terms != nullptr, "Pauli terms pointer is null", "upload the packed strings first");
  const uint32_t limit = (n_qubits >= 32) ? 0xFFFFFFFFu : ((1u << n_qubits) - 1u);
  for (size_t i = 0; i < count; ++i) {
    const PauliTerm& t = terms[i];
    const int y = std::popcount(t.flip & t.phase);
    const int sign = (y % 2 != 0) ? 0 : (y % 4 == 0 ? 1 : -1);
    QISA_CHECK((t.flip & ~limit) == 0 && (t.phase & ~limit) == 0 && t.y_count == y && t.sign == sign,
               "Pauli term " + std::to_string(i) + " (flip " + std::to_string(t.flip) + ", phase " +
                   std::to_string(t.phase) + ", sign " + std::to_string(t.sign) + ", y_count " +
                   std::to_string(t.y_count) + ") is not a packed string of " + std::to_string(n_qubits) + " letters",
               "pack the strings with qisa::pack_pauli and pass the model's n_qubits");
  }
}

namespace {
constexpr uint32_t kPauliStream = 0x50415531u;  // "PAU1": the Philox stream of the strings
}  // namespace

std::vector<std::string> draw_pauli_strings(uint64_t seed, int layer, int H, int D, int n_qubits,
                                            double p_identity) {
  static const char kXYZ[3] = {'X', 'Y', 'Z'};
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(H) * D);
  for (int s = 0; s < H * D; ++s) {
    for (uint64_t attempt = 0;; ++attempt) {
      std::string p(static_cast<size_t>(n_qubits), 'I');
      for (int k = 0; k < n_qubits; ++k) {
        const uint64_t index = ((static_cast<uint64_t>(s) << 20) + attempt) * 64 + static_cast<uint64_t>(k);
        const double u = philox_uniform_double(seed, kPauliStream, static_cast<uint32_t>(layer), index);
        if (u >= p_identity) {
          const int which = static_cast<int>((u - p_identity) / (1.0 - p_identity) * 3.0);
          p[k] = kXYZ[which > 2 ? 2 : which];
        }
      }
      if (p.find_first_not_of('I') != std::string::npos) {
        out.push_back(std::move(p));
        break;
      }
      QISA_CHECK(attempt < (1u << 20), "could not draw a non-identity Pauli string",
                 "pauli_identity_prob is too close to 1");
    }
  }
  return out;
}

}  // namespace qisa
