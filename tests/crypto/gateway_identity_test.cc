// The modern exchange's version 2 (gw::crypto gateway_identity and
// gateway_key_file) against the construction of docs/protocol-modern.md
// written again in the test (reference_crypto.h): both sides agree with the
// reference byte for byte; a wrong pinned key, a tampered ack and a
// low-order key are told apart; the keyring finds keys by id; key files are
// refused when others could read them.
#include "gatehouse/crypto/gateway_identity.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/reference_crypto.h"
#include "gatehouse/crypto/gateway_key_file.h"

namespace gatehouse::modern {
namespace {

using client::testing::reference_key_id;
using client::testing::reference_v2;
using ::testing::HasSubstr;
using Bytes32 = std::array<std::uint8_t, 32>;

Bytes32 u8(const std::array<std::byte, 32>& b) {
  Bytes32 out{};
  std::memcpy(out.data(), b.data(), 32);
  return out;
}

KeyPair pair_from(std::uint8_t first) {
  KeyPair p;
  for (std::size_t i = 0; i < p.secret_key.size(); ++i) {
    p.secret_key[i] = static_cast<std::byte>(first + i);
  }
  p.public_key = public_key_of(p.secret_key);
  return p;
}

TEST(GatewayIdentity, KeyIdIsTheFirstEightBytesOfBlake2b512) {
  const KeyPair s = pair_from(1);
  const KeyId id = key_id_of(s.public_key);
  const auto expected = reference_key_id(u8(s.public_key));
  EXPECT_EQ(std::memcmp(id.data(), expected.data(), 8), 0);
}

TEST(GatewayIdentity, BothSidesAgreeWithTheReferenceConstruction) {
  const KeyPair gateway_static = pair_from(0x01);
  const KeyPair client = pair_from(0x41);
  const KeyPair ephemeral = pair_from(0x81);
  for (const std::uint8_t asked : {std::uint8_t{0}, std::uint8_t{1}, std::uint8_t{7}}) {
    const auto reply = gateway_reply(gateway_static, ephemeral, client.public_key, asked);
    ASSERT_TRUE(reply);
    const auto granted = static_cast<std::uint8_t>(reply->aead);
    EXPECT_EQ(granted, asked == 1 && available(Aead::kAes256Gcm) ? 1 : 0);
    const auto ref = reference_v2(u8(client.secret_key), u8(gateway_static.public_key),
                                  u8(ephemeral.public_key), asked, granted);
    EXPECT_EQ(u8(reply->keys.to_client), ref.to_client);
    EXPECT_EQ(u8(reply->keys.to_gateway), ref.to_gateway);
    EXPECT_EQ(u8(reply->confirm), ref.confirm);

    const ClientResult result = client_finish(client, gateway_static.public_key, asked,
                                              reply->gateway_ephemeral, granted, reply->confirm);
    ASSERT_EQ(result.check, AckCheck::kOk) << describe(result.check);
    EXPECT_EQ(u8(result.keys->to_client), ref.to_client);
    EXPECT_EQ(u8(result.keys->to_gateway), ref.to_gateway);
  }
}

TEST(GatewayIdentity, FreshEphemeralsGiveFreshSessionKeys) {
  const KeyPair gateway_static = generate_key_pair();
  const KeyPair client = generate_key_pair();
  const auto a = gateway_reply(gateway_static, client.public_key, 0);
  const auto b = gateway_reply(gateway_static, client.public_key, 0);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->gateway_ephemeral, b->gateway_ephemeral);
  EXPECT_NE(a->keys.to_client, b->keys.to_client);
}

// Whoever answers without the pinned key's secret (another gateway's key, a
// man in the middle) cannot make the tag; nor can the ack be altered.
TEST(GatewayIdentity, AnAckNotFromThePinnedKeysHolderIsAKeyMismatch) {
  const KeyPair pinned = generate_key_pair();
  const KeyPair impostor = generate_key_pair();
  const KeyPair client = generate_key_pair();
  const auto forged = gateway_reply(impostor, client.public_key, 0);
  ASSERT_TRUE(forged);
  EXPECT_EQ(
      client_finish(client, pinned.public_key, 0, forged->gateway_ephemeral, 0, forged->confirm)
          .check,
      AckCheck::kGatewayKeyMismatch);

  const auto real = gateway_reply(pinned, client.public_key, 0);
  ASSERT_TRUE(real);
  // A substituted ephemeral key.
  const KeyPair other = generate_key_pair();
  EXPECT_EQ(client_finish(client, pinned.public_key, 0, other.public_key, 0, real->confirm).check,
            AckCheck::kGatewayKeyMismatch);
  // A flipped bit of the tag.
  Confirm bad = real->confirm;
  bad[5] ^= std::byte{1};
  EXPECT_EQ(client_finish(client, pinned.public_key, 0, real->gateway_ephemeral, 0, bad).check,
            AckCheck::kGatewayKeyMismatch);
  // The AEAD byte changed to one asked for (the transcript no longer matches)...
  EXPECT_EQ(
      client_finish(client, pinned.public_key, 1, real->gateway_ephemeral, 1, real->confirm).check,
      AckCheck::kGatewayKeyMismatch);
  // ...or to one not asked for.
  EXPECT_EQ(
      client_finish(client, pinned.public_key, 0, real->gateway_ephemeral, 1, real->confirm).check,
      AckCheck::kUnexpectedAead);
  EXPECT_THAT(std::string(describe(AckCheck::kGatewayKeyMismatch)),
              HasSubstr("gateway key mismatch"));
}

TEST(GatewayIdentity, LowOrderKeysAreRefusedOnBothSides) {
  const KeyPair gateway_static = generate_key_pair();
  const KeyPair client = generate_key_pair();
  const PublicKey zero{};  // the identity point: every X25519 with it is zero
  EXPECT_FALSE(gateway_reply(gateway_static, zero, 0));
  EXPECT_EQ(client_finish(client, gateway_static.public_key, 0, zero, 0, Confirm{}).check,
            AckCheck::kLowOrderKey);
}

class KeyFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gatehouse-keys-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

TEST_F(KeyFiles, WrittenPairsReadBackAndTheKeyringFindsThemById) {
  const KeyPair a = generate_key_pair();
  const KeyPair b = generate_key_pair();
  write_key_files(path("a.key"), a);
  write_key_files(path("b.key"), b);
  struct stat st {};
  ASSERT_EQ(::stat(path("a.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(read_public_key_file(path("a.key.pub")), std::vector<PublicKey>{a.public_key});
  EXPECT_THROW(write_key_files(path("a.key"), b), std::runtime_error) << "never overwrites";
  try {
    (void)read_public_key_file(path("a.key"));
    ADD_FAILURE() << "a private key file was taken as a pin";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is the gateway's private key file"));
  }

  const std::vector<std::string> paths{path("a.key"), path("b.key")};
  const GatewayKeyring ring = GatewayKeyring::load(paths);
  EXPECT_EQ(ring.size(), 2u);
  ASSERT_NE(ring.find(key_id_of(b.public_key)), nullptr);
  EXPECT_EQ(ring.find(key_id_of(b.public_key))->public_key, b.public_key);
  EXPECT_EQ(ring.find(key_id_of(generate_key_pair().public_key)), nullptr);

  const std::vector<std::string> twice{path("a.key"), path("a.key")};
  EXPECT_THROW(GatewayKeyring::load(twice), std::runtime_error);
}

TEST_F(KeyFiles, APrivateKeyOthersCouldReadIsRefused) {
  write_key_files(path("k.key"), generate_key_pair());
  ::chmod(path("k.key").c_str(), 0640);
  try {
    (void)read_private_key_file(path("k.key"));
    ADD_FAILURE() << "a group-readable key was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("mode 0640"));
    EXPECT_THAT(e.what(), HasSubstr("chmod 600"));
  }
  EXPECT_THROW(read_private_key_file(path("missing.key")), std::runtime_error);
}

TEST_F(KeyFiles, MalformedFilesNameTheLine) {
  std::ofstream(path("bad.pub")) << "# a comment\n\nnot-hex\n";
  try {
    (void)read_public_key_file(path("bad.pub"));
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bad.pub:3"));
  }
  std::ofstream(path("empty.pub")) << "# nothing\n";
  EXPECT_THROW(read_public_key_file(path("empty.pub")), std::runtime_error);
  const KeyPair a = generate_key_pair();
  std::ofstream(path("two.pub")) << to_hex(a.public_key) << "\n"
                                 << to_hex(generate_key_pair().public_key) << "\n";
  EXPECT_EQ(read_public_key_file(path("two.pub")).size(), 2u);
  EXPECT_EQ(read_public_key_file(path("two.pub")).front(), a.public_key);
}

}  // namespace
}  // namespace gatehouse::modern
