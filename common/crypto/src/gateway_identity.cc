#include "gatehouse/crypto/gateway_identity.h"

#include <sodium.h>

#include <cstring>
#include <stdexcept>

namespace gatehouse::modern {
namespace {

static_assert(kPublicKeyBytes == crypto_scalarmult_BYTES);
static_assert(kKeyBytes == crypto_scalarmult_SCALARBYTES);

unsigned char* u8(std::byte* p) noexcept {
  return reinterpret_cast<unsigned char*>(p);
}
const unsigned char* u8(const std::byte* p) noexcept {
  return reinterpret_cast<const unsigned char*>(p);
}
const unsigned char* u8(const char* p) noexcept {
  return reinterpret_cast<const unsigned char*>(p);
}

void ensure_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

/// X25519; false for an all-zero result (a low-order point).
bool x25519(Key& out, const Key& secret, std::span<const std::byte, kPublicKeyBytes> peer) {
  return crypto_scalarmult(u8(out.data()), u8(secret.data()), u8(peer.data())) == 0;
}

/// BLAKE2b-256(key = prk, label).
Key expand_one(const Hash& prk, std::string_view label) {
  Key out;
  crypto_generichash(u8(out.data()), out.size(), u8(label.data()), label.size(), u8(prk.data()),
                     prk.size());
  return out;
}

}  // namespace

KeyId key_id_of(std::span<const std::byte, kPublicKeyBytes> public_key) {
  ensure_sodium();
  std::array<std::byte, 64> hash;
  crypto_generichash(u8(hash.data()), hash.size(), u8(public_key.data()), public_key.size(),
                     nullptr, 0);
  KeyId id;
  std::memcpy(id.data(), hash.data(), id.size());
  return id;
}

PublicKey public_key_of(const Key& secret) {
  ensure_sodium();
  PublicKey out;
  crypto_scalarmult_base(u8(out.data()), u8(secret.data()));
  return out;
}

std::optional<Key> shared_secret(const Key& secret,
                                 std::span<const std::byte, kPublicKeyBytes> peer) {
  ensure_sodium();
  Key out;
  if (!x25519(out, secret, peer)) return std::nullopt;
  return out;
}

Hash transcript_hash(const Transcript& t) {
  ensure_sodium();
  Hash th;
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, th.size());
  const auto add = [&state](const void* p, std::size_t n) {
    crypto_generichash_update(&state, static_cast<const unsigned char*>(p), n);
  };
  add(kTranscriptLabel.data(), kTranscriptLabel.size());
  add(t.gateway_static.data(), kPublicKeyBytes);
  add(t.key_id.data(), kKeyIdBytes);
  add(t.client_ephemeral.data(), kPublicKeyBytes);
  add(&t.aead_asked, 1);
  add(t.gateway_ephemeral.data(), kPublicKeyBytes);
  add(&t.aead, 1);
  crypto_generichash_final(&state, u8(th.data()), th.size());
  return th;
}

Hash extract(const Key& ee, const Key& es, const Hash& th) {
  ensure_sodium();
  std::array<std::byte, 2 * kKeyBytes> ikm;  // ee || es
  std::memcpy(ikm.data(), ee.data(), kKeyBytes);
  std::memcpy(ikm.data() + kKeyBytes, es.data(), kKeyBytes);
  Hash prk;
  crypto_generichash(u8(prk.data()), prk.size(), u8(th.data()), th.size(), u8(ikm.data()),
                     ikm.size());
  sodium_memzero(ikm.data(), ikm.size());
  return prk;
}

Derived expand(const Hash& prk) {
  Derived d{{expand_one(prk, "to-client"), expand_one(prk, "to-gateway")}, {}};
  const Key confirm = expand_one(prk, "confirm");
  std::memcpy(d.confirm.data(), confirm.data(), kConfirmBytes);
  return d;
}

Derived derive(const Transcript& t, const Key& ee, const Key& es) {
  Hash prk = extract(ee, es, transcript_hash(t));
  const Derived d = expand(prk);
  sodium_memzero(prk.data(), prk.size());
  return d;
}

std::optional<GatewayReply> gateway_reply(const KeyPair& static_key, const KeyPair& ephemeral,
                                          std::span<const std::byte, kPublicKeyBytes> client,
                                          std::uint8_t aead_asked) {
  ensure_sodium();
  const Aead aead = granted_aead(aead_asked);
  Key ee;
  Key es;
  std::optional<GatewayReply> reply;
  if (x25519(ee, ephemeral.secret_key, client) && x25519(es, static_key.secret_key, client)) {
    Transcript t{static_key.public_key,
                 key_id_of(static_key.public_key),
                 {},
                 aead_asked,
                 ephemeral.public_key,
                 0};
    std::memcpy(t.client_ephemeral.data(), client.data(), kPublicKeyBytes);
    t.aead = static_cast<std::uint8_t>(aead);
    const Derived d = derive(t, ee, es);
    reply = GatewayReply{ephemeral.public_key, aead, d.confirm, d.keys};
  }
  sodium_memzero(ee.data(), ee.size());
  sodium_memzero(es.data(), es.size());
  return reply;
}

std::optional<GatewayReply> gateway_reply(const KeyPair& static_key,
                                          std::span<const std::byte, kPublicKeyBytes> client,
                                          std::uint8_t aead_asked) {
  KeyPair ephemeral = generate_key_pair();
  auto reply = gateway_reply(static_key, ephemeral, client, aead_asked);
  sodium_memzero(ephemeral.secret_key.data(), ephemeral.secret_key.size());
  return reply;
}

std::string_view describe(AckCheck check) noexcept {
  switch (check) {
    case AckCheck::kOk:
      return "ok";
    case AckCheck::kLowOrderKey:
      return "the gateway's ephemeral key is unusable (a low-order point)";
    case AckCheck::kUnexpectedAead:
      return "the ack names an AEAD the client did not ask for";
    case AckCheck::kGatewayKeyMismatch:
      return "gateway key mismatch: the gateway does not hold the private half of the pinned key "
             "(a wrong or rotated-out key, or a man in the middle)";
  }
  return "?";
}

ClientResult client_finish(const KeyPair& client_ephemeral,
                           std::span<const std::byte, kPublicKeyBytes> pinned,
                           std::uint8_t aead_asked,
                           std::span<const std::byte, kPublicKeyBytes> gateway_ephemeral,
                           std::uint8_t aead, std::span<const std::byte, kConfirmBytes> confirm) {
  ensure_sodium();
  const auto session_aead = aead_from_wire(aead);
  if (!session_aead || (aead != aead_asked && *session_aead != Aead::kChaCha20Poly1305)) {
    return {AckCheck::kUnexpectedAead, std::nullopt};
  }
  Key ee;
  Key es;
  ClientResult result{AckCheck::kLowOrderKey, std::nullopt, *session_aead};
  if (x25519(ee, client_ephemeral.secret_key, gateway_ephemeral) &&
      x25519(es, client_ephemeral.secret_key, pinned)) {
    Transcript t{{}, key_id_of(pinned), client_ephemeral.public_key, aead_asked, {}, aead};
    std::memcpy(t.gateway_static.data(), pinned.data(), kPublicKeyBytes);
    std::memcpy(t.gateway_ephemeral.data(), gateway_ephemeral.data(), kPublicKeyBytes);
    const Derived d = derive(t, ee, es);
    if (sodium_memcmp(d.confirm.data(), confirm.data(), kConfirmBytes) == 0) {
      result.check = AckCheck::kOk;
      result.keys = d.keys;
    } else {
      result.check = AckCheck::kGatewayKeyMismatch;
    }
  }
  sodium_memzero(ee.data(), ee.size());
  sodium_memzero(es.data(), es.size());
  return result;
}

}  // namespace gatehouse::modern
