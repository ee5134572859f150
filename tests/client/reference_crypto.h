// Test-local reference implementations of the legacy primitives (RC4 and
// modular exponentiation), written from the algorithm descriptions and
// independent of OpenSSL, so the tests check gatehouse::legacy and the
// client against something that does not share their code.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace gatehouse::client::testing {

/// RC4 (KSA + PRGA), byte by byte.
class ReferenceRc4 {
 public:
  explicit ReferenceRc4(std::span<const std::uint8_t> key) {
    for (unsigned k = 0; k < 256; ++k) s_[k] = static_cast<std::uint8_t>(k);
    unsigned j = 0;
    for (unsigned k = 0; k < 256; ++k) {
      j = (j + s_[k] + key[k % key.size()]) & 0xffu;
      std::swap(s_[k], s_[j]);
    }
  }
  explicit ReferenceRc4(std::string_view key)
      : ReferenceRc4(std::span<const std::uint8_t>(
            reinterpret_cast<const std::uint8_t*>(key.data()), key.size())) {}

  /// The next keystream byte.
  std::uint8_t next() {
    i_ = (i_ + 1) & 0xffu;
    j_ = (j_ + s_[i_]) & 0xffu;
    std::swap(s_[i_], s_[j_]);
    return s_[(s_[i_] + s_[j_]) & 0xffu];
  }
  /// XORs `data` with the keystream in place.
  void apply(std::span<std::byte> data) {
    for (std::byte& b : data) b ^= std::byte{next()};
  }

 private:
  std::array<std::uint8_t, 256> s_{};
  unsigned i_ = 0;
  unsigned j_ = 0;
};

/// The RC4 key of the legacy protocol, built here rather than by the library.
inline std::string reference_key_string(std::uint32_t key) {
  return "DH" + std::to_string(key);
}

__extension__ using Uint128 = unsigned __int128;

/// base^exponent mod modulus by square-and-multiply in 128-bit arithmetic.
inline std::uint64_t reference_power(std::uint64_t base, std::uint64_t exponent,
                                     std::uint64_t modulus) {
  Uint128 result = 1 % modulus;
  Uint128 square = base % modulus;
  for (; exponent != 0; exponent >>= 1) {
    if ((exponent & 1) != 0) result = result * square % modulus;
    square = square * square % modulus;
  }
  return static_cast<std::uint64_t>(result);
}

inline constexpr std::uint64_t kReferencePrime = 0x7FFFFFC3;
inline constexpr std::uint64_t kReferenceGenerator = 3;

/// The legacy DH power: the wire int32 reduced into [0, p) first.
inline std::uint32_t reference_dh(std::int64_t base, std::uint64_t exponent) {
  std::int64_t reduced = base % static_cast<std::int64_t>(kReferencePrime);
  if (reduced < 0) reduced += static_cast<std::int64_t>(kReferencePrime);
  return static_cast<std::uint32_t>(
      reference_power(static_cast<std::uint64_t>(reduced), exponent, kReferencePrime));
}

}  // namespace gatehouse::client::testing
