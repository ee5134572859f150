// Signed login tokens (docs/login.md, byte by byte): a player's user id,
// an expiry and an audience, signed with Ed25519 by whoever holds the
// signing key (the studio's login service, or `gatehouse token`). The
// gateway holds only public keys and verifies a token with no network round
// trip; several keys at once let the signing key rotate.
//
//   token   = base64url(payload) "." base64url(signature)     (no padding)
//   payload = | version u8 = 1 | key id u32 | uid i32 | expiry i64 | aud_len u8 | audience |
//   signature = Ed25519(secret key, "gatehouse-login-token" || payload)
//
// The primitives are libsodium's (crypto_sign_*, crypto_generichash,
// sodium_bin2base64); nothing here implements a cipher.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::token {

inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kPublicKeyBytes = 32;  ///< crypto_sign_PUBLICKEYBYTES
inline constexpr std::size_t kSecretKeyBytes = 64;  ///< crypto_sign_SECRETKEYBYTES (seed + public)
inline constexpr std::size_t kSignatureBytes = 64;
inline constexpr std::size_t kMaxAudienceBytes = 100;  ///< fits Settings::login_audience
/// Signed ahead of the payload, so that no other message signed by the same
/// key (if an operator reused it) can pass for a token.
inline constexpr std::string_view kSignatureContext = "gatehouse-login-token";

/// Why a token is refused. The order of the checks is the order here: a
/// claim (expiry, audience) is looked at only once the signature holds.
enum class Refusal {
  kMalformed,      ///< not a token of this format and version
  kUnknownKey,     ///< signed by a key the gateway does not hold
  kBadSignature,   ///< the signature does not verify
  kExpired,        ///< past its expiry
  kWrongAudience,  ///< minted for another audience
};

struct PublicKey {
  std::array<unsigned char, kPublicKeyBytes> bytes{};
  /// The key's id: the first 4 bytes (big-endian) of BLAKE2b-256 of the
  /// public key. Derived, so a token and a key file cannot disagree on it.
  std::uint32_t id() const noexcept;
};

struct SecretKey {
  std::array<unsigned char, kSecretKeyBytes> bytes{};
  PublicKey public_key() const noexcept;
  /// A fresh key pair from the system's random source.
  static SecretKey generate();
};

/// A token for `uid` (1..2^31-1) until `expiry_unix_s`, bound to `audience`
/// (empty: none; at most kMaxAudienceBytes, else std::invalid_argument).
std::string mint(const SecretKey& key, std::int32_t uid, std::int64_t expiry_unix_s,
                 std::string_view audience);

struct Verdict {
  bool ok = false;
  Refusal refusal = Refusal::kMalformed;  ///< when !ok
  /// The user id the token names: when ok, the verified one; when refused
  /// past kMalformed, the one it claims (a failed login against that user).
  std::int32_t uid = 0;
};

/// Verifies tokens against a set of public keys (rotation: the old and the
/// new key both verify until the old one's tokens expired) and one audience.
class Verifier {
 public:
  /// Throws std::invalid_argument when two keys share an id (a 1 in 2^32
  /// chance for distinct keys; more likely the same key listed twice).
  Verifier(std::vector<PublicKey> keys, std::string audience);

  /// `now_unix_s`: the wall clock; a token is valid while now < expiry. The
  /// token's audience must equal the verifier's (both empty included): a
  /// token minted for another service does not open this gateway.
  Verdict verify(std::string_view token, std::int64_t now_unix_s) const;

  std::size_t key_count() const noexcept { return keys_.size(); }

 private:
  std::vector<PublicKey> keys_;
  std::vector<std::uint32_t> ids_;  ///< keys_[i].id(), computed once
  std::string audience_;
};

/// Base64url without padding (RFC 4648 section 5), as in tokens.
std::string base64url(const unsigned char* bytes, std::size_t size);
/// Lower-case hex.
std::string hex(const unsigned char* bytes, std::size_t size);

}  // namespace gatehouse::token
