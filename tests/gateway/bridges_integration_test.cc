// Several backend bridges in one gateway instance (--bridges): a logged-in
// session's game streams go to the bridge its user id picks, every bridge
// holds its own game-service connections, and one that dies is replaced
// alone. Real gateway processes, real TCP clients, a real gRPC game service
// (both contracts).
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::Client;

GatewayOptions two_bridges(int game_port, bool batched) {
  GatewayOptions options;
  options.backend_port = game_port;
  options.workers = 2;
  options.bridges = 2;
  options.batched = batched;
  return options;
}

/// A logged-in client and the bridge its user's streams go to.
struct Player {
  std::string udid;
  std::unique_ptr<Client> client;
  std::uint32_t bridge = 0;
};

/// The bridge of the session whose client connected from local port `port`:
/// its user id, read from the gateway's session table, says (bridge_of_user).
std::optional<std::uint32_t> bridge_of(GatewayProcess& gateway, std::uint16_t port) {
  const Settings settings = gateway.segment().settings();
  auto sessions = gateway.segment().sessions();
  for (std::uint32_t slot = 0; slot < sessions.slots(); ++slot) {
    const shm::ConnectionId id = sessions.live_id(slot);
    const Session* s = id ? sessions.find(id) : nullptr;
    if (s != nullptr && s->port == port && s->state == Session::kLoggedIn) {
      return bridge_of_user(s->user_id, settings);
    }
  }
  return std::nullopt;
}

/// `count` players logged in (every other one encrypted), placed.
std::vector<Player> players(GatewayProcess& gateway, int count) {
  std::vector<Player> out;
  for (int i = 0; i < count; ++i) {
    Player p{"player-" + std::to_string(i), nullptr, 0};
    p.client = logged_in_client(gateway.port(), p.udid, "", i % 2 == 0);
    const auto bridge = bridge_of(gateway, p.client->local_port());
    EXPECT_TRUE(bridge.has_value()) << p.udid;
    p.bridge = bridge.value_or(0);
    out.push_back(std::move(p));
  }
  return out;
}

std::uint32_t on_bridge(const std::vector<Player>& all, std::uint32_t bridge) {
  std::uint32_t n = 0;
  for (const Player& p : all) n += p.bridge == bridge ? 1 : 0;
  return n;
}

/// Waits until bridge `bridge` is a process other than `before`.
bool replaced_bridge(GatewayProcess& gateway, std::uint32_t bridge, pid_t before) {
  return wait_until([&] {
    const pid_t now = gateway.bridge_pid(bridge);
    return now != 0 && now != before;
  });
}

/// Waits until bridge `bridge`'s shard counts `n` game streams open.
bool streams_open_on(GatewayProcess& gateway, std::uint32_t bridge, std::int64_t n) {
  const metrics::Shard& shard = gateway.segment().metrics().bridges[bridge];
  return wait_until([&] { return shard.gauges[metrics::kGameStreamsOpen].load() == n; });
}

TEST(BridgeShards, UsersSpreadOverTheBridgesAndAKilledBridgeCostsOnlyItsStreams) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(two_bridges(game.port(), /*batched=*/false));
  ASSERT_NE(gateway.bridge_pid(0), 0);
  ASSERT_NE(gateway.bridge_pid(1), 0);
  ASSERT_NE(gateway.bridge_pid(0), gateway.bridge_pid(1));

  constexpr int kPlayers = 24;
  std::vector<Player> all = players(gateway, kPlayers);
  for (Player& p : all) ASSERT_TRUE(echo_works(*p.client, p.udid)) << p.udid;
  const std::uint32_t first = on_bridge(all, 0);
  const std::uint32_t second = on_bridge(all, 1);
  ASSERT_EQ(first + second, std::uint32_t{kPlayers});
  // 24 users on one of two bridges has a chance of 2^-23.
  EXPECT_GT(first, 0u);
  EXPECT_GT(second, 0u);
  // Each bridge holds its own users' streams, and the metrics add them up.
  EXPECT_TRUE(streams_open_on(gateway, 0, first)) << first;
  EXPECT_TRUE(streams_open_on(gateway, 1, second)) << second;
  EXPECT_EQ(
      metric_sample(http_get(gateway.metrics_port(), "/metrics"), "gatehouse_game_streams_open"),
      kPlayers);

  // A second login of a user meets the first in the user's bridge, on
  // whichever worker and however many bridges: the older is replaced.
  {
    Player& older = all[3];
    auto newer = logged_in_client(gateway.port(), older.udid, "", true);
    EXPECT_TRUE(older.client->wait_closed(kPatience)) << "the older login was not replaced";
    EXPECT_TRUE(echo_works(*newer, "the newer login"));
    EXPECT_EQ(bridge_of(gateway, newer->local_port()), std::optional<std::uint32_t>(older.bridge));
    older.client = std::move(newer);
  }

  // SIGKILL bridge 1: bridge 0's players play on meanwhile; the supervisor
  // starts another bridge 1, which opens its own users' streams again (and
  // no other's), and they play on too.
  const pid_t killed = gateway.bridge_pid(1);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  for (Player& p : all) {
    if (p.bridge == 0) EXPECT_TRUE(echo_works(*p.client, "while bridge 1 is down")) << p.udid;
  }
  ASSERT_TRUE(replaced_bridge(gateway, 1, killed)) << gateway.log();
  ASSERT_TRUE(gateway.wait_log("reopened the game streams of " + std::to_string(second) +
                               " logged-in sessions"))
      << gateway.log();
  EXPECT_EQ(gateway.log_count("reopened the game streams of"), 1u) << "bridge 0 took over nothing";
  for (Player& p : all) EXPECT_TRUE(echo_works(*p.client, "after bridge 1 died")) << p.udid;
  EXPECT_TRUE(streams_open_on(gateway, 1, second));
  EXPECT_NE(gateway.log().find("bridge-1 (pid " + std::to_string(killed) + ")"), std::string::npos)
      << gateway.log();
  EXPECT_EQ(gateway.log_count("reason="), 1u)
      << "only the replaced login closed: " << gateway.log();

  // A drain closes every session and both bridges end their streams.
  const auto status = gateway.terminate(30s);
  ASSERT_TRUE(status.has_value()) << "the gateway did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << gateway.log();
}

// The batched contract: a link per bridge (each its own gateway-id), and a
// bridge killed while its players' messages are in flight loses none of
// them (batch.proto's acknowledgements), while the other bridge's players
// are not even re-attached.
TEST(BridgeShards, BatchedLinksOnePerBridgeAndAKilledOneLosesNothing) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(two_bridges(game.port(), /*batched=*/true));
  constexpr int kPlayers = 16;
  std::vector<Player> all = players(gateway, kPlayers);
  ASSERT_TRUE(game.wait_for_streams(kPlayers, kPatience));
  ASSERT_GT(on_bridge(all, 0), 0u);
  ASSERT_GT(on_bridge(all, 1), 0u);

  // Every player sends 10 without reading; bridge 0 dies after the first 5.
  constexpr int kMessages = 10;
  const auto send = [&](int from, int to) {
    for (Player& p : all) {
      for (int k = from; k < to; ++k) {
        ASSERT_TRUE(p.client->send(1001, client::to_bytes(p.udid + "/" + std::to_string(k))));
      }
    }
  };
  send(0, kMessages / 2);
  const pid_t killed = gateway.bridge_pid(0);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  send(kMessages / 2, kMessages);
  ASSERT_TRUE(replaced_bridge(gateway, 0, killed)) << gateway.log();
  for (Player& p : all) {
    for (int k = 0; k < kMessages; ++k) {
      const auto reply = p.client->receive_proto(1002, kPatience);
      ASSERT_TRUE(reply.has_value()) << p.udid << " message " << k << "\n" << gateway.log();
      EXPECT_EQ(reply->body, client::to_bytes(p.udid + "/" + std::to_string(k))) << p.udid;
    }
  }
  for (Player& p : all) EXPECT_TRUE(echo_works(*p.client, "after")) << p.udid;
  // Both bridges carried messages; only bridge 0's sessions were re-opened.
  const MetricsBlock& m = gateway.segment().metrics();
  EXPECT_GT(m.bridges[0].counters[metrics::kGameMessagesSent].load(), 0u);
  EXPECT_GT(m.bridges[1].counters[metrics::kGameMessagesSent].load(), 0u);
  EXPECT_TRUE(gateway.wait_log("reopened the game streams of " + std::to_string(on_bridge(all, 0)) +
                               " logged-in sessions"))
      << gateway.log();
  EXPECT_EQ(gateway.log_count("reason="), 0u) << gateway.log();
}

}  // namespace
}  // namespace gatehouse::testing
