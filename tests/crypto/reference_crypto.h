// Test-local reference implementations of the legacy primitives (RC4 and
// modular exponentiation), written from the algorithm descriptions and
// independent of OpenSSL, so the tests check gatehouse::legacy and the
// client against something that does not share their code.
//
// For the modern mode the primitives (X25519, BLAKE2b, ChaCha20-Poly1305)
// are libsodium's raw ones, but the construction around them (which hash
// input, which half is which key, the nonce layout, the tag placement) is
// written here from docs/protocol-modern.md, not taken from gatehouse::modern.
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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

/// The modern session keys as docs/protocol-modern.md derives them:
/// K = BLAKE2b-512(X25519(own_secret, peer) || C || S); to_client = K[0..32),
/// to_gateway = K[32..64).
struct ReferenceModernKeys {
  std::array<std::uint8_t, 32> to_client{};
  std::array<std::uint8_t, 32> to_gateway{};
};
inline ReferenceModernKeys reference_modern_keys(
    const std::array<std::uint8_t, 32>& own_secret, const std::array<std::uint8_t, 32>& peer_public,
    const std::array<std::uint8_t, 32>& client_public,
    const std::array<std::uint8_t, 32>& gateway_public) {
  if (sodium_init() < 0) throw std::runtime_error("sodium_init");
  std::uint8_t q[32];
  if (crypto_scalarmult(q, own_secret.data(), peer_public.data()) != 0) {
    throw std::runtime_error("reference X25519: low-order point");
  }
  std::uint8_t input[96];
  std::memcpy(input, q, 32);
  std::memcpy(input + 32, client_public.data(), 32);
  std::memcpy(input + 64, gateway_public.data(), 32);
  std::uint8_t k[64];
  crypto_generichash(k, sizeof k, input, sizeof input, nullptr, 0);
  ReferenceModernKeys keys;
  std::memcpy(keys.to_client.data(), k, 32);
  std::memcpy(keys.to_gateway.data(), k + 32, 32);
  return keys;
}

/// Version 2 (docs/protocol-modern.md, "Version 2"), from the page's
/// formulas: key_id = BLAKE2b-512(S)[0..8);
/// th = BLAKE2b-512("gatehouse modern v2" || S || key_id || E_c || aead_asked || E_s || aead);
/// prk = BLAKE2b-512(key = ee || es, th); each key BLAKE2b-256(key = prk, label).
using Bytes32 = std::array<std::uint8_t, 32>;
inline std::array<std::uint8_t, 8> reference_key_id(const Bytes32& gateway_static) {
  if (sodium_init() < 0) throw std::runtime_error("sodium_init");
  std::uint8_t hash[64];
  crypto_generichash(hash, sizeof hash, gateway_static.data(), 32, nullptr, 0);
  std::array<std::uint8_t, 8> id{};
  std::memcpy(id.data(), hash, 8);
  return id;
}
struct ReferenceV2 {
  Bytes32 to_client{};
  Bytes32 to_gateway{};
  Bytes32 confirm{};
};
/// From the two X25519 results (either side computes them its own way).
inline ReferenceV2 reference_v2_gateway(const Bytes32& ee, const Bytes32& es,
                                        const Bytes32& gateway_static, const Bytes32& client_public,
                                        const Bytes32& gateway_ephemeral, std::uint8_t aead_asked,
                                        std::uint8_t aead) {
  if (sodium_init() < 0) throw std::runtime_error("sodium_init");
  std::uint8_t ikm[64];
  std::memcpy(ikm, ee.data(), 32);
  std::memcpy(ikm + 32, es.data(), 32);
  const std::string_view label = "gatehouse modern v2";
  std::vector<std::uint8_t> transcript(label.begin(), label.end());
  const auto id = reference_key_id(gateway_static);
  transcript.insert(transcript.end(), gateway_static.begin(), gateway_static.end());
  transcript.insert(transcript.end(), id.begin(), id.end());
  transcript.insert(transcript.end(), client_public.begin(), client_public.end());
  transcript.push_back(aead_asked);
  transcript.insert(transcript.end(), gateway_ephemeral.begin(), gateway_ephemeral.end());
  transcript.push_back(aead);
  std::uint8_t th[64];
  crypto_generichash(th, sizeof th, transcript.data(), transcript.size(), nullptr, 0);
  std::uint8_t prk[64];
  crypto_generichash(prk, sizeof prk, th, sizeof th, ikm, sizeof ikm);
  ReferenceV2 out;
  const auto expand = [&prk](Bytes32& key, std::string_view name) {
    crypto_generichash(key.data(), key.size(), reinterpret_cast<const std::uint8_t*>(name.data()),
                       name.size(), prk, sizeof prk);
  };
  expand(out.to_client, "to-client");
  expand(out.to_gateway, "to-gateway");
  expand(out.confirm, "confirm");
  return out;
}
/// The client's side: ee = X25519(e_c, E_s), es = X25519(e_c, S).
inline ReferenceV2 reference_v2(const Bytes32& client_secret, const Bytes32& gateway_static,
                                const Bytes32& gateway_ephemeral, std::uint8_t aead_asked,
                                std::uint8_t aead) {
  if (sodium_init() < 0) throw std::runtime_error("sodium_init");
  Bytes32 client_public{}, ee{}, es{};
  crypto_scalarmult_base(client_public.data(), client_secret.data());
  if (crypto_scalarmult(ee.data(), client_secret.data(), gateway_ephemeral.data()) != 0 ||
      crypto_scalarmult(es.data(), client_secret.data(), gateway_static.data()) != 0) {
    throw std::runtime_error("reference X25519: low-order point");
  }
  return reference_v2_gateway(ee, es, gateway_static, client_public, gateway_ephemeral, aead_asked,
                              aead);
}

/// One direction of a modern session: payload n sealed with nonce
/// | 0 0 0 0 | n u64 big-endian |, ciphertext then 16-byte tag, no AAD;
/// ChaCha20-Poly1305 (AEAD byte 0) or AES-256-GCM (1).
class ReferenceAead {
 public:
  explicit ReferenceAead(const std::array<std::uint8_t, 32>& key, std::uint8_t aead = 0)
      : key_(key), aes_(aead == 1) {}

  std::vector<std::uint8_t> seal(const std::vector<std::uint8_t>& plain) {
    std::vector<std::uint8_t> out(plain.size() + 16);
    unsigned long long out_len = 0;
    const auto n = nonce();
    (aes_ ? crypto_aead_aes256gcm_encrypt : crypto_aead_chacha20poly1305_ietf_encrypt)(
        out.data(), &out_len, plain.data(), plain.size(), nullptr, 0, nullptr, n.data(),
        key_.data());
    ++counter_;
    return out;
  }
  /// nullopt when the tag does not match.
  std::optional<std::vector<std::uint8_t>> open(const std::vector<std::uint8_t>& sealed) {
    if (sealed.size() < 16) return std::nullopt;
    std::vector<std::uint8_t> out(sealed.size() - 16);
    unsigned long long out_len = 0;
    const auto n = nonce();
    if ((aes_ ? crypto_aead_aes256gcm_decrypt : crypto_aead_chacha20poly1305_ietf_decrypt)(
            out.data(), &out_len, nullptr, sealed.data(), sealed.size(), nullptr, 0, n.data(),
            key_.data()) != 0) {
      return std::nullopt;
    }
    ++counter_;
    return out;
  }
  std::uint64_t counter() const noexcept { return counter_; }

 private:
  std::array<std::uint8_t, 12> nonce() const {
    std::array<std::uint8_t, 12> n{};
    for (std::size_t i = 0; i < 8; ++i) n[11 - i] = static_cast<std::uint8_t>(counter_ >> (8 * i));
    return n;
  }

  std::array<std::uint8_t, 32> key_;
  bool aes_;
  std::uint64_t counter_ = 0;
};

}  // namespace gatehouse::client::testing
