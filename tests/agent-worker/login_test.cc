// Login providers (the token table, signed tokens, accept-any's stable ids)
// and the failed-login limits.
#include "gatehouse/worker/login.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "gatehouse/token/token_file.h"
#include "gatehouse/worker/login_failures.h"

namespace gatehouse::worker {
namespace {

constexpr std::int64_t kNow = 1'800'000'000;

protocol::LoginRequest request(std::string_view udid, std::string_view token) {
  protocol::LoginRequest r;
  r.open_udid = udid;
  r.client_certificate = token;
  return r;
}

std::string write_file(const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gatehouse-tokens-" + std::to_string(::getpid()) + "-" +
                     std::to_string(std::hash<std::string>{}(text)));
  std::ofstream(path) << text;
  return path.string();
}

TEST(AcceptAnyLogin, SameDeviceSameIdOthersDifferNeverOne) {
  AcceptAnyLogin login;
  const auto a = login.authenticate(request("device-a", ""), kNow);
  const auto b = login.authenticate(request("device-b", ""), kNow);
  ASSERT_TRUE(a.uid != 0 && b.uid != 0);
  EXPECT_EQ(login.authenticate(request("device-a", "x"), kNow).uid, a.uid);
  EXPECT_NE(a.uid, b.uid);
  EXPECT_GE(a.uid, 1);
  const auto none = login.authenticate(request("", ""), kNow);
  EXPECT_EQ(none.uid, 0) << "no device, no id";
  EXPECT_EQ(none.refusal, LoginRefusal::kNoDevice);
}

TEST(StaticTokenLogin, HashedFileMapsTokensToIds) {
  const auto path = write_file("# players\n" + token::hash_token("tok-a") + " 42\n\n  " +
                               token::hash_token("tok-b") + "   7  \n");
  auto login = StaticTokenLogin::from_file(path);
  EXPECT_EQ(login.authenticate(request("x", "tok-a"), kNow).uid, 42);
  EXPECT_EQ(login.authenticate(request("x", "tok-b"), kNow).uid, 7);
  EXPECT_EQ(login.authenticate(request("x", "tok-c"), kNow).refusal, LoginRefusal::kUnknownToken);
  EXPECT_EQ(login.authenticate(request("x", token::hash_token("tok-a")), kNow).uid, 0)
      << "the hash is not the token";
  EXPECT_EQ(login.authenticate(request("x", ""), kNow).uid, 0);
  std::filesystem::remove(path);
  EXPECT_THROW(StaticTokenLogin::from_file("/nonexistent/tokens"), std::runtime_error);
}

TEST(SignedTokenLogin, RefusalsCarryTheirReasonAndOnlyAuthenticClaimsCount) {
  const token::SecretKey key = token::SecretKey::generate();
  const token::SecretKey other = token::SecretKey::generate();
  SignedTokenLogin login(token::Verifier({key.public_key()}, "eu"));
  const auto verdict = [&](const std::string& t) {
    return login.authenticate(request("", t), kNow);
  };
  EXPECT_EQ(verdict(token::mint(key, 42, kNow + 10, "eu")).uid, 42);
  const auto expired = verdict(token::mint(key, 42, kNow, "eu"));
  EXPECT_EQ(expired.refusal, LoginRefusal::kExpired);
  EXPECT_TRUE(expired.counts_against_user);
  EXPECT_EQ(expired.claimed_uid, 42);
  EXPECT_EQ(verdict(token::mint(key, 42, kNow + 10, "us")).refusal, LoginRefusal::kWrongAudience);
  const auto unknown = verdict(token::mint(other, 42, kNow + 10, "eu"));
  EXPECT_EQ(unknown.refusal, LoginRefusal::kUnknownKey);
  EXPECT_FALSE(unknown.counts_against_user) << "a forged claim must not lock user 42 out";
  EXPECT_EQ(verdict("not a token").refusal, LoginRefusal::kMalformed);
}

/// Settings for LoginFailures: `workers` workers, a 60 s window.
Settings failure_settings(std::uint32_t per_ip, std::uint32_t per_user, std::uint32_t workers) {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = workers;
  s.login_failures_per_ip = per_ip;
  s.login_failures_per_user = per_user;
  s.login_failure_window_ms = 60'000;
  return s;
}

constexpr std::uint8_t kAddressA[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
constexpr std::uint8_t kAddressB[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2};
constexpr std::int64_t kSecond = 1'000'000'000;

TEST(LoginFailures, AnAddressIsBlockedAfterItsShareAndRecoversWithTheWindow) {
  const Settings s = failure_settings(8, 0, 2);  // 4 per worker
  LoginFailures failures(s);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(failures.address_blocked(kAddressA, 0)) << i;
    failures.failed(kAddressA, 0, 0);
  }
  EXPECT_TRUE(failures.address_blocked(kAddressA, 0));
  EXPECT_FALSE(failures.address_blocked(kAddressB, 0)) << "another address is not";
  // 4 a minute: one back every 15 s.
  EXPECT_TRUE(failures.address_blocked(kAddressA, 14 * kSecond));
  EXPECT_FALSE(failures.address_blocked(kAddressA, 15 * kSecond));
}

TEST(LoginFailures, IPv6AddressesShareTheirSlash64AndExemptOnesAreNotCounted) {
  Settings s = failure_settings(1, 0, 1);
  std::uint8_t v6a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
  std::uint8_t v6b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 2};
  s.address_limits_exempt_count = 1;
  s.address_limits_exempt[0] =
      AddressRange{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2}, 128};
  LoginFailures failures(s);
  failures.failed(v6a, 0, 0);
  EXPECT_TRUE(failures.address_blocked(v6b, 0));
  for (int i = 0; i < 5; ++i) failures.failed(kAddressB, 0, 0);
  EXPECT_FALSE(failures.address_blocked(kAddressB, 0)) << "exempt";
}

TEST(LoginFailures, AUserIsBlockedAfterItsShareWhateverTheAddress) {
  LoginFailures failures(failure_settings(0, 4, 2));  // 2 per worker
  failures.failed(kAddressA, 42, 0);
  EXPECT_FALSE(failures.user_blocked(42, 0));
  failures.failed(kAddressB, 42, 0);
  EXPECT_TRUE(failures.user_blocked(42, 0));
  EXPECT_FALSE(failures.user_blocked(43, 0));
  EXPECT_FALSE(failures.address_blocked(kAddressA, 0)) << "per-ip off";
  EXPECT_FALSE(failures.user_blocked(42, 30 * kSecond)) << "2 a minute: one back in 30 s";
}

TEST(LoginFailures, TheTableIsBounded) {
  LoginFailures failures(failure_settings(0, 1, 1));
  for (std::int32_t uid = 1; uid <= static_cast<std::int32_t>(LoginFailures::kMaxEntries) + 100;
       ++uid) {
    failures.failed(kAddressA, uid, 0);
  }
  EXPECT_LE(failures.entries(), LoginFailures::kMaxEntries);
}

}  // namespace
}  // namespace gatehouse::worker
