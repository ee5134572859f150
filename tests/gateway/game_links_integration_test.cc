// Game links cannot be poisoned, and one player's message never costs
// another (issue 20, rows 6 and 7): the real gateway in front of the real
// demo game (gw::game_server + DemoGameHandler), real client sockets.
#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/client/client.h"
#include "gatehouse/game/demo_game.h"
#include "gatehouse/game/game_server.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using client::Client;
using namespace std::chrono_literals;

/// The demo game (chat_say 1003 -> chat_hear 1004 to every session) in this
/// process, on a free port.
class DemoGame {
 public:
  DemoGame() : server_(handler_, {}) {}
  int port() const { return server_.port(); }
  game::GameServer& server() { return server_; }

 private:
  game::demo::DemoGameHandler handler_{nullptr};
  game::GameServer server_;
};

/// A metric from the gateway's endpoint once it reached `at_least` (the
/// bridge adds its counts on its next pass), or its last value.
double metric_at_least(const GatewayProcess& gateway, const std::string& name, double at_least) {
  double value = 0;
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  do {
    value = metric_sample(http_get(gateway.metrics_port(), "/metrics"), name);
    if (value >= at_least) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return value;
}

// Row 7: three 60 KB chats to 80 players on the batched contract are 14.4 MB
// of game -> gateway events, answered while one gateway batch is handled.
// On main they went as one gRPC message over gRPC's 4 MiB limit: the link
// failed, the game sent the same batch again on every new link, and no
// player got a chat. Cut by bytes, every player gets all three, on one link.
TEST(GameLinks, BroadcastLargerThanOneGrpcMessageReachesEveryPlayerOnOneLink) {
  DemoGame game;
  GatewayOptions options{game.port(), 2, {}, {}};
  options.batched = true;
  GatewayProcess gateway(std::move(options));
  constexpr int kPlayers = 80;
  constexpr int kChats = 3;
  std::vector<std::unique_ptr<Client>> players;
  for (int i = 0; i < kPlayers; ++i) {
    players.push_back(logged_in_client(gateway.port(), "p" + std::to_string(i), "", false));
  }
  const std::string text(60'000, 'x');
  const auto say = game::demo::encode_chat_say(text);
  const auto body = std::span(say).subspan(2);  // after the proto, which send() writes
  for (int i = 0; i < kChats; ++i) {
    ASSERT_TRUE(players[static_cast<std::size_t>(i)]->send(game::demo::kChatSay, body));
  }
  // One deadline for all: a test that fails does not wait kPatience per player.
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  int served = 0;
  for (auto& player : players) {
    int heard = 0;
    while (heard < kChats &&
           player->receive_proto(game::demo::kChatHear,
                                 std::max(std::chrono::duration_cast<client::Duration>(
                                              deadline - std::chrono::steady_clock::now()),
                                          client::Duration{1}))) {
      ++heard;
    }
    if (heard == kChats) ++served;
  }
  EXPECT_EQ(served, kPlayers) << gateway.log();
  // 14.4 MB of events need at least four gRPC messages of 4 MiB.
  EXPECT_GE(metric_at_least(gateway, "gatehouse_game_batches_received_total", 4), 4);
  EXPECT_EQ(metric_at_least(gateway, "gatehouse_game_messages_received_total", kPlayers * kChats),
            kPlayers * kChats);
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_game_streams_failed_total"),
            0);
  EXPECT_EQ(gateway.log_count("batched link ended"), 0u) << gateway.log();
  EXPECT_EQ(gateway.log_count("reason="), 0u) << gateway.log();
}

}  // namespace
}  // namespace gatehouse::testing
