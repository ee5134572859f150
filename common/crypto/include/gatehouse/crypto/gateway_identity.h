// The modern key exchange, version 2 (docs/protocol-modern.md, "Version 2"):
// the gateway proves that it holds the private half of a long-term X25519
// key the client has pinned. Noise-NK-like: the client knows the gateway's
// static public key S and sends a fresh ephemeral E_c; the gateway answers
// with a fresh ephemeral E_s, and both derive the session keys from two
// X25519 results, ee = X25519(e_c, E_s) and es = X25519(e_c, S), and the
// transcript hash. Only the holder of S's secret computes es, so only it can
// send the key-confirmation tag the ack carries: a client pinned to another
// key (or talking to a man in the middle) fails at the ack.
//
//   th       = BLAKE2b-512(kTranscriptLabel || S || key_id || E_c || aead_asked || E_s || aead)
//   prk      = BLAKE2b-512(key = ee || es, th)
//   to_client  = BLAKE2b-256(key = prk, "to-client")
//   to_gateway = BLAKE2b-256(key = prk, "to-gateway")
//   confirm    = BLAKE2b-256(key = prk, "confirm")
//
// key_id = BLAKE2b-512(S)[0..8) names which of the gateway's keys the client
// pinned, so a gateway can hold several while keys rotate. Every primitive is
// libsodium's (crypto_scalarmult, crypto_generichash).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "gatehouse/crypto/modern_crypto.h"

namespace gatehouse::modern {

inline constexpr std::size_t kKeyIdBytes = 8;
inline constexpr std::size_t kConfirmBytes = 32;
/// The ASCII label that starts the transcript hash (no terminator).
inline constexpr std::string_view kTranscriptLabel = "gatehouse modern v2";

using KeyId = std::array<std::byte, kKeyIdBytes>;
using Confirm = std::array<std::byte, kConfirmBytes>;

/// BLAKE2b-512(public_key)[0..8).
KeyId key_id_of(std::span<const std::byte, kPublicKeyBytes> public_key);
/// The X25519 public key of `secret` (crypto_scalarmult_base).
PublicKey public_key_of(const Key& secret);
/// X25519(secret, peer); nullopt for an all-zero result (a low-order point).
std::optional<Key> shared_secret(const Key& secret,
                                 std::span<const std::byte, kPublicKeyBytes> peer);

/// What both sides hash: every byte of the exchange they must agree on.
struct Transcript {
  PublicKey gateway_static;     ///< S
  KeyId key_id;                 ///< as the request sent it
  PublicKey client_ephemeral;   ///< E_c
  std::uint8_t aead_asked;      ///< the request's AEAD byte, as sent
  PublicKey gateway_ephemeral;  ///< E_s
  std::uint8_t aead;            ///< the ack's AEAD byte
};

/// The derivation after both X25519: the session keys and the tag.
struct Derived {
  SessionKeys keys;
  Confirm confirm;
};
Derived derive(const Transcript& transcript, const Key& ee, const Key& es);
// derive()'s steps, for the test vectors of the page (tools/kx-vectors).
using Hash = std::array<std::byte, 64>;
/// th = BLAKE2b-512(kTranscriptLabel || S || key_id || E_c || aead_asked || E_s || aead).
Hash transcript_hash(const Transcript& transcript);
/// prk = BLAKE2b-512(key = ee || es, th).
Hash extract(const Key& ee, const Key& es, const Hash& th);
/// The keys and the tag: BLAKE2b-256(key = prk, "to-client" / "to-gateway" / "confirm").
Derived expand(const Hash& prk);

/// What the gateway answers a key_exchange2_req with, and the session's keys.
struct GatewayReply {
  PublicKey gateway_ephemeral;  ///< E_s
  Aead aead;
  Confirm confirm;
  SessionKeys keys;
};
/// The gateway's side with its static key pair and a given ephemeral one
/// (test vectors); nullopt when the client's ephemeral is a low-order point.
std::optional<GatewayReply> gateway_reply(const KeyPair& static_key, const KeyPair& ephemeral,
                                          std::span<const std::byte, kPublicKeyBytes> client,
                                          std::uint8_t aead_asked);
/// The same with a fresh ephemeral key pair, wiped before returning.
std::optional<GatewayReply> gateway_reply(const KeyPair& static_key,
                                          std::span<const std::byte, kPublicKeyBytes> client,
                                          std::uint8_t aead_asked);

/// How a client's check of the ack ends.
enum class AckCheck : std::uint8_t {
  kOk,
  kLowOrderKey,         ///< E_s gives no shared secret: a broken gateway or an attacker
  kUnexpectedAead,      ///< an AEAD not asked for (other than 0)
  kGatewayKeyMismatch,  ///< the tag does not match: not the holder of the pinned key
};
std::string_view describe(AckCheck check) noexcept;

/// The client's side once the ack is in. `keys` is set only for kOk.
struct ClientResult {
  AckCheck check;
  std::optional<SessionKeys> keys;
  Aead aead = Aead::kChaCha20Poly1305;
};
ClientResult client_finish(const KeyPair& client_ephemeral,
                           std::span<const std::byte, kPublicKeyBytes> pinned,
                           std::uint8_t aead_asked,
                           std::span<const std::byte, kPublicKeyBytes> gateway_ephemeral,
                           std::uint8_t aead, std::span<const std::byte, kConfirmBytes> confirm);

}  // namespace gatehouse::modern
