// Login providers over the real gateway (docs/login.md): a signed token logs
// its user in and the game sees that user; each refusal has its reason in
// the log and in gatehouse_logins_total; failed logins from one address are
// refused past the bound across two workers, and let in again after the
// window; a failed user id likewise; `any` refuses a non-loopback listener.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gatehouse/token/key_files.h"
#include "gatehouse/token/signed_token.h"
#include "gateway_process.h"
#include "http_get.h"
#include "patience.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using client::Client;
using client::LoginResult;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// "name{labels}" -> value, for every sample line of a scrape.
std::map<std::string, double> scrape(std::uint16_t port) {
  std::map<std::string, double> out;
  std::istringstream lines(http_get(port, "/metrics"));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

std::string refused(std::string_view reason) {
  return "gatehouse_logins_total{result=\"refused\",reason=\"" + std::string(reason) + "\"}";
}

class LoginTest : public ::testing::Test {
 protected:
  LoginTest()
      : dir_(std::filesystem::temp_directory_path() /
             ("gatehouse-login-test-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    key_ = token::SecretKey::generate();
    token::write_key_pair((dir_ / "current").string(), key_);
  }
  ~LoginTest() override { std::filesystem::remove_all(dir_); }

  /// A gateway with signed-token login (audience "eu") in front of game_.
  void start(std::vector<std::string> extra = {}, std::uint32_t workers = 1) {
    extra.insert(extra.begin(), {"--login", "signed:" + (dir_ / "current.pub").string(),
                                 "--login-audience", "eu"});
    gateway_.emplace(GatewayOptions{game_.port(), workers, std::move(extra), {}});
  }

  /// One login on a fresh connection.
  LoginResult login(const std::string& token) {
    Client c;
    c.connect("127.0.0.1", gateway_->port(), kPatience);
    return c.login("device", token, kPatience);
  }

  std::string good(std::int32_t uid) { return token::mint(key_, uid, unix_now() + 3600, "eu"); }

  /// True once the metric reads at least `value` (each worker publishes on
  /// its own duty cycle).
  bool metric_reaches(const std::string& name, double value) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < deadline) {
      const auto m = scrape(gateway_->metrics_port());
      if (const auto it = m.find(name); it != m.end() && it->second >= value) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::filesystem::path dir_;
  token::SecretKey key_;
  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_F(LoginTest, ASignedTokenLogsItsUserInAndTheGameSeesThatUser) {
  start();
  const auto c = logged_in_client(gateway_->port(), "device", good(424242), /*encrypt=*/true);
  ASSERT_TRUE(echo_works(*c, "hello"));
  EXPECT_TRUE(game_.wait_for_frames(424242, 1, kPatience)) << "the game saw another user id";
}

TEST_F(LoginTest, EachRefusalHasItsReasonInTheLogAndTheMetric) {
  const token::SecretKey stranger = token::SecretKey::generate();
  start();
  const std::string token = good(7);
  const std::string forged = token::mint(key_, 8, unix_now() + 3600, "eu");
  const std::map<std::string, std::string> cases = {
      {"expired", token::mint(key_, 7, unix_now() - 1, "eu")},
      {"wrong_audience", token::mint(key_, 7, unix_now() + 3600, "us")},
      {"unknown_key", token::mint(stranger, 7, unix_now() + 3600, "eu")},
      {"bad_signature", forged.substr(0, forged.find('.')) + token.substr(token.find('.'))},
      {"malformed", "not-a-token"},
  };
  for (const auto& [reason, bad] : cases) {
    const LoginResult r = login(bad);
    EXPECT_EQ(r.status, LoginResult::Status::kRefused) << reason;
    EXPECT_TRUE(gateway_->wait_log("refusal=" + reason)) << reason;
    EXPECT_TRUE(metric_reaches(refused(reason), 1)) << reason;
  }
  EXPECT_TRUE(login(token).ok()) << "loopback is exempt from the per-address limit";
}

// (A retired key's tokens are unknown_key: tests/token/token_test.cc.)
TEST_F(LoginTest, DuringARotationBothKeysLogIn) {
  const token::SecretKey next = token::SecretKey::generate();
  token::write_key_pair((dir_ / "next").string(), next);
  gateway_.emplace(GatewayOptions{
      game_.port(),
      1,
      {"--login", "signed:" + (dir_ / "current.pub").string() + "," + (dir_ / "next.pub").string(),
       "--login-audience", "eu"},
      {}});
  EXPECT_EQ(login(good(1)).uid(), 1);
  EXPECT_EQ(login(token::mint(next, 2, unix_now() + 3600, "eu")).uid(), 2);
}

// Failed logins from one address, spread over two workers: at most the
// bound is checked, the rest refused unchecked; after the window the
// address logs in again.
TEST_F(LoginTest, FailedLoginsFromOneAddressAreBoundedAcrossWorkersAndRecover) {
  start({"--address-limits-exempt", "none", "--login-failures-per-ip", "4",
         "--login-failure-window", "6"},
        /*workers=*/2);
  const auto began = std::chrono::steady_clock::now();
  const token::SecretKey stranger = token::SecretKey::generate();
  const std::string bad = token::mint(stranger, 9, unix_now() + 3600, "eu");
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(login(bad).status, LoginResult::Status::kRefused) << i;
  }
  EXPECT_EQ(login(good(9)).status, LoginResult::Status::kRefused)
      << "a good token from a blocked address is refused unchecked";
  const bool backoff = metric_reaches(refused("address_backoff"), 9);
  auto m = scrape(gateway_->metrics_port());
  ASSERT_TRUE(backoff) << "unknown_key " << m[refused("unknown_key")] << ", address_backoff "
                       << m[refused("address_backoff")];
  // 4 at once, then each worker gives one back every 3 s (2 a 6 s window):
  // a slow machine may have earned a few more by now.
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began)
          .count();
  EXPECT_LE(m.at(refused("unknown_key")), 4 + 2 * (seconds / 3))
      << "more failures were checked than the bound";
  EXPECT_TRUE(gateway_->wait_log("refusal=address_backoff"));
  EXPECT_TRUE(gateway_->wait_log("[worker-0] login refused") &&
              gateway_->wait_log("[worker-1] login refused"))
      << "the attempts were meant to reach both workers";

  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  bool in = false;
  while (!in && std::chrono::steady_clock::now() < deadline) {
    in = login(good(9)).ok();
    if (!in) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(in) << "the address was not let in again after the window";
}

// Failures whose user id is authentic (an expired genuine token) count
// against that user: past the bound, even a good token of it is refused.
TEST_F(LoginTest, FailedLoginsOfOneUserAreBounded) {
  start({"--login-failures-per-user", "2"});
  const std::string expired = token::mint(key_, 55, unix_now() - 1, "eu");
  EXPECT_EQ(login(expired).status, LoginResult::Status::kRefused);
  EXPECT_EQ(login(expired).status, LoginResult::Status::kRefused);
  EXPECT_EQ(login(good(55)).status, LoginResult::Status::kRefused);
  EXPECT_TRUE(gateway_->wait_log("refusal=user_backoff user=55"));
  EXPECT_EQ(login(good(56)).uid(), 56) << "another user is not affected";
}

TEST(AnyLogin, RefusedOnANonLoopbackListenerUnlessAllowedThenWarned) {
  FakeGameService game;
  try {
    GatewayProcess refused_gateway(GatewayOptions{game.port(), 1, {}, {}, false, "0.0.0.0:0"});
    ADD_FAILURE() << "login = any started on 0.0.0.0";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("refused on listener 0.0.0.0:0"), std::string::npos)
        << e.what();
  }
  GatewayProcess allowed(
      GatewayOptions{game.port(), 1, {"--login-any-allow-public=true"}, {}, false, "0.0.0.0:0"});
  EXPECT_TRUE(allowed.wait_log("login = any on listener 0.0.0.0:0"));
  EXPECT_TRUE(logged_in_client(allowed.port(), "dev", "", false) != nullptr);
}

}  // namespace
}  // namespace gatehouse::testing
