// GameServices against real gRPC game services in the process
// (FakeGameService), the test playing the bridge's main thread: a session
// stays on the instance it was routed to whatever the view becomes (a join
// moves no live session; a removed instance keeps its sessions until they
// end, then goes); a moved instance keeps its name; the routing table in
// shared memory shows services, instances and sessions. A rebind service's
// sessions move: off an instance removed from the view (what was sent before
// the move reaches the old one, what after the new one), off an instance
// whose streams (or batched link) fail, and only past backend-wait with no
// instance to take them are they closed. Messages are routed to services by
// proto-number range.
#include "gatehouse/bridge/game_services.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include <grpcpp/support/status_code_enum.h>
#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "game_test_client.h"
#include "gatehouse/base/clock.h"
#include "gatehouse/game/demo_game.h"
#include "recording_events.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using gatehouse::testing::FakeGameService;
using testing::kWait;
using testing::RecordingEvents;

constexpr const char* kService = "game-10000";

class GameServicesTest : public ::testing::Test {
 protected:
  GameServicesTest()
      : doorbell_(shm::Doorbell::create()),
        wakeup_(doorbell_),
        metrics_(shard_),
        services_(std::make_unique<GameServices>(
            GameServices::Context{calls_, io_, events_, wakeup_, metrics_, *table_,
                                  shard_.in_flight, FrameNumbering::kGonet2, 60'000'000'000,
                                  "test-gw"},
            kService)) {}

  static DiscoveryView view(const ServiceInstances& instances) { return {{kService, instances}}; }

  /// Replaces services_ with one made from `plan`.
  void make_services(ServicesPlan plan, std::int64_t backend_wait_ns = 60'000'000'000) {
    services_.reset();
    services_ = std::make_unique<GameServices>(
        GameServices::Context{calls_, io_, events_, wakeup_, metrics_, *table_, shard_.in_flight,
                              FrameNumbering::kGonet2, backend_wait_ns, "test-gw"},
        std::move(plan));
  }
  static ServicesPlan rebind_plan() { return {{{kService, true}}, {}, {}}; }

  /// The sessions ended towards their workers so far.
  std::size_t ended_count() const {
    std::size_t n = 0;
    for (const auto& e : events_.events()) n += e.kind == testing::Recorded::kEnded ? 1 : 0;
    return n;
  }
  /// The users with a live stream on `game`.
  static std::vector<std::int64_t> users_on(const FakeGameService& game) {
    std::vector<std::int64_t> users;
    for (const auto& s : game.streams()) {
      if (!s.ended) users.push_back(s.user_id);
    }
    return users;
  }
  static bool has_live_stream(const FakeGameService& game, std::int64_t user) {
    const auto users = users_on(game);
    return std::find(users.begin(), users.end(), user) != users.end();
  }
  /// Sends `text` (a ping) on `user`'s session, where it is now.
  void send_text(std::int64_t user, const std::string& text) {
    const auto conn = static_cast<std::uint64_t>(user);
    const game::Bytes ping =
        gatehouse::testing::packet(game::demo::kPingReq, gatehouse::testing::to_bytes(text));
    services_->of(conn)->send(conn, 1, testing::span_of(ping), Origin{});
  }
  static game::Bytes ping_of(const std::string& text) {
    return gatehouse::testing::packet(game::demo::kPingReq, gatehouse::testing::to_bytes(text));
  }

  /// A rebind service's instance leaves the view: its sessions move to the
  /// other, each message on the stream of the instance it was sent to.
  /// A rebind service over game1 and game2 (`contract` "" or "batch:"),
  /// users 1-20 logged in; `on_game1`: those on game1.
  void rebind_users_over_two_instances(const std::string& contract,
                                       std::vector<std::int64_t>& on_game1);
  void sessions_move_off_a_removed_instance(const std::string& contract);
  /// A rebind service's instance dies: its sessions move to the other.
  void sessions_move_off_a_dead_instance(const std::string& contract);

  /// Flushes as the duty cycle would until `done()`.
  template <class Predicate>
  bool flush_until(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      services_->flush(monotonic_ns());
      io_.wait(1ms);  // as the bridge parks: the gonet2 connections wake it
    }
    return true;
  }

  /// Opens a session of `user` (conn = user) on the instance it routes to.
  Upstream* login(std::int64_t user) {
    const auto conn = static_cast<std::uint64_t>(user);
    Upstream* upstream = services_->route(conn, user);
    if (upstream != nullptr) upstream->open(conn, user, 0, nullptr);
    return upstream;
  }
  void logout(std::int64_t user) {
    const auto conn = static_cast<std::uint64_t>(user);
    services_->of(conn)->close(conn, Origin{});
    services_->closed(conn);
  }

  /// The routing table's counts of `instance` (summed over its rows), as
  /// published; -1 when it has no row.
  std::int64_t count_of(const std::string& instance, metrics::InstanceCounter counter) {
    metrics::RoutingNames names{};
    if (!metrics::read_routing(*table_, names)) return -1;
    std::int64_t n = -1;
    for (std::uint32_t i = 0; i < names.instance_count; ++i) {
      if (instance != names.instances[i].name) continue;
      n = std::max<std::int64_t>(n, 0) +
          static_cast<std::int64_t>(names.instances[i].counts[counter]);
    }
    return n;
  }
  /// Opens a session of `user` (conn = user) as a login does (a take-over
  /// after a bridge restart, login(), retries a failed stream instead).
  Upstream* log_in(std::int64_t user) {
    const auto conn = static_cast<std::uint64_t>(user);
    Upstream* upstream = services_->route(conn, user);
    const Origin origin{};
    if (upstream != nullptr) upstream->open(conn, user, 0, &origin);
    return upstream;
  }
  /// Sends one ping on `user`'s session and waits for the echo.
  void echo(std::int64_t user) {
    const auto conn = static_cast<std::uint64_t>(user);
    const std::size_t before = events_.events().size();
    const game::Bytes ping =
        gatehouse::testing::packet(game::demo::kPingReq, gatehouse::testing::to_bytes("hi"));
    services_->of(conn)->send(conn, 1, testing::span_of(ping), Origin{});
    ASSERT_TRUE(flush_until([&] { return events_.events().size() >= before + 1; }));
  }

  /// The routing table's row of `instance`: its sessions, -1 if none.
  std::int64_t sessions_of(const std::string& instance) {
    metrics::RoutingNames names{};
    if (!metrics::read_routing(*table_, names)) return -1;
    for (std::uint32_t i = 0; i < names.instance_count; ++i) {
      if (instance == names.instances[i].name) return table_->sessions[i].load();
    }
    return -1;
  }

  FakeGameService game1_{{.echo = true}};
  FakeGameService game2_{{.echo = true}};
  shm::Doorbell doorbell_;
  Wakeup wakeup_;
  metrics::Shard shard_{};
  metrics::Writer metrics_;
  std::unique_ptr<metrics::RoutingTable> table_ = std::make_unique<metrics::RoutingTable>();
  RecordingEvents events_;
  CallQueue calls_;
  IoPoller io_;
  std::unique_ptr<GameServices> services_;  // after calls_: goes first
};

TEST_F(GameServicesTest, ASessionStaysOnItsInstanceWhenAnotherJoins) {
  EXPECT_EQ(services_->route(1, 1), nullptr) << "no instance yet";
  services_->update(view({{"game1", game1_.address()}}));
  std::vector<Upstream*> before;
  for (std::int64_t u = 1; u <= 20; ++u) before.push_back(login(u));
  ASSERT_TRUE(flush_until([&] { return game1_.wait_for_streams(20, 0ms); }));
  EXPECT_EQ(sessions_of("game1"), 20);

  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  EXPECT_EQ(services_->live(), 2u);
  for (std::int64_t u = 1; u <= 20; ++u) {
    EXPECT_EQ(services_->route(static_cast<std::uint64_t>(u), u),
              before[static_cast<std::size_t>(u - 1)])
        << "kept";
  }
  int on_game2 = 0;
  for (std::int64_t u = 21; u <= 60; ++u) on_game2 += login(u) != before[0] ? 1 : 0;
  EXPECT_GT(on_game2, 5) << "the newcomer takes new sessions";
  EXPECT_LT(on_game2, 35);
  ASSERT_TRUE(flush_until(
      [&] { return game2_.wait_for_streams(static_cast<std::size_t>(on_game2), 0ms); }));
  EXPECT_TRUE(flush_until(
      [&] { return game1_.wait_for_streams(60u - static_cast<std::size_t>(on_game2), 0ms); }));
  EXPECT_EQ(sessions_of("game2"), on_game2);
}

TEST_F(GameServicesTest, ARemovedInstanceKeepsItsSessionsThenGoesWithTheLast) {
  services_->update(view({{"game1", game1_.address()}}));
  Upstream* const game1 = login(1);
  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  std::vector<std::int64_t> on_game1{1};
  for (std::int64_t u = 2; u <= 20; ++u) {
    if (login(u) == game1) on_game1.push_back(u);
  }
  ASSERT_LT(on_game1.size(), 20u);
  ASSERT_TRUE(flush_until([&] { return game1_.wait_for_streams(on_game1.size(), 0ms); }));

  services_->update(view({{"game2", game2_.address()}}));
  EXPECT_EQ(services_->live(), 1u);
  for (std::int64_t u = 100; u < 110; ++u) EXPECT_NE(login(u), game1) << "no new session there";
  for (const std::int64_t u : on_game1) {
    EXPECT_EQ(services_->of(static_cast<std::uint64_t>(u)), game1) << "sticky";
  }
  EXPECT_EQ(game1_.live_stream_count(), on_game1.size());

  // Their sessions end: the instance goes with the last stream.
  for (const std::int64_t u : on_game1) logout(u);
  ASSERT_TRUE(flush_until([&] { return sessions_of("game1") == -1; }));
  EXPECT_TRUE(flush_until([&] { return game1_.live_stream_count() == 0; }));
  for (const std::int64_t u : on_game1)
    EXPECT_EQ(services_->of(static_cast<std::uint64_t>(u)), nullptr);
}

TEST_F(GameServicesTest, AMovedInstanceKeepsItsNameAndSessions) {
  services_->update(view({{"game1", game1_.address()}}));
  Upstream* first = login(1);
  ASSERT_TRUE(flush_until([&] { return game1_.wait_for_streams(1, 0ms); }));
  services_->update(view({{"game1", game2_.address()}}));
  EXPECT_EQ(login(2), first) << "the same instance, moved";
  ASSERT_TRUE(flush_until([&] { return game2_.wait_for_streams(1, 0ms); }))
      << "new streams go to the new address";
  EXPECT_EQ(game1_.live_stream_count(), 1u) << "the stream up stays where it is";
  EXPECT_EQ(sessions_of("game1"), 2);
}

TEST_F(GameServicesTest, OtherServicesAreCountedAndBadAddressesIgnored) {
  services_->update({{kService, {{"game1", game1_.address()}, {"typo", "nowhere"}}},
                     {"snowflake-10000", {{"sf1", "127.0.0.1:1"}, {"sf2", "127.0.0.1:2"}}}});
  EXPECT_EQ(services_->live(), 1u);
  metrics::RoutingNames names{};
  ASSERT_TRUE(metrics::read_routing(*table_, names));
  ASSERT_EQ(names.service_count, 2u);
  EXPECT_STREQ(names.services[0].name, kService);
  EXPECT_EQ(names.services[0].instances, 1);
  EXPECT_STREQ(names.services[1].name, "snowflake-10000");
  EXPECT_EQ(names.services[1].instances, 2);
  ASSERT_EQ(names.instance_count, 1u);
  EXPECT_STREQ(names.instances[0].name, "game1");
  EXPECT_EQ(names.instances[0].state, metrics::kInstanceLive);
}

// An instance an operator disabled takes no new session and keeps the ones
// it has; the routing table says so; enabled, it takes sessions again. The
// list holds for an instance that joins later.
TEST_F(GameServicesTest, ADisabledInstanceTakesNoNewSessionAndKeepsItsOwn) {
  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  std::vector<Upstream*> before;
  for (std::int64_t u = 1; u <= 20; ++u) before.push_back(login(u));
  const std::int64_t on_game1 = sessions_of("game1");
  ASSERT_GT(on_game1, 0) << "20 users, none on game1";

  services_->set_disabled({"game1", "game3"});
  EXPECT_EQ(services_->live(), 1u);
  const auto state_of = [this](const std::string& instance) {
    metrics::RoutingNames names{};
    EXPECT_TRUE(metrics::read_routing(*table_, names));
    for (std::uint32_t i = 0; i < names.instance_count; ++i) {
      if (instance == names.instances[i].name) return names.instances[i].state;
    }
    return std::uint32_t{99};
  };
  EXPECT_EQ(state_of("game1"), metrics::kInstanceDisabled);
  EXPECT_EQ(state_of("game2"), metrics::kInstanceLive);
  for (std::int64_t u = 1; u <= 20; ++u) {
    EXPECT_EQ(services_->of(static_cast<std::uint64_t>(u)), before[static_cast<std::size_t>(u - 1)])
        << "user " << u;
  }
  for (std::int64_t u = 21; u <= 40; ++u) EXPECT_NE(login(u), nullptr) << "user " << u;
  EXPECT_EQ(sessions_of("game1"), on_game1) << "a new session went to the disabled one";
  EXPECT_EQ(sessions_of("game2"), 40 - on_game1);

  services_->update(view(
      {{"game1", game1_.address()}, {"game2", game2_.address()}, {"game3", game2_.address()}}));
  EXPECT_EQ(state_of("game3"), metrics::kInstanceDisabled) << "disabled before it joined";
  services_->set_disabled({});
  EXPECT_EQ(services_->live(), 3u);
  EXPECT_EQ(state_of("game1"), metrics::kInstanceLive);
}

// An instance's traffic and errors stay counters: they go on by name when
// the instance leaves the view and comes back, and when the bridge restarts
// (a new GameServices over the table its predecessor left), whatever row the
// instance gets.
TEST_F(GameServicesTest, AnInstancesCountsGoOnAcrossItsComingsAndGoingsAndABridgeRestart) {
  services_->update(view({{"game1", game1_.address()}}));
  ASSERT_NE(log_in(1), nullptr);
  echo(1);
  echo(1);
  // The game fails another session's stream: a failure of game1's.
  ASSERT_NE(log_in(3), nullptr);
  ASSERT_TRUE(flush_until([&] { return game1_.wait_for_streams(2, 0ms); }));
  ASSERT_TRUE(game1_.fail_stream(3));
  ASSERT_TRUE(
      flush_until([&] { return shard_.counters[metrics::kGameStreamsFailed].load() == 1; }));
  services_->publish_reachability();
  EXPECT_EQ(count_of("game1", metrics::kInstanceMessagesSent), 2);
  EXPECT_EQ(count_of("game1", metrics::kInstanceMessagesReceived), 2);
  EXPECT_EQ(count_of("game1", metrics::kInstanceStreamsFailed), 1);
  services_->closed(3);

  // Out of the view, its last session ends: the instance is dropped, its row
  // goes. Back (after game2 now: another row), its counts go on.
  services_->update(view({{"game2", game2_.address()}}));
  logout(1);
  ASSERT_TRUE(flush_until([&] { return sessions_of("game1") == -1; }));
  services_->update(view({{"game2", game2_.address()}, {"game1", game1_.address()}}));
  EXPECT_EQ(count_of("game1", metrics::kInstanceMessagesSent), 2);
  EXPECT_EQ(count_of("game1", metrics::kInstanceStreamsFailed), 1);
  EXPECT_EQ(count_of("game2", metrics::kInstanceMessagesSent), 0);

  // A restart: the next bridge's GameServices takes them from the table.
  services_.reset();
  services_ = std::make_unique<GameServices>(
      GameServices::Context{calls_, io_, events_, wakeup_, metrics_, *table_, shard_.in_flight,
                            FrameNumbering::kGonet2, 60'000'000'000, "test-gw"},
      kService);
  services_->update(view({{"game1", game1_.address()}}));
  EXPECT_EQ(count_of("game1", metrics::kInstanceMessagesSent), 2);
  EXPECT_EQ(count_of("game1", metrics::kInstanceMessagesReceived), 2);
  ASSERT_NE(log_in(2), nullptr);
  echo(2);
  services_->publish_reachability();
  EXPECT_EQ(count_of("game1", metrics::kInstanceMessagesSent), 3);
  EXPECT_EQ(count_of("game1", metrics::kInstanceMessagesReceived), 3);
  EXPECT_EQ(count_of("game1", metrics::kInstanceStreamsFailed), 1);
}

void GameServicesTest::rebind_users_over_two_instances(const std::string& contract,
                                                       std::vector<std::int64_t>& on_game1) {
  make_services(rebind_plan());
  services_->update(
      view({{"game1", contract + game1_.address()}, {"game2", contract + game2_.address()}}));
  for (std::int64_t u = 1; u <= 20; ++u) ASSERT_NE(log_in(u), nullptr);
  ASSERT_TRUE(flush_until([&] { return users_on(game1_).size() + users_on(game2_).size() == 20; }));
  on_game1 = users_on(game1_);
  ASSERT_FALSE(on_game1.empty());
}

void GameServicesTest::sessions_move_off_a_removed_instance(const std::string& contract) {
  std::vector<std::int64_t> moving;
  rebind_users_over_two_instances(contract, moving);
  if (HasFatalFailure()) return;
  ASSERT_LT(moving.size(), 20u);

  for (const std::int64_t u : moving) send_text(u, "before");
  services_->update(view({{"game2", contract + game2_.address()}}));
  for (const std::int64_t u : moving) send_text(u, "after");
  for (const std::int64_t u : moving) {
    const auto conn = static_cast<std::uint64_t>(u);
    ASSERT_TRUE(flush_until([&] {
      return game2_.frames(static_cast<std::int32_t>(u)).size() == 1;
    })) << "user "
        << u << " moved to game2 with its message";
    EXPECT_EQ(game2_.frames(static_cast<std::int32_t>(u))[0], ping_of("after"));
    ASSERT_TRUE(
        flush_until([&] { return game1_.frames(static_cast<std::int32_t>(u)).size() == 1; }));
    EXPECT_EQ(game1_.frames(static_cast<std::int32_t>(u))[0], ping_of("before"))
        << "what was sent before the move reached the old instance";
    EXPECT_NE(services_->of(conn), nullptr);
  }
  // The old streams end (half-closed by the gateway), the new ones carry
  // the right user id; the instance goes with them.
  ASSERT_TRUE(flush_until([&] { return users_on(game1_).empty(); }));
  for (const auto& stream : game1_.streams()) EXPECT_TRUE(stream.client_half_closed);
  for (const std::int64_t u : moving) EXPECT_TRUE(has_live_stream(game2_, u)) << "user " << u;
  ASSERT_TRUE(flush_until([&] { return sessions_of("game1") == -1; }));
  EXPECT_EQ(sessions_of("game2"), 20);
  EXPECT_EQ(ended_count(), 0u) << "no session was closed";
  services_->publish_reachability();
  metrics::RoutingNames names{};
  ASSERT_TRUE(metrics::read_routing(*table_, names));
  EXPECT_EQ(names.services[0].moved[metrics::kMovedRemoved], moving.size());
  EXPECT_EQ(names.services[0].moved[metrics::kMovedFailed], 0u);
}

TEST_F(GameServicesTest, ARebindServicesSessionsMoveOffARemovedInstance) {
  sessions_move_off_a_removed_instance("");
}
TEST_F(GameServicesTest, ARebindServicesSessionsMoveOffARemovedBatchedInstance) {
  sessions_move_off_a_removed_instance("batch:");
}

void GameServicesTest::sessions_move_off_a_dead_instance(const std::string& contract) {
  std::vector<std::int64_t> moving;
  rebind_users_over_two_instances(contract, moving);
  if (HasFatalFailure()) return;

  game1_.stop();  // dead, and still in the view (etcd has not noticed)
  ASSERT_TRUE(flush_until([&] {
    return std::all_of(moving.begin(), moving.end(),
                       [&](std::int64_t u) { return has_live_stream(game2_, u); });
  })) << "every session of the dead instance reopened on the live one";
  for (const std::int64_t u : moving) echo(u);
  EXPECT_EQ(ended_count(), 0u) << "no session was closed";
  EXPECT_EQ(sessions_of("game2"), 20);
  EXPECT_EQ(sessions_of("game1"), 0);
  services_->publish_reachability();
  metrics::RoutingNames names{};
  ASSERT_TRUE(metrics::read_routing(*table_, names));
  EXPECT_EQ(names.services[0].moved[metrics::kMovedFailed], moving.size());
}

TEST_F(GameServicesTest, ARebindServicesSessionsMoveOffADeadInstance) {
  sessions_move_off_a_dead_instance("");
}
TEST_F(GameServicesTest, ARebindServicesSessionsMoveOffADeadBatchedInstance) {
  sessions_move_off_a_dead_instance("batch:");
}

// With no other instance, a rebind session waits for one within
// backend-wait: its instance back in time takes it again; past it, the
// session is closed (backend_unavailable). A sticky one is closed at once.
TEST_F(GameServicesTest, ARebindSessionWaitsBackendWaitForAnInstanceThenIsClosed) {
  make_services(rebind_plan(), 3'000'000'000);
  services_->update(view({{"game1", game1_.address()}}));
  ASSERT_NE(log_in(1), nullptr);
  ASSERT_TRUE(flush_until([&] { return game1_.wait_for_streams(1, 0ms); }));
  game1_.stop();
  ASSERT_TRUE(flush_until([&] { return game1_.live_stream_count() == 0; }));
  ASSERT_TRUE(flush_until([&] { return services_->of(1) == nullptr; })) << "waiting for one";
  const game::Bytes ping = ping_of("held");
  EXPECT_TRUE(services_->hold(1, 0, 7, testing::span_of(ping))) << "its messages wait with it";
  game1_.start();
  ASSERT_TRUE(flush_until([&] { return has_live_stream(game1_, 1); })) << "back in time";
  ASSERT_TRUE(flush_until([&] { return game1_.frames(1).size() == 1; }))
      << "the message held followed";
  EXPECT_EQ(ended_count(), 0u);

  make_services(rebind_plan(), 300'000'000);
  services_->update(view({{"game1", game1_.address()}}));
  ASSERT_NE(log_in(2), nullptr);
  ASSERT_TRUE(flush_until([&] { return has_live_stream(game1_, 2); }));
  game1_.stop();
  const auto failed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(flush_until([&] { return ended_count() == 1; })) << "closed past backend-wait";
  EXPECT_GE(std::chrono::steady_clock::now() - failed_at, 250ms);
  EXPECT_EQ(events_.events().back().grpc_code, grpc::StatusCode::UNAVAILABLE);
}

// game-instance (gonet2's DEFAULT_GSID): every session goes to the instance
// of that name, whatever the user; while it is not live, none is routed
// (the login is refused backend_unavailable), never to another instance.
TEST_F(GameServicesTest, GameInstanceTakesEverySessionAndNoOtherInstanceDoes) {
  ServicesPlan plan{{{kService, false}}, {}, {}};
  plan.game_instance = "game2";
  make_services(std::move(plan));
  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  for (std::int64_t u = 1; u <= 20; ++u) ASSERT_NE(log_in(u), nullptr);
  ASSERT_TRUE(flush_until([&] { return game2_.wait_for_streams(20, 0ms); }));
  EXPECT_EQ(game1_.streams().size(), 0u);
  EXPECT_EQ(sessions_of("game2"), 20);

  services_->update(view({{"game1", game1_.address()}}));
  EXPECT_EQ(services_->route(21, 21), nullptr) << "game2 is not live: no other instance";
  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  EXPECT_EQ(services_->route(21, 21), services_->of(1)) << "back: game2 again";
}

// An auth service's choice (pin()) beats game-instance and hashing; an
// instance named that is not live routes nowhere; the choice is forgotten
// when the session closes.
TEST_F(GameServicesTest, APinnedSessionGoesToTheInstanceNamedForIt) {
  ServicesPlan plan{{{kService, false}}, {}, {}};
  plan.game_instance = "game1";
  make_services(std::move(plan));
  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  Upstream* on_game1 = log_in(1);
  ASSERT_NE(on_game1, nullptr);
  for (std::int64_t u = 2; u <= 11; ++u) {
    services_->pin(static_cast<std::uint64_t>(u), "game2");
    ASSERT_NE(log_in(u), nullptr);
    EXPECT_NE(services_->of(static_cast<std::uint64_t>(u)), on_game1);
  }
  ASSERT_TRUE(flush_until([&] { return game2_.wait_for_streams(10, 0ms); }));
  ASSERT_TRUE(flush_until([&] { return game1_.wait_for_streams(1, 0ms); }));
  EXPECT_EQ(game1_.streams().size(), 1u) << "only the unnamed session";
  EXPECT_EQ(game2_.streams().size(), 10u);

  services_->pin(12, "game3");
  EXPECT_EQ(services_->route(12, 12), nullptr) << "named, not live";
  EXPECT_EQ(services_->route(12, 12), nullptr) << "still named until it closes";
  services_->close(12, Origin{});
  EXPECT_EQ(services_->route(12, 12), on_game1) << "forgotten: game-instance again";
}

// A rebind service's session named for an instance stays with that name: its
// instance removed, it waits for it (not for another), and goes back to it.
TEST_F(GameServicesTest, APinnedRebindSessionWaitsForItsInstance) {
  ServicesPlan plan = rebind_plan();
  plan.game_instance = "game2";
  make_services(std::move(plan));
  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  ASSERT_NE(log_in(1), nullptr);
  ASSERT_TRUE(flush_until([&] { return has_live_stream(game2_, 1); }));
  services_->update(view({{"game1", game1_.address()}}));
  ASSERT_TRUE(flush_until([&] { return services_->of(1) == nullptr; })) << "waits";
  for (int i = 0; i < 50; ++i) services_->flush(monotonic_ns());
  EXPECT_FALSE(has_live_stream(game1_, 1)) << "not moved to another instance";
  services_->update(view({{"game1", game1_.address()}, {"game2", game2_.address()}}));
  ASSERT_TRUE(flush_until([&] {
    const auto streams = game2_.streams();
    return std::count_if(streams.begin(), streams.end(),
                         [](const auto& st) { return st.user_id == 1; }) == 2 &&
           services_->of(1) != nullptr;
  })) << "re-opened on game2";
  EXPECT_FALSE(has_live_stream(game1_, 1));
  EXPECT_EQ(ended_count(), 0u);
}

// Messages go to the service their proto number is routed to, each service
// with its own instances and its own stream per session; the routing table
// shows each service's instances.
TEST_F(GameServicesTest, MessagesGoToTheServiceTheirProtoNumberIsRoutedTo) {
  make_services({{{kService, false}, {"chat-10000", false}}, {{2000, 2999, 1}}, {}});
  const auto message = [](std::int16_t proto) { return gatehouse::testing::packet(proto, {}); };
  EXPECT_EQ(services_->service_of(testing::span_of(message(1001))), 0u);
  EXPECT_EQ(services_->service_of(testing::span_of(message(2000))), 1u);
  EXPECT_EQ(services_->service_of(testing::span_of(message(2999))), 1u);
  EXPECT_EQ(services_->service_of(testing::span_of(message(3000))), 0u);
  EXPECT_EQ(services_->service_of({}), 0u) << "too short for a proto number";

  services_->update(
      {{kService, {{"game1", game1_.address()}}}, {"chat-10000", {{"chat1", game2_.address()}}}});
  ASSERT_NE(services_->route(1, 1, 5), nullptr);
  Upstream* chat = services_->route(1, 1, 5, 1);
  ASSERT_NE(chat, nullptr);
  EXPECT_NE(chat, services_->of(1, 0)) << "a stream of its own";
  const Origin none{};
  services_->of(1, 0)->open(1, 1, 5, &none);
  chat->open(1, 1, 5, &none);
  ASSERT_TRUE(flush_until([&] { return game1_.wait_for_streams(1, 0ms); }));
  ASSERT_TRUE(flush_until([&] { return game2_.wait_for_streams(1, 0ms); }));
  EXPECT_EQ(game2_.streams()[0].user_id, 1) << "the chat service sees the session's user";
  std::int64_t user = 0;
  std::uint64_t login_seq = 0;
  ASSERT_TRUE(services_->login_of(1, user, login_seq));
  EXPECT_EQ(login_seq, 5u);

  metrics::RoutingNames names{};
  ASSERT_TRUE(metrics::read_routing(*table_, names));
  ASSERT_EQ(names.service_count, 2u);
  EXPECT_STREQ(names.services[1].name, "chat-10000");
  EXPECT_EQ(names.services[1].instances, 1);
  ASSERT_EQ(names.instance_count, 2u);
  EXPECT_STREQ(names.instances[1].name, "chat1");
  EXPECT_EQ(names.instances[1].service, 1u);
  EXPECT_EQ(sessions_of("chat1"), 1);

  // The session closes: both its streams end.
  services_->close(1, Origin{});
  EXPECT_TRUE(
      flush_until([&] { return game1_.live_stream_count() + game2_.live_stream_count() == 0; }));
  EXPECT_TRUE(flush_until([&] { return sessions_of("chat1") == 0; }));
}

}  // namespace
}  // namespace gatehouse::bridge
