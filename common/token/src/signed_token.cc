#include "gatehouse/token/signed_token.h"

#include <sodium.h>

#include <algorithm>
#include <stdexcept>

namespace gatehouse::token {
namespace {

// | version u8 | key id u32 | uid i32 | expiry i64 | aud_len u8 | audience |
constexpr std::size_t kFixedBytes = 1 + 4 + 4 + 8 + 1;
constexpr std::size_t kMaxPayloadBytes = kFixedBytes + kMaxAudienceBytes;
constexpr std::size_t kContextBytes = kSignatureContext.size();

void init_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

void put_be(unsigned char* out, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(v >> (8 * (n - 1 - i)));
}
std::uint64_t get_be(const unsigned char* in, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | in[i];
  return v;
}

/// Decodes base64url without padding into `out`; the decoded size, or -1
/// when `text` is not that or does not fit.
long decode(std::string_view text, unsigned char* out, std::size_t capacity) {
  std::size_t size = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out, capacity, text.data(), text.size(), nullptr, &size, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return -1;
  }
  return static_cast<long>(size);
}

}  // namespace

std::uint32_t PublicKey::id() const noexcept {
  unsigned char digest[32];
  crypto_generichash(digest, sizeof digest, bytes.data(), bytes.size(), nullptr, 0);
  return static_cast<std::uint32_t>(get_be(digest, 4));
}

PublicKey SecretKey::public_key() const noexcept {
  PublicKey pk;
  crypto_sign_ed25519_sk_to_pk(pk.bytes.data(), bytes.data());
  return pk;
}

SecretKey SecretKey::generate() {
  init_sodium();
  SecretKey sk;
  PublicKey pk;
  crypto_sign_keypair(pk.bytes.data(), sk.bytes.data());
  return sk;
}

std::string mint(const SecretKey& key, std::int32_t uid, std::int64_t expiry_unix_s,
                 std::string_view audience) {
  init_sodium();
  if (uid <= 0) throw std::invalid_argument("a token's user id is 1..2147483647");
  if (audience.size() > kMaxAudienceBytes) {
    throw std::invalid_argument("a token's audience is at most " +
                                std::to_string(kMaxAudienceBytes) + " bytes");
  }
  // The context and the payload, as signed.
  std::vector<unsigned char> message(kContextBytes + kFixedBytes + audience.size());
  std::copy(kSignatureContext.begin(), kSignatureContext.end(), message.begin());
  unsigned char* p = message.data() + kContextBytes;
  p[0] = kVersion;
  put_be(p + 1, key.public_key().id(), 4);
  put_be(p + 5, static_cast<std::uint32_t>(uid), 4);
  put_be(p + 9, static_cast<std::uint64_t>(expiry_unix_s), 8);
  p[17] = static_cast<unsigned char>(audience.size());
  std::copy(audience.begin(), audience.end(), p + kFixedBytes);

  unsigned char signature[kSignatureBytes];
  crypto_sign_detached(signature, nullptr, message.data(), message.size(), key.bytes.data());
  return base64url(p, message.size() - kContextBytes) + "." +
         base64url(signature, sizeof signature);
}

Verifier::Verifier(std::vector<PublicKey> keys, std::string audience)
    : keys_(std::move(keys)), audience_(std::move(audience)) {
  init_sodium();
  for (const PublicKey& key : keys_) {
    const std::uint32_t id = key.id();
    if (std::find(ids_.begin(), ids_.end(), id) != ids_.end()) {
      throw std::invalid_argument("two token keys with the same key id (the same key twice?)");
    }
    ids_.push_back(id);
  }
}

Verdict Verifier::verify(std::string_view token, std::int64_t now_unix_s) const {
  Verdict verdict;
  const std::size_t dot = token.find('.');
  if (dot == std::string_view::npos) return verdict;

  // The context and the payload, decoded in place behind it.
  unsigned char message[kContextBytes + kMaxPayloadBytes];
  std::copy(kSignatureContext.begin(), kSignatureContext.end(), message);
  unsigned char* payload = message + kContextBytes;
  const long size = decode(token.substr(0, dot), payload, kMaxPayloadBytes);
  unsigned char signature[kSignatureBytes];
  if (size < static_cast<long>(kFixedBytes) || payload[0] != kVersion ||
      static_cast<std::size_t>(size) != kFixedBytes + payload[17] ||
      decode(token.substr(dot + 1), signature, sizeof signature) !=
          static_cast<long>(kSignatureBytes)) {
    return verdict;
  }
  const auto key_id = static_cast<std::uint32_t>(get_be(payload + 1, 4));
  const auto uid = static_cast<std::int32_t>(get_be(payload + 5, 4));
  const auto expiry = static_cast<std::int64_t>(get_be(payload + 9, 8));
  const std::string_view audience(reinterpret_cast<const char*>(payload + kFixedBytes),
                                  payload[17]);
  if (uid <= 0) return verdict;
  verdict.uid = uid;

  const auto known = std::find(ids_.begin(), ids_.end(), key_id);
  if (known == ids_.end()) {
    verdict.refusal = Refusal::kUnknownKey;
  } else if (crypto_sign_verify_detached(
                 signature, message, kContextBytes + static_cast<std::size_t>(size),
                 keys_[static_cast<std::size_t>(known - ids_.begin())].bytes.data()) != 0) {
    verdict.refusal = Refusal::kBadSignature;
  } else if (now_unix_s >= expiry) {
    verdict.refusal = Refusal::kExpired;
  } else if (audience != audience_) {
    verdict.refusal = Refusal::kWrongAudience;
  } else {
    verdict.ok = true;
  }
  return verdict;
}

std::string base64url(const unsigned char* bytes, std::size_t size) {
  std::string out(sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes, size, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::string hex(const unsigned char* bytes, std::size_t size) {
  std::string out(size * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes, size);
  out.resize(size * 2);
  return out;
}

}  // namespace gatehouse::token
