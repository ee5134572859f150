// gatehouse::modern (gw::crypto) against the construction of
// docs/protocol-modern.md written again in the test (reference_crypto.h):
// the reference X25519 is first checked against RFC 7748's vectors, then the
// library's session keys, nonces and sealed payloads must equal the
// reference's byte for byte, and every kind of tampering must fail to open.
#include "gatehouse/crypto/modern_crypto.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/reference_crypto.h"

namespace gatehouse::modern {
namespace {

using client::testing::reference_modern_keys;
using client::testing::ReferenceAead;
using Bytes32 = std::array<std::uint8_t, 32>;

Bytes32 from_hex(const char* hex) {
  Bytes32 out{};
  for (std::size_t i = 0; i < out.size(); ++i) {
    unsigned v = 0;
    std::sscanf(hex + 2 * i, "%2x", &v);
    out[i] = static_cast<std::uint8_t>(v);
  }
  return out;
}
Bytes32 u8(const std::array<std::byte, 32>& b) {
  Bytes32 out{};
  std::memcpy(out.data(), b.data(), 32);
  return out;
}
std::vector<std::uint8_t> u8(const std::vector<std::byte>& b) {
  std::vector<std::uint8_t> out;
  for (const std::byte x : b) out.push_back(std::to_integer<std::uint8_t>(x));
  return out;
}

TEST(ReferenceX25519, MatchesRfc7748Section6_1) {
  ASSERT_GE(sodium_init(), 0);
  const Bytes32 alice_secret =
      from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const Bytes32 bob_secret =
      from_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  Bytes32 alice_public{}, bob_public{}, shared{};
  crypto_scalarmult_base(alice_public.data(), alice_secret.data());
  crypto_scalarmult_base(bob_public.data(), bob_secret.data());
  EXPECT_EQ(alice_public,
            from_hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
  EXPECT_EQ(bob_public,
            from_hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
  ASSERT_EQ(crypto_scalarmult(shared.data(), alice_secret.data(), bob_public.data()), 0);
  EXPECT_EQ(shared, from_hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
}

TEST(ModernKeys, BothSidesDeriveTheDocumentedKeys) {
  const KeyPair client = generate_key_pair();
  const KeyPair gateway = generate_key_pair();
  const auto at_gateway = gateway_session_keys(gateway, client.public_key);
  const auto at_client = client_session_keys(client, gateway.public_key);
  ASSERT_TRUE(at_gateway && at_client);
  const auto reference = reference_modern_keys(u8(client.secret_key), u8(gateway.public_key),
                                               u8(client.public_key), u8(gateway.public_key));
  EXPECT_EQ(u8(at_client->to_client), reference.to_client);
  EXPECT_EQ(u8(at_client->to_gateway), reference.to_gateway);
  EXPECT_EQ(u8(at_gateway->to_client), reference.to_client);
  EXPECT_EQ(u8(at_gateway->to_gateway), reference.to_gateway);
  EXPECT_NE(reference.to_client, reference.to_gateway);
}

TEST(ModernKeys, GatewayHandshakeMatchesTheClientsDerivation) {
  const KeyPair client = generate_key_pair();
  const auto handshake = gateway_handshake(client.public_key, 0);
  ASSERT_TRUE(handshake);
  const auto at_client = client_session_keys(client, handshake->gateway_public);
  ASSERT_TRUE(at_client);
  EXPECT_EQ(u8(at_client->to_client), u8(handshake->keys.to_client));
  EXPECT_EQ(u8(at_client->to_gateway), u8(handshake->keys.to_gateway));
  // A fresh key pair each time.
  EXPECT_NE(u8(gateway_handshake(client.public_key, 0)->gateway_public),
            u8(handshake->gateway_public));
}

TEST(ModernKeys, LowOrderPublicKeyIsRefused) {
  const PublicKey zero{};
  EXPECT_FALSE(gateway_handshake(zero, 0));
  EXPECT_FALSE(client_session_keys(generate_key_pair(), zero));
}

// The gateway grants AES-256-GCM when asked and its CPU has AES-NI, and
// ChaCha20-Poly1305 otherwise: when not asked, when it cannot, and for an
// AEAD byte it does not know.
TEST(ModernKeys, GatewayChoosesTheAeadTheClientAskedForWhenItCan) {
  const KeyPair client = generate_key_pair();
  EXPECT_EQ(gateway_handshake(client.public_key, 0)->aead, Aead::kChaCha20Poly1305);
  EXPECT_EQ(gateway_handshake(client.public_key, 1)->aead,
            available(Aead::kAes256Gcm) ? Aead::kAes256Gcm : Aead::kChaCha20Poly1305);
  EXPECT_EQ(gateway_handshake(client.public_key, 7)->aead, Aead::kChaCha20Poly1305);
  EXPECT_EQ(aead_from_wire(7), std::nullopt);
  EXPECT_EQ(aead_from_name("aes-256-gcm"), Aead::kAes256Gcm);
  EXPECT_EQ(name_of(Aead::kChaCha20Poly1305), "chacha20-poly1305");
}

TEST(ModernNonce, IsFourZeroBytesThenTheCounterBigEndian) {
  const auto n = nonce_of(0x0102030405060708ull);
  const std::array<std::byte, 12> expected{std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0},
                                           std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4},
                                           std::byte{5}, std::byte{6}, std::byte{7}, std::byte{8}};
  EXPECT_EQ(n, expected);
}

struct Streams {
  Bytes32 key{};
  AeadStream stream{};
  explicit Streams(Aead aead) {
    Key k;
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::byte>(i * 7 + 1);
    stream.init(k, aead);
    std::memcpy(key.data(), k.data(), 32);
  }
};

std::vector<std::byte> seal(AeadStream& s, const std::vector<std::byte>& plain) {
  std::vector<std::byte> out(plain.size() + kTagBytes);
  s.seal(plain.data(), plain.size(), out.data());
  return out;
}
std::optional<std::vector<std::byte>> open(AeadStream& s, const std::vector<std::byte>& sealed) {
  std::vector<std::byte> out(sealed.size() - std::min(sealed.size(), kTagBytes));
  if (!s.open(sealed.data(), sealed.size(), out.data())) return std::nullopt;
  return out;
}
std::vector<std::byte> payload(std::size_t n, int salt) {
  std::vector<std::byte> p(n);
  for (std::size_t i = 0; i < n; ++i)
    p[i] = static_cast<std::byte>(i * 31 + static_cast<std::size_t>(salt));
  return p;
}

class AeadStreamTest : public ::testing::TestWithParam<Aead> {};

TEST_P(AeadStreamTest, SealsAsTheReferenceDoesPayloadAfterPayload) {
  Streams s(GetParam());
  ReferenceAead reference(s.key, static_cast<std::uint8_t>(GetParam()));
  for (const std::size_t n : {6u, 0u, 70u, 1000u, 65519u}) {
    const auto plain = payload(n, static_cast<int>(n));
    EXPECT_EQ(u8(seal(s.stream, plain)), reference.seal(u8(plain))) << "payload of " << n;
  }
  EXPECT_EQ(s.stream.counter, 5u);
}

TEST_P(AeadStreamTest, SealsAndOpensInPlace) {
  Streams sender(GetParam()), receiver(GetParam());
  ReferenceAead reference(sender.key, static_cast<std::uint8_t>(GetParam()));
  const auto plain = payload(50, 9);
  std::vector<std::byte> buffer = plain;
  buffer.resize(plain.size() + kTagBytes);
  sender.stream.seal(buffer.data(), plain.size(), buffer.data());
  EXPECT_EQ(u8(buffer), reference.seal(u8(plain)));
  ASSERT_TRUE(receiver.stream.open(buffer.data(), buffer.size(), buffer.data()));
  buffer.resize(plain.size());
  EXPECT_EQ(buffer, plain);
}

TEST_P(AeadStreamTest, OpensWhatTheReferenceSealsInOrder) {
  Streams s(GetParam());
  ReferenceAead reference(s.key, static_cast<std::uint8_t>(GetParam()));
  for (int i = 0; i < 3; ++i) {
    const auto plain = payload(40, i);
    const auto sealed = reference.seal(u8(plain));
    std::vector<std::byte> wire(sealed.size());
    std::memcpy(wire.data(), sealed.data(), sealed.size());
    const auto opened = open(s.stream, wire);
    ASSERT_TRUE(opened) << "payload " << i;
    EXPECT_EQ(*opened, plain);
  }
}

TEST_P(AeadStreamTest, RefusesTamperedReplayedReorderedAndShortPayloadsWithoutAdvancing) {
  Streams sender(GetParam()), receiver(GetParam());
  const auto first = seal(sender.stream, payload(30, 1));
  const auto second = seal(sender.stream, payload(30, 2));

  EXPECT_FALSE(open(receiver.stream, second)) << "reordered: sealed with nonce 1, opened at 0";
  auto flipped = first;
  flipped[3] ^= std::byte{0x01};
  EXPECT_FALSE(open(receiver.stream, flipped)) << "a flipped ciphertext bit";
  auto bad_tag = first;
  bad_tag.back() ^= std::byte{0x80};
  EXPECT_FALSE(open(receiver.stream, bad_tag)) << "a flipped tag bit";
  EXPECT_FALSE(open(receiver.stream, std::vector<std::byte>(15))) << "shorter than a tag";
  EXPECT_EQ(receiver.stream.counter, 0u) << "failures do not advance the stream";

  EXPECT_TRUE(open(receiver.stream, first));
  EXPECT_FALSE(open(receiver.stream, first)) << "replayed";
  EXPECT_TRUE(open(receiver.stream, second));
  EXPECT_EQ(receiver.stream.counter, 2u);
}

/// Every AEAD this machine can run (AES-256-GCM needs AES-NI; without it the
/// gateway never chooses it, as the test above checks).
std::vector<Aead> runnable_aeads() {
  std::vector<Aead> out{Aead::kChaCha20Poly1305};
  if (available(Aead::kAes256Gcm)) out.push_back(Aead::kAes256Gcm);
  return out;
}

INSTANTIATE_TEST_SUITE_P(EachAead, AeadStreamTest, ::testing::ValuesIn(runnable_aeads()),
                         [](const auto& param_info) {
                           return param_info.param == Aead::kAes256Gcm ? "Aes256Gcm"
                                                                       : "ChaCha20Poly1305";
                         });

}  // namespace
}  // namespace gatehouse::modern
