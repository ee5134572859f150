// The demo game's handler (examples/demo-game) on a GameServer: echo, chat
// broadcast, kick_me, and what it ignores.
#include "gatehouse/game/demo_game.h"

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "game_test_client.h"

namespace gatehouse::testing {
namespace {

namespace demo = game::demo;
using ::testing::HasSubstr;

class DemoGame : public ::testing::Test {
 protected:
  std::ostringstream log_;
  demo::DemoGameHandler handler_{&log_};
  game::GameServer server_{handler_, {}};
  std::shared_ptr<grpc::Channel> channel_ = make_game_channel(server_.port());
};

TEST_F(DemoGame, EchoesPingReq) {
  GameTestClient client(channel_, 5);
  ASSERT_TRUE(client.send(packet(demo::kPingReq, to_bytes("hello"))));
  const auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(message_of(*reply), packet(demo::kPingAck, to_bytes("hello")));
}

TEST_F(DemoGame, ChatSayIsBroadcastToEveryStreamWithTheSpeakersUid) {
  std::vector<std::unique_ptr<GameTestClient>> clients;
  for (int uid = 1; uid <= 3; ++uid)
    clients.push_back(std::make_unique<GameTestClient>(channel_, uid));
  // All three must be open before anyone speaks; an echo round trip each proves it.
  for (auto& client : clients) {
    ASSERT_TRUE(client->send(packet(demo::kPingReq, {})));
    ASSERT_TRUE(client->read());
  }
  ASSERT_TRUE(clients[1]->send(demo::encode_chat_say("hi all")));
  for (auto& client : clients) {
    const auto frame = client->read();
    ASSERT_TRUE(frame);
    EXPECT_EQ(message_of(*frame), demo::encode_chat_hear(2, "hi all"));
    const auto hear = demo::parse_chat_hear(message_of(*frame));
    ASSERT_TRUE(hear);
    EXPECT_EQ(hear->uid, 2);
    EXPECT_EQ(hear->text, "hi all");
  }
}

TEST_F(DemoGame, KickMeKicksTheSender) {
  GameTestClient client(channel_, 5);
  ASSERT_TRUE(client.send(packet(demo::kKickMe, {})));
  const auto frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(type_of(*frame), 1);
  EXPECT_TRUE(client.finish().ok());
}

TEST_F(DemoGame, IgnoresUnknownAndMalformedMessagesAndLogsThem) {
  GameTestClient client(channel_, 5);
  ASSERT_TRUE(client.send(packet(4242, to_bytes("?"))));
  ASSERT_TRUE(client.send(to_bytes("x")));  // shorter than a proto
  ASSERT_TRUE(client.send(packet(demo::kChatSay, to_bytes(std::string("\x00\x05"
                                                                      "ab",
                                                                      4)))));
  ASSERT_TRUE(client.send(packet(demo::kPingReq, to_bytes("still here"))));
  const auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(message_of(*reply), packet(demo::kPingAck, to_bytes("still here")));
  ASSERT_TRUE(client.writes_done());
  EXPECT_TRUE(client.finish().ok());
  server_.shutdown();  // every on_end has run: the log is complete
  const std::string log = log_.str();
  EXPECT_THAT(log, HasSubstr("open: user 5"));
  EXPECT_THAT(log, HasSubstr("ignoring proto 4242"));
  EXPECT_THAT(log, HasSubstr("shorter than a proto"));
  EXPECT_THAT(log, HasSubstr("malformed chat_say"));
  EXPECT_THAT(log, HasSubstr("end: user 5 (client left)"));
}

TEST(DemoProtocol, EchoReplyOnlyForPingReq) {
  EXPECT_FALSE(demo::echo_reply(packet(demo::kPingAck, {})));
  EXPECT_FALSE(demo::echo_reply(to_bytes("x")));
  EXPECT_EQ(demo::echo_reply(packet(demo::kPingReq, to_bytes("b"))),
            packet(demo::kPingAck, to_bytes("b")));
}

TEST(DemoProtocol, ChatHearRoundTripsAndRejectsTruncation) {
  const game::Bytes hear = demo::encode_chat_hear(-3, "txt");
  const auto parsed = demo::parse_chat_hear(hear);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->uid, -3);
  EXPECT_EQ(parsed->text, "txt");
  EXPECT_FALSE(demo::parse_chat_hear({hear.data(), hear.size() - 1}));
  EXPECT_FALSE(demo::parse_chat_hear(demo::encode_chat_say("txt")));
}

}  // namespace
}  // namespace gatehouse::testing
