#include "gatehouse/crypto/modern_crypto.h"

#include <sodium.h>

#include <cstring>
#include <stdexcept>

namespace gatehouse::modern {
namespace {

static_assert(kPublicKeyBytes == crypto_kx_PUBLICKEYBYTES);
static_assert(kKeyBytes == crypto_kx_SECRETKEYBYTES);
static_assert(kKeyBytes == crypto_kx_SESSIONKEYBYTES);
static_assert(kKeyBytes == crypto_aead_chacha20poly1305_ietf_KEYBYTES);
static_assert(kTagBytes == crypto_aead_chacha20poly1305_ietf_ABYTES);
static_assert(kNonceBytes == crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
static_assert(kKeyBytes == crypto_aead_aes256gcm_KEYBYTES);
static_assert(kTagBytes == crypto_aead_aes256gcm_ABYTES);
static_assert(kNonceBytes == crypto_aead_aes256gcm_NPUBBYTES);

void ensure_sodium() {
  // Thread-safe and idempotent; 1 means "already initialised".
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

unsigned char* u8(std::byte* p) noexcept {
  return reinterpret_cast<unsigned char*>(p);
}
const unsigned char* u8(const std::byte* p) noexcept {
  return reinterpret_cast<const unsigned char*>(p);
}

}  // namespace

bool available(Aead aead) {
  switch (aead) {
    case Aead::kChaCha20Poly1305:
      return true;
    case Aead::kAes256Gcm:
      ensure_sodium();  // the CPU features are probed here
      return crypto_aead_aes256gcm_is_available() != 0;
  }
  return false;
}

std::string_view name_of(Aead aead) noexcept {
  return aead == Aead::kAes256Gcm ? "aes-256-gcm" : "chacha20-poly1305";
}

std::optional<Aead> aead_from_name(std::string_view name) noexcept {
  if (name == "chacha20-poly1305") return Aead::kChaCha20Poly1305;
  if (name == "aes-256-gcm") return Aead::kAes256Gcm;
  return std::nullopt;
}

std::optional<Aead> aead_from_wire(std::uint8_t value) noexcept {
  if (value > static_cast<std::uint8_t>(Aead::kAes256Gcm)) return std::nullopt;
  return static_cast<Aead>(value);
}

Aead granted_aead(std::uint8_t asked) {
  static const bool aes = available(Aead::kAes256Gcm);
  return asked == static_cast<std::uint8_t>(Aead::kAes256Gcm) && aes ? Aead::kAes256Gcm
                                                                     : Aead::kChaCha20Poly1305;
}

KeyPair generate_key_pair() {
  ensure_sodium();
  KeyPair k;
  crypto_kx_keypair(u8(k.public_key.data()), u8(k.secret_key.data()));
  return k;
}

std::optional<SessionKeys> gateway_session_keys(
    const KeyPair& gateway, std::span<const std::byte, kPublicKeyBytes> client) {
  ensure_sodium();
  SessionKeys keys;
  // crypto_kx's server side: rx protects what the client sends.
  if (crypto_kx_server_session_keys(u8(keys.to_gateway.data()), u8(keys.to_client.data()),
                                    u8(gateway.public_key.data()), u8(gateway.secret_key.data()),
                                    u8(client.data())) != 0) {
    return std::nullopt;
  }
  return keys;
}

std::optional<SessionKeys> client_session_keys(
    const KeyPair& client, std::span<const std::byte, kPublicKeyBytes> gateway) {
  ensure_sodium();
  SessionKeys keys;
  if (crypto_kx_client_session_keys(u8(keys.to_client.data()), u8(keys.to_gateway.data()),
                                    u8(client.public_key.data()), u8(client.secret_key.data()),
                                    u8(gateway.data())) != 0) {
    return std::nullopt;
  }
  return keys;
}

std::optional<GatewayHandshake> gateway_handshake(
    std::span<const std::byte, kPublicKeyBytes> client, std::uint8_t wanted) {
  const Aead aead = granted_aead(wanted);
  KeyPair pair = generate_key_pair();
  std::optional<GatewayHandshake> result;
  if (const auto keys = gateway_session_keys(pair, client)) {
    result = GatewayHandshake{pair.public_key, *keys, aead};
  }
  sodium_memzero(pair.secret_key.data(), pair.secret_key.size());
  return result;
}

std::array<std::byte, kNonceBytes> nonce_of(std::uint64_t counter) noexcept {
  std::array<std::byte, kNonceBytes> nonce{};
  for (std::size_t i = 0; i < 8; ++i) {
    nonce[kNonceBytes - 1 - i] = static_cast<std::byte>(counter >> (8 * i));
  }
  return nonce;
}

void AeadStream::init(const Key& k, Aead algorithm) noexcept {
  std::memcpy(key, k.data(), kKeyBytes);
  counter = 0;
  aead = algorithm;
}

void AeadStream::seal(const std::byte* in, std::size_t n, std::byte* out) noexcept {
  const auto nonce = nonce_of(counter++);
  const auto seal_with = aead == Aead::kAes256Gcm
                             ? crypto_aead_aes256gcm_encrypt_detached
                             : crypto_aead_chacha20poly1305_ietf_encrypt_detached;
  seal_with(u8(out), u8(out + n), nullptr, u8(in), n, nullptr, 0, nullptr, u8(nonce.data()), key);
}

bool AeadStream::open(const std::byte* in, std::size_t n, std::byte* out) noexcept {
  if (n < kTagBytes) return false;
  const auto nonce = nonce_of(counter);
  const auto open_with = aead == Aead::kAes256Gcm
                             ? crypto_aead_aes256gcm_decrypt_detached
                             : crypto_aead_chacha20poly1305_ietf_decrypt_detached;
  if (open_with(u8(out), nullptr, u8(in), n - kTagBytes, u8(in + n - kTagBytes), nullptr, 0,
                u8(nonce.data()), key) != 0) {
    return false;
  }
  ++counter;
  return true;
}

}  // namespace gatehouse::modern
