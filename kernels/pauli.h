// Packing Pauli strings for the fast measurement path (SPEC §1.2). A string of n letters
// from {I,X,Y,Z}; letter k acts on qubit k, and qubit 0 is the MOST significant bit of an
// amplitude index, so letter k sets bit (n-1-k) of the masks.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/backend.h"

namespace qisa {

// Longest string a PauliTerm can hold (32-bit masks, kept signed-safe).
inline constexpr int kMaxPauliQubits = 31;

// Pack one string. Throws qisa::Error (naming the string) unless it has 1..31 letters,
// each one of I, X, Y, Z (upper case).
PauliTerm pack_pauli(std::string_view letters);

// Pack a list of strings that must all have exactly n_qubits letters.
std::vector<PauliTerm> pack_paulis(const std::vector<std::string>& strings, int n_qubits);

// The letters back from a packed term of n_qubits letters (inverse of pack_pauli).
std::string unpack_pauli(const PauliTerm& term, int n_qubits);

// Throws qisa::Error unless every term fits n_qubits (masks below 2^n_qubits) and its sign and
// y_count agree with its masks: the check the ops run on what the caller uploaded.
void validate_pauli_terms(const PauliTerm* terms, size_t count, int n_qubits);

// Draw the Pauli strings of one block (SPEC §1.2): each letter is I with probability
// p_identity, else X, Y or Z uniformly; the all-I string is redrawn. A pure function of
// (seed, layer), so the same model seed always gives the same strings.
std::vector<std::string> draw_pauli_strings(uint64_t seed, int layer, int H, int D, int n_qubits,
                                            double p_identity);

}  // namespace qisa
