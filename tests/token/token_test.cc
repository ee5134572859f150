// gatehouse::token: signed login tokens, their key files, the hashed table.
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "gatehouse/token/key_files.h"
#include "gatehouse/token/signed_token.h"
#include "gatehouse/token/token_file.h"

namespace gatehouse::token {
namespace {

constexpr std::int64_t kNow = 1'800'000'000;

/// The docs/login.md test vector's key: seed bytes 0, 1, ..., 31.
SecretKey vector_key() {
  unsigned char seed[32];
  for (int i = 0; i < 32; ++i) seed[i] = static_cast<unsigned char>(i);
  SecretKey sk;
  unsigned char pk[kPublicKeyBytes];
  EXPECT_EQ(sodium_init() >= 0, true);
  crypto_sign_seed_keypair(pk, sk.bytes.data(), seed);
  return sk;
}

class TempDir {
 public:
  TempDir()
      : path_(std::filesystem::temp_directory_path() /
              ("gatehouse-token-test-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

TEST(SignedToken, AGoodTokenVerifiesAsItsUser) {
  const SecretKey key = SecretKey::generate();
  const Verifier verifier({key.public_key()}, "");
  const Verdict v = verifier.verify(mint(key, 42, kNow + 60, ""), kNow);
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(v.uid, 42);
}

TEST(SignedToken, ExpiredAtItsExpiry) {
  const SecretKey key = SecretKey::generate();
  const Verifier verifier({key.public_key()}, "");
  const std::string token = mint(key, 7, kNow + 60, "");
  EXPECT_TRUE(verifier.verify(token, kNow + 59).ok);
  const Verdict v = verifier.verify(token, kNow + 60);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.refusal, Refusal::kExpired);
  EXPECT_EQ(v.uid, 7) << "the claimed user, for the log and the per-user limit";
}

TEST(SignedToken, AnyChangedByteIsABadSignatureOrMalformed) {
  const SecretKey key = SecretKey::generate();
  const Verifier verifier({key.public_key()}, "aud");
  const std::string token = mint(key, 7, kNow + 60, "aud");
  // Another user id in the payload, signature kept: a forgery.
  const std::string forged = mint(key, 8, kNow + 60, "aud");
  const std::string spliced = forged.substr(0, forged.find('.')) + token.substr(token.find('.'));
  EXPECT_EQ(verifier.verify(spliced, kNow).refusal, Refusal::kBadSignature);
  EXPECT_EQ(verifier.verify(spliced, kNow).uid, 8);
  for (std::size_t i = 0; i < token.size(); ++i) {
    std::string bad = token;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    const Verdict v = verifier.verify(bad, kNow);
    EXPECT_FALSE(v.ok) << "byte " << i;
  }
}

TEST(SignedToken, AnotherAudienceOrNoneIsRefused) {
  const SecretKey key = SecretKey::generate();
  const Verifier gateway({key.public_key()}, "eu-1");
  EXPECT_TRUE(gateway.verify(mint(key, 1, kNow + 60, "eu-1"), kNow).ok);
  EXPECT_EQ(gateway.verify(mint(key, 1, kNow + 60, "us-1"), kNow).refusal, Refusal::kWrongAudience);
  EXPECT_EQ(gateway.verify(mint(key, 1, kNow + 60, ""), kNow).refusal, Refusal::kWrongAudience);
  const Verifier no_audience({key.public_key()}, "");
  EXPECT_EQ(no_audience.verify(mint(key, 1, kNow + 60, "eu-1"), kNow).refusal,
            Refusal::kWrongAudience)
      << "a token for another service does not open a gateway that names none";
}

TEST(SignedToken, AKeyTheGatewayDoesNotHoldIsAnUnknownKey) {
  const SecretKey ours = SecretKey::generate();
  const SecretKey theirs = SecretKey::generate();
  const Verifier verifier({ours.public_key()}, "");
  EXPECT_EQ(verifier.verify(mint(theirs, 5, kNow + 60, ""), kNow).refusal, Refusal::kUnknownKey);
}

TEST(SignedToken, RotationBothKeysVerifyThenTheOldOneIsGone) {
  const SecretKey old_key = SecretKey::generate();
  const SecretKey new_key = SecretKey::generate();
  const std::string old_token = mint(old_key, 1, kNow + 60, "");
  const std::string new_token = mint(new_key, 2, kNow + 60, "");
  const Verifier during({old_key.public_key(), new_key.public_key()}, "");
  EXPECT_EQ(during.verify(old_token, kNow).uid, 1);
  EXPECT_TRUE(during.verify(old_token, kNow).ok);
  EXPECT_TRUE(during.verify(new_token, kNow).ok);
  const Verifier after({new_key.public_key()}, "");
  EXPECT_EQ(after.verify(old_token, kNow).refusal, Refusal::kUnknownKey);
  EXPECT_TRUE(after.verify(new_token, kNow).ok);
  EXPECT_THROW(Verifier({new_key.public_key(), new_key.public_key()}, ""), std::invalid_argument);
}

TEST(SignedToken, MalformedTokensAreRefusedAsSuch) {
  const SecretKey key = SecretKey::generate();
  const Verifier verifier({key.public_key()}, "");
  const std::string good = mint(key, 1, kNow + 60, "");
  for (const std::string& bad :
       {std::string(), std::string("."), std::string("abc"), good.substr(0, good.find('.')),
        good + "A", "=" + good, good.substr(0, good.find('.')) + ".." + good.substr(good.find('.')),
        std::string(4000, 'A') + "." + std::string(86, 'A')}) {
    EXPECT_EQ(verifier.verify(bad, kNow).refusal, Refusal::kMalformed) << bad;
  }
  EXPECT_THROW(mint(key, 0, kNow, ""), std::invalid_argument);
  EXPECT_THROW(mint(key, 1, kNow, std::string(kMaxAudienceBytes + 1, 'a')), std::invalid_argument);
}

/// docs/login.md's test vector, byte for byte (Ed25519 is deterministic).
TEST(SignedToken, TheDocumentedTestVector) {
  const SecretKey key = vector_key();
  EXPECT_EQ(hex(key.public_key().bytes.data(), kPublicKeyBytes),
            "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
  EXPECT_EQ(key.public_key().id(), 0x9d24e2eeu);
  const std::string token = mint(key, 42, 1'800'003'600, "demo");
  EXPECT_EQ(
      token,
      "AZ0k4u4AAAAqAAAAAGtJ4BAEZGVtbw."
      "_mShl8Mt5Wv1XvEQLvBNAbdluhAtTCjSx-_U7Qgy5kjUuiJkYYj24RpLpq8IANmHBg3FeuJoJTIyXL9Kj-WlBg");
  const Verdict v = Verifier({key.public_key()}, "demo").verify(token, 1'800'000'000);
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(v.uid, 42);
}

TEST(KeyFiles, KeygenFilesReadBackAndTooOpenOnesAreRefused) {
  const TempDir dir;
  const SecretKey key = SecretKey::generate();
  write_key_pair(dir / "k", key);
  EXPECT_EQ(read_secret_key(dir / "k.key").bytes, key.bytes);
  EXPECT_EQ(read_public_key(dir / "k.pub").bytes, key.public_key().bytes);
  EXPECT_THROW(write_key_pair(dir / "k", key), std::runtime_error) << "never replaces a key";

  ::chmod((dir / "k.pub").c_str(), 0664);
  EXPECT_THROW(read_public_key(dir / "k.pub"), std::runtime_error) << "group-writable";
  ::chmod((dir / "k.pub").c_str(), 0644);
  ::chmod((dir / "k.key").c_str(), 0640);
  EXPECT_THROW(read_secret_key(dir / "k.key"), std::runtime_error) << "group-readable";

  write_key_pair(dir / "k2", SecretKey::generate());
  EXPECT_EQ(read_public_keys(dir / "k.pub" + "," + dir / "k2.pub").size(), 2u);
  std::ofstream(dir / "bad.pub") << "# comment\nnot hex\n";
  ::chmod((dir / "bad.pub").c_str(), 0644);
  EXPECT_THROW(read_public_key(dir / "bad.pub"), std::runtime_error);
  EXPECT_THROW(read_public_key(dir / "missing.pub"), std::runtime_error);
}

TEST(TokenFile, HashedLinesMapToIdsAndPlaintextIsRefused) {
  const TempDir dir;
  {
    std::ofstream(dir / "t") << "# players\n"
                             << hash_token("tok-a") << " 42\n\n  " << hash_token("tok-b")
                             << "   7  \n";
  }
  const auto table = read_token_file(dir / "t");
  EXPECT_EQ(table.at(hash_token("tok-a")), 42);
  EXPECT_EQ(table.at(hash_token("tok-b")), 7);
  EXPECT_EQ(table.size(), 2u);

  for (const std::string& bad :
       {std::string("tok-a 42\n"), hash_token("x") + " 0\n", hash_token("x") + "\n",
        hash_token("x") + " 5 extra\n", hash_token("x") + " 2147483648\n",
        "blake2b256:" + std::string(64, 'G') + " 1\n"}) {
    std::ofstream(dir / "bad") << "# ok\n" << bad;
    try {
      read_token_file(dir / "bad");
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(dir / "bad:2"), std::string::npos) << e.what();
    }
  }
}

TEST(TokenFile, HashingATableKeepsCommentsAndHashedLines) {
  std::istringstream in("# players\ntok-a 42\n" + hash_token("tok-b") + " 7\n");
  std::ostringstream out;
  hash_token_file(in, out);
  EXPECT_EQ(out.str(),
            "# players\n" + hash_token("tok-a") + " 42\n" + hash_token("tok-b") + " 7\n");
  // The same as `printf %s tok-a | b2sum -l 256`.
  EXPECT_EQ(hash_token("tok-a").substr(0, 11), "blake2b256:");
  std::istringstream bad("tok-a\n");
  EXPECT_THROW(hash_token_file(bad, out), std::runtime_error);
}

}  // namespace
}  // namespace gatehouse::token
