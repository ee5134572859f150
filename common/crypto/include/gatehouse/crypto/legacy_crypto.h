// The gonet2 legacy key exchange and stream cipher (shared/protocol.md
// section 3): 31-bit Diffie-Hellman (p = 0x7FFFFFC3, g = 3) and RC4 keyed
// with "DH" + the shared key in decimal. Broken cryptography, kept only so
// old clients keep working. The primitives are OpenSSL's (BN_mod_exp, RC4);
// nothing here implements a cipher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace gatehouse::legacy {

inline constexpr std::uint32_t kDhPrime = 0x7FFF'FFC3u;
inline constexpr std::uint32_t kDhGenerator = 3;

/// A fresh random DH secret exponent (from the OS CSPRNG).
std::uint64_t dh_random_secret();
/// (base mod p)^exponent mod p. `base` is the wire int32, negative values
/// reduced into [0, p) the way gonet2's math/big did.
std::uint32_t dh_power(std::int64_t base, std::uint64_t exponent);
/// g^secret mod p: the public value sent to the peer.
inline std::uint32_t dh_public(std::uint64_t secret) {
  return dh_power(kDhGenerator, secret);
}

/// "DH" followed by the key in decimal: the RC4 key bytes.
std::string rc4_key_string(std::uint32_t shared_key);

/// RC4 keystream state, packed: OpenSSL's RC4_KEY holds the same bytes in
/// 32-bit words (1,032 bytes); packed it is 258 and every session keeps two
/// in shared memory (docs/benchmarks.md, issue 18). apply() widens it into
/// an RC4_KEY on the stack, runs OpenSSL's RC4 and packs it back. Any bytes
/// are a valid state (OpenSSL indexes its table with the words themselves:
/// unpacked, none is over 0xff).
struct Rc4State {
  std::uint8_t x;
  std::uint8_t y;
  std::uint8_t data[256];

  /// Keys the stream with rc4_key_string(shared_key).
  void init(std::uint32_t shared_key) noexcept;
  /// XORs `n` bytes with the keystream, advancing it; in == out is allowed.
  void apply(const std::byte* in, std::byte* out, std::size_t n) noexcept;
};

}  // namespace gatehouse::legacy
