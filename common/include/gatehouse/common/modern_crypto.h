// The modern key exchange and stream encryption (docs/protocol-modern.md):
// X25519 between a fresh gateway key pair and the client's, session keys
// from libsodium's crypto_kx (BLAKE2b-512 of the shared point and both
// public keys), and ChaCha20-Poly1305 (IETF, RFC 8439) per payload with a
// per-direction counter as nonce. The primitives are libsodium's; nothing
// here implements a cipher.
//
// An AeadStream is plain data (a key and a counter) so that it can live in
// the shared-memory session table and move between worker processes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace gatehouse::modern {

inline constexpr std::size_t kPublicKeyBytes = 32;
inline constexpr std::size_t kKeyBytes = 32;
inline constexpr std::size_t kTagBytes = 16;  ///< appended to every sealed payload
inline constexpr std::size_t kNonceBytes = 12;

using PublicKey = std::array<std::byte, kPublicKeyBytes>;
using Key = std::array<std::byte, kKeyBytes>;

struct KeyPair {
  PublicKey public_key;
  Key secret_key;
};

/// A fresh X25519 key pair from the OS CSPRNG.
KeyPair generate_key_pair();

/// The two keys of a session, named by the direction they protect.
struct SessionKeys {
  Key to_client;   ///< seals gateway -> client payloads
  Key to_gateway;  ///< seals client -> gateway payloads
};

/// The gateway's side: its key pair and the client's public key. nullopt
/// when the client's key is unusable (a low-order point: no shared secret).
std::optional<SessionKeys> gateway_session_keys(const KeyPair& gateway,
                                                std::span<const std::byte, kPublicKeyBytes> client);
/// The client's side of the same derivation.
std::optional<SessionKeys> client_session_keys(const KeyPair& client,
                                               std::span<const std::byte, kPublicKeyBytes> gateway);

/// What the gateway answers a key_exchange_req with, and the session's keys.
struct GatewayHandshake {
  PublicKey gateway_public;
  SessionKeys keys;
};
/// The gateway's whole side of the exchange: a fresh key pair (its secret
/// wiped before returning), then gateway_session_keys().
std::optional<GatewayHandshake> gateway_handshake(
    std::span<const std::byte, kPublicKeyBytes> client);

/// The nonce of the `counter`-th payload of a direction: 4 zero bytes, then
/// the counter as a big-endian u64.
std::array<std::byte, kNonceBytes> nonce_of(std::uint64_t counter) noexcept;

/// One direction of a session: ChaCha20-Poly1305 with a fixed key, the n-th
/// payload (from 0) sealed with nonce_of(n), no associated data.
struct AeadStream {
  std::uint8_t key[kKeyBytes];
  std::uint64_t counter;  ///< payloads sealed / opened so far

  void init(const Key& k) noexcept;
  /// Writes `n` + kTagBytes bytes to `out` (ciphertext, then tag); in == out
  /// (in place) is allowed, partial overlap is not.
  void seal(const std::byte* in, std::size_t n, std::byte* out) noexcept;
  /// Authenticates and decrypts `n` bytes (ciphertext, then tag) into `n` -
  /// kTagBytes bytes at `out` (in == out allowed). False, with nothing
  /// advanced, when `n` is
  /// shorter than a tag or the tag does not match (tampered, reordered,
  /// replayed or sealed with another key).
  bool open(const std::byte* in, std::size_t n, std::byte* out) noexcept;
};

}  // namespace gatehouse::modern
