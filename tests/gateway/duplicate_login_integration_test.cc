// One session per player (--duplicate-login), end to end: real gateway
// processes with two workers, real clients, a real gRPC game service that
// records every stream it sees, for each policy.
#include <algorithm>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gateway_process.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

constexpr std::int32_t kUser = 1001;

class DuplicateLoginTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) {
    // Two workers: consecutive connections land on different ones.
    gateway_.emplace(
        GatewayOptions{game_.port(), 2, std::move(extra), {"tok-player 1001", "tok-other 1002"}});
  }
  std::unique_ptr<client::Client> player(std::string_view udid, bool encrypt = true) {
    return logged_in_client(gateway_->port(), udid, "tok-player", encrypt);
  }
  /// The user's streams, as the game saw them, never overlap: each opened
  /// after every earlier one had ended.
  void expect_one_stream_at_a_time() {
    auto streams = game_.streams();
    std::erase_if(streams, [](const FakeStream& s) { return s.user_id != kUser; });
    std::sort(streams.begin(), streams.end(),
              [](const FakeStream& a, const FakeStream& b) { return a.opened_at < b.opened_at; });
    for (std::size_t i = 1; i < streams.size(); ++i) {
      EXPECT_TRUE(streams[i - 1].ended)
          << "stream " << i - 1 << " still up when " << i << " opened";
      EXPECT_LE(streams[i - 1].ended_at, streams[i].opened_at) << "streams " << i - 1 << ", " << i;
    }
  }
  std::size_t live_streams_of_user() {
    const auto streams = game_.streams();
    return static_cast<std::size_t>(
        std::count_if(streams.begin(), streams.end(),
                      [](const auto& s) { return s.user_id == kUser && !s.ended; }));
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

// The default, replace: the second login (on the other worker) closes the
// first session with reason replaced; the newcomer is served, on the only
// stream of the user.
TEST_F(DuplicateLoginTest, ASecondLoginReplacesTheFirstSession) {
  start();
  auto first = player("phone", /*encrypt=*/true);
  ASSERT_TRUE(echo_works(*first, "from the phone"));
  auto second = player("tablet", /*encrypt=*/false);
  EXPECT_TRUE(first->wait_closed(kPatience)) << "the first session is closed";
  EXPECT_TRUE(gateway_->wait_log("reason=replaced")) << gateway_->log();
  EXPECT_TRUE(echo_works(*second, "from the tablet"));
  EXPECT_EQ(live_streams_of_user(), 1u);
  expect_one_stream_at_a_time();
  EXPECT_EQ(gateway_->log_count("reason=replaced"), 1u);
}

// Eight logins of one user at once over both workers end with exactly one
// live session and one game stream, whichever login won.
TEST_F(DuplicateLoginTest, ConcurrentLoginsEndWithOneSessionAndOneStream) {
  start();
  constexpr int kLogins = 8;
  std::vector<std::future<std::unique_ptr<client::Client>>> logins;
  for (int i = 0; i < kLogins; ++i) {
    logins.push_back(std::async(std::launch::async, [this, i] {
      auto c = std::make_unique<client::Client>();
      c->connect("127.0.0.1", gateway_->port(), kPatience);
      c->login("device-" + std::to_string(i), "tok-player", kPatience);
      return c;
    }));
  }
  std::vector<std::unique_ptr<client::Client>> clients;
  for (auto& f : logins) clients.push_back(f.get());
  // Every login but the latest is replaced.
  ASSERT_TRUE(gateway_->wait_log_count("reason=replaced", kLogins - 1)) << gateway_->log();
  std::vector<client::Client*> alive;
  for (auto& c : clients) {
    if (!c->wait_closed(std::chrono::milliseconds(200))) alive.push_back(c.get());
  }
  ASSERT_EQ(alive.size(), 1u) << gateway_->log();
  EXPECT_TRUE(echo_works(*alive[0], "the one left"));
  EXPECT_EQ(live_streams_of_user(), 1u);
  expect_one_stream_at_a_time();
}

// refuse: the newcomer's login fails (reply 12, reason duplicate_login)
// while the first session lives; once it has gone, the user may log in.
TEST_F(DuplicateLoginTest, RefuseKeepsTheFirstSessionAndRefusesTheNewcomer) {
  start({"--duplicate-login", "refuse"});
  auto first = player("phone");
  auto second = std::make_unique<client::Client>();
  second->connect("127.0.0.1", gateway_->port(), kPatience);
  EXPECT_FALSE(second->login("tablet", "tok-player", kPatience).ok());
  EXPECT_TRUE(second->wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=duplicate_login")) << gateway_->log();
  EXPECT_TRUE(echo_works(*first, "still mine"));
  first.reset();  // leaves
  ASSERT_TRUE(gateway_->wait_log("reason=client_closed"));
  bool in = false;
  for (int i = 0; i < 50 && !in; ++i) {  // the bridge hears of the close a moment later
    auto third = std::make_unique<client::Client>();
    third->connect("127.0.0.1", gateway_->port(), kPatience);
    in = third->login("laptop", "tok-player", kPatience).ok() && echo_works(*third, "mine now");
    if (!in) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(in);
  expect_one_stream_at_a_time();
}

// allow: gonet2's behaviour, both sessions live, each with its stream.
TEST_F(DuplicateLoginTest, AllowKeepsBothSessions) {
  start({"--duplicate-login", "allow"});
  auto first = player("phone");
  auto second = player("tablet");
  EXPECT_TRUE(echo_works(*first, "one"));
  EXPECT_TRUE(echo_works(*second, "two"));
  EXPECT_EQ(live_streams_of_user(), 2u);
  EXPECT_EQ(gateway_->log_count("reason=replaced"), 0u);
}

}  // namespace
}  // namespace gatehouse::testing
