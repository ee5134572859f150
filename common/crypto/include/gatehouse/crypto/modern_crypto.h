// The modern key exchange and stream encryption (docs/protocol-modern.md):
// X25519 between a fresh gateway key pair and the client's, session keys
// from libsodium's crypto_kx (BLAKE2b-512 of the shared point and both
// public keys), and an AEAD per payload with a per-direction counter as
// nonce: ChaCha20-Poly1305 (IETF, RFC 8439), which every peer speaks, or
// AES-256-GCM where the client asks for it and this CPU has AES-NI. The
// primitives are libsodium's; nothing here implements a cipher.
//
// An AeadStream is plain data (a key, an algorithm and a counter) so that it
// can live in the shared-memory session table and move between workers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace gatehouse::modern {

inline constexpr std::size_t kPublicKeyBytes = 32;
inline constexpr std::size_t kKeyBytes = 32;
inline constexpr std::size_t kTagBytes = 16;  ///< appended to every sealed payload
inline constexpr std::size_t kNonceBytes = 12;

using PublicKey = std::array<std::byte, kPublicKeyBytes>;
using Key = std::array<std::byte, kKeyBytes>;

/// The AEAD of a session, as its byte on the wire.
enum class Aead : std::uint8_t {
  kChaCha20Poly1305 = 0,  ///< the default; every gateway and client has it
  kAes256Gcm = 1,         ///< where the gateway's CPU has AES-NI (3x cheaper there)
};
/// This process can use `aead` (AES-256-GCM needs AES-NI and PCLMUL).
bool available(Aead aead);
/// "chacha20-poly1305", "aes-256-gcm".
std::string_view name_of(Aead aead) noexcept;
std::optional<Aead> aead_from_name(std::string_view name) noexcept;
/// The wire byte of an ack; nullopt for a value this build does not know.
std::optional<Aead> aead_from_wire(std::uint8_t value) noexcept;
/// The AEAD a gateway grants a request's AEAD byte: the one asked for if
/// available() here, else ChaCha20-Poly1305 (unknown bytes count as 0).
Aead granted_aead(std::uint8_t asked);

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
  Aead aead;  ///< the client's wish if available() here, else ChaCha20-Poly1305
};
/// The gateway's whole side of the exchange: a fresh key pair (its secret
/// wiped before returning), then gateway_session_keys(). `wanted` is the
/// request's AEAD byte (0 when it had none; unknown values count as 0).
std::optional<GatewayHandshake> gateway_handshake(
    std::span<const std::byte, kPublicKeyBytes> client, std::uint8_t wanted);

/// The nonce of the `counter`-th payload of a direction: 4 zero bytes, then
/// the counter as a big-endian u64.
std::array<std::byte, kNonceBytes> nonce_of(std::uint64_t counter) noexcept;

/// One direction of a session: its AEAD with a fixed key, the n-th payload
/// (from 0) sealed with nonce_of(n), no associated data.
struct AeadStream {
  std::uint8_t key[kKeyBytes];
  std::uint64_t counter;  ///< payloads sealed / opened so far
  Aead aead;

  void init(const Key& k, Aead algorithm) noexcept;
  /// Writes `n` + kTagBytes bytes to `out` (ciphertext, then tag); in == out
  /// (in place) is allowed, partial overlap is not.
  void seal(const std::byte* in, std::size_t n, std::byte* out) noexcept;
  /// Authenticates and decrypts `n` bytes (ciphertext, then tag) into `n` -
  /// kTagBytes bytes at `out` (in == out allowed). False, with nothing
  /// advanced, when `n` is shorter than a tag or the tag does not match
  /// (tampered, reordered, replayed or sealed with another key).
  bool open(const std::byte* in, std::size_t n, std::byte* out) noexcept;
};

}  // namespace gatehouse::modern
