// FakeGameService against a real gRPC client speaking the gateway's side of
// GameService.Stream: the contract (shared/protocol.md section 2) as the fake
// serves it, and the fake's own recording and outage controls.
#include "fake_game_service.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "game_test_client.h"
#include "gatehouse/game/demo_game.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
namespace demo = game::demo;

constexpr auto kWait = kPatience;

TEST(FakeGameService, UseridMetadataIsRequiredAndRecorded) {
  FakeGameService fake;
  const auto channel = make_game_channel(fake.port());
  for (const std::optional<std::string>& bad :
       {std::optional<std::string>{}, std::optional<std::string>{""},
        std::optional<std::string>{"abc"}, std::optional<std::string>{"12x"},
        std::optional<std::string>{"99999999999"}}) {
    GameTestClient client(channel, bad);
    EXPECT_EQ(client.finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "userid " << bad.value_or("(none)");
  }
  GameTestClient client(channel, 42);
  ASSERT_TRUE(fake.wait_for_streams(1, kWait));
  const auto streams = fake.streams();
  ASSERT_EQ(streams.size(), 1u) << "streams without a valid userid are not recorded";
  EXPECT_EQ(streams[0].user_id, 42);
  EXPECT_FALSE(streams[0].ended);
}

TEST(FakeGameService, RecordsMessageFramesExactly) {
  FakeGameService fake;
  GameTestClient client(make_game_channel(fake.port()), 7);
  const game::Bytes first = packet(2000, to_bytes(std::string("a\0b\xff", 4)));
  const game::Bytes second = packet(1001, {});
  ASSERT_TRUE(client.send(first));
  ASSERT_TRUE(client.send(second));
  ASSERT_TRUE(fake.wait_for_frames(7, 2, kWait));
  EXPECT_THAT(fake.frames(7), ::testing::ElementsAre(first, second));
  EXPECT_TRUE(fake.frames(8).empty());
}

TEST(FakeGameService, EchoAnswersPingReqWithPingAckBytesExact) {
  FakeGameService fake;
  fake.set_echo(true);
  GameTestClient client(make_game_channel(fake.port()), 7);
  const game::Bytes body = to_bytes(std::string("\x00\x01ping\xfe", 7));
  ASSERT_TRUE(client.send(packet(demo::kPingReq, body)));
  const auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(type_of(*reply), 0);
  EXPECT_EQ(message_of(*reply), packet(demo::kPingAck, body));
  EXPECT_EQ(reply->userid(), 0) << "the gonet2 Frame has no UserId";
}

TEST(FakeGameService, EchoOffAnswersNothing) {
  FakeGameService fake;
  GameTestClient client(make_game_channel(fake.port()), 7);
  ASSERT_TRUE(client.send(packet(demo::kPingReq, to_bytes("x"))));
  ASSERT_TRUE(fake.wait_for_frames(7, 1, kWait));
  // The next frame the client sees is the one pushed after the ping.
  ASSERT_TRUE(fake.push(7, to_bytes("after")));
  const auto frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(message_of(*frame), to_bytes("after"));
}

TEST(FakeGameService, PushReachesTheClientInOrder) {
  FakeGameService fake;
  GameTestClient client(make_game_channel(fake.port()), 7);
  ASSERT_TRUE(fake.wait_for_streams(1, kWait));
  EXPECT_FALSE(fake.push(8, to_bytes("nobody"))) << "user 8 has no stream";
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(fake.push(7, packet(3000, to_bytes(std::to_string(i)))));
  }
  for (int i = 0; i < 100; ++i) {
    const auto frame = client.read();
    ASSERT_TRUE(frame);
    EXPECT_EQ(type_of(*frame), 0);
    EXPECT_EQ(message_of(*frame), packet(3000, to_bytes(std::to_string(i))));
  }
}

TEST(FakeGameService, KickSendsKickFrameThenEndsOk) {
  FakeGameService fake;
  GameTestClient client(make_game_channel(fake.port()), 7);
  ASSERT_TRUE(fake.wait_for_streams(1, kWait));
  ASSERT_TRUE(fake.push(7, to_bytes("before")));
  ASSERT_TRUE(fake.kick(7));
  EXPECT_FALSE(fake.push(7, to_bytes("after"))) << "a kicked stream takes nothing more";

  auto frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(message_of(*frame), to_bytes("before"));
  frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(type_of(*frame), 1) << "Kick is 1 in the gonet2 numbering";
  EXPECT_TRUE(frame->message().empty());
  EXPECT_FALSE(client.read());
  EXPECT_TRUE(client.finish().ok());

  const auto ended = fake.wait_for_stream_end(7, kWait);
  ASSERT_TRUE(ended);
  EXPECT_FALSE(ended->client_half_closed);
}

TEST(FakeGameService, WritesDoneIsAnEndByClientHalfClose) {
  FakeGameService fake;
  GameTestClient client(make_game_channel(fake.port()), 7);
  ASSERT_TRUE(client.send(to_bytes("last words")));
  ASSERT_TRUE(client.writes_done());
  EXPECT_FALSE(client.read());
  EXPECT_TRUE(client.finish().ok());

  const auto ended = fake.wait_for_stream_end(7, kWait);
  ASSERT_TRUE(ended);
  EXPECT_TRUE(ended->client_half_closed);
  EXPECT_GE(ended->ended_at, ended->opened_at);
  EXPECT_THAT(ended->frames, ::testing::ElementsAre(to_bytes("last words")));
  EXPECT_EQ(fake.live_stream_count(), 0u);
}

TEST(FakeGameService, HalfCloseStillDeliversWhatWasQueued) {
  FakeGameService fake;
  fake.set_echo(true);
  GameTestClient client(make_game_channel(fake.port()), 7);
  ASSERT_TRUE(client.send(packet(demo::kPingReq, to_bytes("1"))));
  ASSERT_TRUE(client.writes_done());
  const auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(message_of(*reply), packet(demo::kPingAck, to_bytes("1")));
  EXPECT_TRUE(client.finish().ok());
}

TEST(FakeGameService, ClientCancelIsNotAHalfClose) {
  FakeGameService fake;
  GameTestClient client(make_game_channel(fake.port()), 7);
  ASSERT_TRUE(fake.wait_for_streams(1, kWait));
  client.cancel();
  const auto ended = fake.wait_for_stream_end(7, kWait);
  ASSERT_TRUE(ended);
  EXPECT_FALSE(ended->client_half_closed);
}

TEST(FakeGameService, FailStreamEndsWithUnavailable) {
  FakeGameService fake;
  GameTestClient client(make_game_channel(fake.port()), 7);
  ASSERT_TRUE(fake.wait_for_streams(1, kWait));
  EXPECT_FALSE(fake.fail_stream(8));
  ASSERT_TRUE(fake.fail_stream(7));
  EXPECT_EQ(client.finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto ended = fake.wait_for_stream_end(7, kWait);
  ASSERT_TRUE(ended);
  EXPECT_FALSE(ended->client_half_closed);
}

TEST(FakeGameService, LaterNumberingSendsKickAsTwo) {
  FakeGameService fake({.numbering = FrameNumbering::kLaterGeneration, .echo = true});
  GameTestClient client(make_game_channel(fake.port()), 9);
  ASSERT_TRUE(client.send(packet(demo::kPingReq, to_bytes("p"))));
  auto frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(type_of(*frame), 0) << "Message is 0 in both numberings";
  EXPECT_EQ(frame->userid(), 9) << "the later generation carries UserId";

  ASSERT_TRUE(fake.kick(9));
  frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(type_of(*frame), 2) << "Kick is 2 in the later numbering";
  EXPECT_TRUE(client.finish().ok());
}

TEST(FakeGameService, StopEndsStreamsAndStartServesTheSamePortAgain) {
  FakeGameService fake({.echo = true});
  const int port = fake.port();
  {
    GameTestClient client(make_game_channel(port), 7);
    ASSERT_TRUE(fake.wait_for_streams(1, kWait));
    fake.stop();
    EXPECT_FALSE(fake.running());
    EXPECT_FALSE(client.finish().ok());
    const auto ended = fake.wait_for_stream_end(7, kWait);
    ASSERT_TRUE(ended);
    EXPECT_FALSE(ended->client_half_closed);
    EXPECT_FALSE(fake.push(7, to_bytes("x"))) << "nothing to push to while stopped";
  }
  {
    GameTestClient client(make_game_channel(port), 7);
    EXPECT_EQ(client.finish().error_code(), grpc::StatusCode::UNAVAILABLE) << "the outage";
  }
  fake.start();
  EXPECT_EQ(fake.port(), port);
  GameTestClient client(make_game_channel(port), 7);
  ASSERT_TRUE(client.send(packet(demo::kPingReq, to_bytes("again"))));
  const auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(message_of(*reply), packet(demo::kPingAck, to_bytes("again")));
  const auto streams = fake.streams();
  ASSERT_EQ(streams.size(), 2u) << "records survive a restart";
  EXPECT_NE(streams[0].id, streams[1].id);
  EXPECT_TRUE(streams[0].frames.empty());
  EXPECT_EQ(streams[1].frames.size(), 1u);
}

TEST(FakeGameService, TwoHundredConcurrentStreamsEachGetTheirEcho) {
  constexpr int kStreams = 200;
  FakeGameService fake({.echo = true});
  const auto channel = make_game_channel(fake.port());
  std::vector<std::unique_ptr<GameTestClient>> clients;
  for (int uid = 1; uid <= kStreams; ++uid) {
    clients.push_back(std::make_unique<GameTestClient>(channel, uid));
  }
  for (int uid = 1; uid <= kStreams; ++uid) {
    ASSERT_TRUE(clients[static_cast<std::size_t>(uid - 1)]->send(
        packet(demo::kPingReq, to_bytes(std::to_string(uid)))));
  }
  ASSERT_TRUE(fake.wait_for_streams(kStreams, kWait));
  EXPECT_EQ(fake.live_stream_count(), static_cast<std::size_t>(kStreams));
  for (int uid = 1; uid <= kStreams; ++uid) {
    const auto reply = clients[static_cast<std::size_t>(uid - 1)]->read();
    ASSERT_TRUE(reply) << "user " << uid;
    EXPECT_EQ(message_of(*reply), packet(demo::kPingAck, to_bytes(std::to_string(uid))));
  }
  for (auto& client : clients) ASSERT_TRUE(client->writes_done());
  for (auto& client : clients) EXPECT_TRUE(client->finish().ok());
  for (int uid = 1; uid <= kStreams; ++uid) {
    const auto ended = fake.wait_for_stream_end(uid, kWait);
    ASSERT_TRUE(ended);
    EXPECT_TRUE(ended->client_half_closed);
  }
}

TEST(FakeGameService, WaitsTimeOut) {
  FakeGameService fake;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(fake.wait_for_streams(1, 50ms));
  EXPECT_FALSE(fake.wait_for_frames(7, 1, 50ms));
  EXPECT_FALSE(fake.wait_for_stream_end(7, 50ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

}  // namespace
}  // namespace gatehouse::testing
