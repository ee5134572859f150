// Login providers over the real gateway (docs/login.md): a signed token logs
// its user in and the game sees that user; each refusal has its reason in
// the log and in gatehouse_logins_total; failed logins from one address are
// refused past the bound across two workers, and let in again after the
// window; a failed user id likewise; `any` refuses a non-loopback listener;
// `auth:` asks a user centre (the demo game's, a real process), and a slow,
// saturated or absent one refuses without locking players out.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gatehouse/token/key_files.h"
#include "gatehouse/token/signed_token.h"
#include "gateway_process.h"
#include "http_get.h"
#include "local_port.h"
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

// ------------------------------------------------------------------ login = auth:

/// The demo game's user centre (gatehouse-demo-game, which serves Auth on
/// its port: NAME:PASSWORD, a new NAME registers) as its own process.
class UserCentre {
 public:
  explicit UserCentre(int port, std::vector<std::string> extra = {}) : port_(port) {
    std::vector<std::string> argv = {DEMO_GAME_PATH, "--listen",
                                     "127.0.0.1:" + std::to_string(port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child_.emplace(argv);
    if (!wait_listening(port, kPatience)) {
      ADD_FAILURE() << "the user centre did not start on port " << port;
    }
  }
  ~UserCentre() {
    child_->kill(SIGTERM);
    if (!child_->wait(kPatience)) child_->kill(SIGKILL);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  std::optional<ChildProcess> child_;
};

class AuthLogin : public LoginTest {
 protected:
  void start_auth(const std::string& address, std::vector<std::string> extra = {},
                  std::uint32_t workers = 1, std::uint32_t bridges = 1) {
    extra.insert(extra.begin(), {"--login", "auth:" + address, "--duplicate-login", "allow"});
    GatewayOptions options{game_.port(), workers, std::move(extra), {}};
    options.bridges = bridges;
    gateway_.emplace(std::move(options));
  }
  double metric(const std::string& name) {
    const auto m = scrape(gateway_->metrics_port());
    const auto it = m.find(name);
    return it == m.end() ? 0 : it->second;
  }
};

TEST_F(AuthLogin, TheUserCentreSaysWhoThePlayerIsAndTheGameSeesThatUser) {
  const UserCentre centre(free_port());
  start_auth(centre.address());
  const std::int32_t ann_id = login("ann:pw-1").uid();  // registers the account
  ASSERT_GT(ann_id, 0);
  const auto ann = logged_in_client(gateway_->port(), "device-a", "ann:pw-1", /*encrypt=*/true);
  ASSERT_NE(ann, nullptr);
  ASSERT_TRUE(echo_works(*ann, "hello"));
  EXPECT_TRUE(game_.wait_for_frames(ann_id, 1, kPatience)) << "the game saw another user id";

  const LoginResult bob = login("bob:pw-2");
  ASSERT_TRUE(bob.ok());
  EXPECT_NE(bob.uid(), ann_id) << "two accounts, two ids";
  EXPECT_EQ(login("ann:pw-1").uid(), ann_id) << "the same account, the same id";

  const LoginResult wrong = login("ann:guess");
  EXPECT_EQ(wrong.status, LoginResult::Status::kRefused);
  EXPECT_TRUE(metric_reaches(refused("auth_refused"), 1));
  EXPECT_TRUE(gateway_->wait_log("refused (user " + std::to_string(ann_id) + ")"))
      << "the bridge logs the account the service named";
  EXPECT_TRUE(gateway_->wait_log("refusal=auth_refused user=" + std::to_string(ann_id)));
}

// With two bridges a login's auth call goes to the bridge its slot picks
// (its user is not known yet), and its game stream to the one its user
// picks: a verdict from one bridge often opens the stream on the other.
TEST_F(AuthLogin, WithTwoBridgesTheSlotsBridgeAsksAndTheUsersBridgePlays) {
  const UserCentre centre(free_port());
  start_auth(centre.address(), {}, /*workers=*/2, /*bridges=*/2);
  struct Player {
    std::unique_ptr<Client> client;
    std::int32_t uid;
  };
  std::vector<Player> players;
  for (int i = 0; i < 16; ++i) {
    auto c = std::make_unique<Client>();
    c->connect("127.0.0.1", gateway_->port(), kPatience);
    const LoginResult result =
        c->login("device-" + std::to_string(i), "p" + std::to_string(i) + ":pw", kPatience);
    ASSERT_TRUE(result.ok()) << i;
    players.push_back({std::move(c), result.uid()});
  }
  std::set<std::uint32_t> asked;    // bridges that made auth calls
  std::set<std::uint32_t> playing;  // bridges that hold the streams
  int crossed = 0;                  // logins asked on one bridge, played on the other
  const Settings settings = gateway_->segment().settings();
  auto sessions = gateway_->segment().sessions();
  for (Player& p : players) {
    ASSERT_TRUE(echo_works(*p.client, "hello"));
    EXPECT_TRUE(game_.wait_for_frames(p.uid, 1, kPatience)) << "the game saw another user id";
    for (std::uint32_t slot = 0; slot < sessions.slots(); ++slot) {
      const shm::ConnectionId id = sessions.live_id(slot);
      const Session* s = id ? sessions.find(id) : nullptr;
      if (s == nullptr || s->port != p.client->local_port()) continue;
      EXPECT_EQ(s->user_id, p.uid);
      asked.insert(bridge_of_slot(slot, settings));
      playing.insert(bridge_of_user(s->user_id, settings));
      crossed += bridge_of_slot(slot, settings) != bridge_of_user(s->user_id, settings) ? 1 : 0;
    }
  }
  EXPECT_EQ(asked, (std::set<std::uint32_t>{0, 1}));
  EXPECT_EQ(playing, (std::set<std::uint32_t>{0, 1}));
  EXPECT_GT(crossed, 0) << "16 logins, none crossing bridges";
  EXPECT_EQ(gateway_->log_count("reason="), 0u) << gateway_->log();
}

TEST_F(AuthLogin, GuessesAtOnePasswordAreBoundedPerUser) {
  const UserCentre centre(free_port());
  // Loopback is exempt from the per-address limits: only the per-user one
  // stands between a guesser and the account.
  start_auth(centre.address(), {"--login-failures-per-user", "2"});
  const std::int32_t carol = login("carol:right").uid();
  ASSERT_GT(carol, 0);
  EXPECT_EQ(login("carol:wrong-1").status, LoginResult::Status::kRefused);
  EXPECT_EQ(login("carol:wrong-2").status, LoginResult::Status::kRefused);
  EXPECT_EQ(login("carol:right").status, LoginResult::Status::kRefused)
      << "the right password too, while the account is in backoff";
  EXPECT_TRUE(gateway_->wait_log("refusal=user_backoff user=" + std::to_string(carol)));
  EXPECT_GT(login("dave:pw").uid(), 0) << "another account is not affected";
}

TEST_F(AuthLogin, ASlowUserCentreTimesOut) {
  const UserCentre centre(free_port(), {"--auth-delay-ms", "3000"});
  start_auth(centre.address(), {"--auth-timeout", "0.5"});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(login("erin:pw").status, LoginResult::Status::kRefused);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2900))
      << "refused at auth-timeout, not when the service answered";
  EXPECT_TRUE(metric_reaches(refused("auth_timeout"), 1));
  EXPECT_TRUE(gateway_->wait_log("no answer within the deadline"));
}

TEST_F(AuthLogin, LoginsBeyondTheBoundAreRefusedAtOnce) {
  const UserCentre centre(free_port(), {"--auth-delay-ms", "3000"});
  start_auth(centre.address(), {"--auth-timeout", "30", "--auth-max-inflight", "1"});
  // While one login waits for the slow service, the next is refused at once.
  auto waiting = std::async(std::launch::async, [&] { return login("frank:pw"); });
  ASSERT_TRUE(metric_reaches("gatehouse_auth_calls_in_flight", 1));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(login("gina:pw").status, LoginResult::Status::kRefused);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500))
      << "refused before the waiting call was answered";
  EXPECT_TRUE(metric_reaches(refused("auth_busy"), 1));
  EXPECT_GT(waiting.get().uid(), 0) << "the waiting login succeeds when the service answers";
}

TEST_F(AuthLogin, AUserCentreThatIsDownRefusesWithoutLockingPlayersOut) {
  const int port = free_port();
  // Per address, 2 failures: a down service's refusals must not count.
  start_auth("127.0.0.1:" + std::to_string(port),
             {"--login-failures-per-ip", "2", "--address-limits-exempt", "none"});
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(login("hank:pw").status, LoginResult::Status::kRefused) << i;
  }
  EXPECT_TRUE(metric_reaches(refused("auth_unavailable"), 4));
  EXPECT_EQ(metric(refused("address_backoff")), 0);

  const UserCentre centre(port);  // it comes back
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  std::int32_t uid = 0;
  while (uid == 0 && std::chrono::steady_clock::now() < deadline) {
    uid = login("hank:pw").uid();
    if (uid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_GT(uid, 0) << "logins work again once the user centre is back";
}

}  // namespace
}  // namespace gatehouse::testing
