// Game links cannot be poisoned, and one player's message never costs
// another (issue 20, rows 6 and 7): the real gateway in front of the real
// demo game (gw::game_server + DemoGameHandler), real client sockets.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/client/client.h"
#include "gatehouse/codec/byte_io.h"
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

/// Waits until the game knows `sessions` sessions: a chat goes to the ones it
/// knows, and a login is acknowledged before the bridge has announced it.
::testing::AssertionResult game_knows(DemoGame& game, std::size_t sessions) {
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (game.server().stream_count() < sessions && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  if (game.server().stream_count() >= sessions) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "the game knows " << game.server().stream_count() << " of " << sessions << " sessions";
}

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
  ASSERT_TRUE(game_knows(game, kPlayers));
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

/// A client that did the modern key exchange (docs/protocol-modern.md) and
/// logged in.
std::unique_ptr<Client> modern_client(const GatewayProcess& gateway, const std::string& udid) {
  auto c = std::make_unique<Client>();
  c->connect("127.0.0.1", gateway.port(), kPatience);
  EXPECT_TRUE(c->modern_key_exchange(gateway.gateway_key(), kPatience).has_value());
  EXPECT_TRUE(c->login(udid, "", kPatience).ok());
  return c;
}

/// chat_hear's text, or "" when `hear` is not one.
std::string hear_text(const std::optional<client::Packet>& hear) {
  if (!hear || hear->proto != game::demo::kChatHear) return {};
  ByteReader reader(hear->body);
  reader.i32();  // the sender's uid
  std::string text(reader.string());
  return reader.ok() ? text : std::string();
}

/// chat_say's body (after the proto, which send() writes) for `text`.
std::vector<std::byte> say_body(const std::string& text) {
  const auto say = game::demo::encode_chat_say(text);
  return {say.begin() + 2, say.end()};
}

// Row 6: a clear client's chat of a 65,527-byte payload, which the demo game
// broadcasts 4 bytes larger. On main every modern-crypto receiver was kicked
// (frame_too_large: the sealed frame no longer fits). Now the worker refuses
// the message at its sender (counted; nobody is kicked), and a game message
// that still does not fit one receiver's crypto is dropped for that receiver
// alone (counted), while those it fits get it.
TEST(GameLinks, OversizeChatKicksNobodyAndIsRefusedAtItsSender) {
  DemoGame game;
  GatewayProcess gateway(GatewayOptions{game.port(), 2, {}, {}});
  constexpr int kModern = 5;
  std::vector<std::unique_ptr<Client>> modern;
  for (int i = 0; i < kModern; ++i) {
    modern.push_back(modern_client(gateway, "m" + std::to_string(i)));
  }
  auto sender = logged_in_client(gateway.port(), "sender", "", false);
  auto clear = logged_in_client(gateway.port(), "clear", "", false);
  ASSERT_TRUE(game_knows(game, kModern + 2));
  // | seq | proto | len | text |: a 65,527-byte payload, | proto | body | of
  // 65,523: over the 65,519 a modern receiver can take.
  ASSERT_TRUE(sender->send(game::demo::kChatSay, say_body(std::string(65'519, 'a'))));
  EXPECT_GE(metric_at_least(gateway, "gatehouse_client_messages_too_large_total", 1), 1);
  // The largest a client may send (65,519): the game's broadcast is 4 bytes
  // larger, which fits clear receivers but not modern ones.
  ASSERT_TRUE(sender->send(game::demo::kChatSay, say_body(std::string(65'515, 'b'))));
  // (Compared as sizes: a failure must not print 64 KB strings.)
  EXPECT_EQ(hear_text(clear->receive_proto(game::demo::kChatHear, kPatience)).size(), 65'515u)
      << "the refused one never reached the game";
  EXPECT_GE(metric_at_least(gateway, "gatehouse_game_messages_too_large_total", kModern), kModern);
  // Everybody is still served: a small chat reaches every receiver, in order
  // after what each could take.
  ASSERT_TRUE(sender->send(game::demo::kChatSay, say_body("still here")));
  for (auto* c : {sender.get(), clear.get()}) {
    for (const std::string& text : {std::string(65'515, 'b'), std::string("still here")}) {
      if (c == clear.get() && text != "still here") continue;  // taken above
      EXPECT_EQ(hear_text(c->receive_proto(game::demo::kChatHear, kPatience)).size(), text.size());
    }
  }
  int served = 0;
  for (auto& c : modern) {
    if (hear_text(c->receive_proto(game::demo::kChatHear, kPatience)) == "still here") ++served;
  }
  EXPECT_EQ(served, kModern) << gateway.log();
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_client_messages_too_large_total"),
            1);
  EXPECT_EQ(gateway.log_count("reason="), 0u) << "nobody kicked\n" << gateway.log();
  EXPECT_EQ(gateway.log_count("not forwarded"), 1u) << gateway.log();
  // Five drops, at most one line a second per worker (two).
  EXPECT_GE(gateway.log_count("dropped for it"), 1u) << gateway.log();
  EXPECT_LE(gateway.log_count("dropped for it"), 2u) << "rate limited\n" << gateway.log();
}

}  // namespace
}  // namespace gatehouse::testing
