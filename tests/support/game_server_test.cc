// GameServer (examples/demo-game) with a scripted handler: the parts of the
// contract and of the server's own promises that the fake's tests do not
// reach (pings, the registry, slow consumers, shutdown, and reactor lifetime
// under concurrent push/kick while clients go away).
#include "gatehouse/game/game_server.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "game_test_client.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using game::FrameNumbering;
using game::GameServer;
using game::StreamHandle;

constexpr auto kWait = 5s;

/// Counts events and runs optional hooks (set before the server starts).
class ScriptedHandler final : public game::GameHandler {
 public:
  std::function<void(StreamHandle)> open_hook;
  std::function<void(StreamHandle, std::span<const std::byte>)> message_hook;

  void on_open(StreamHandle stream) override {
    if (open_hook) open_hook(stream);
    std::lock_guard lock(mu_);
    ++opened_;
    changed_.notify_all();
  }
  void on_message(StreamHandle stream, std::span<const std::byte> message) override {
    {
      std::lock_guard lock(mu_);
      ++messages_;
    }
    if (message_hook) message_hook(stream, message);
  }
  void on_end(StreamHandle, bool client_half_closed) override {
    std::lock_guard lock(mu_);
    ++ended_;
    half_closed_ += client_half_closed ? 1 : 0;
    changed_.notify_all();
  }

  bool wait_opened(std::size_t n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kWait, [&] { return opened_ >= n; });
  }
  /// Every stream that opened has ended.
  bool wait_all_ended() {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kWait, [&] { return ended_ == opened_; });
  }
  std::size_t opened() const {
    std::lock_guard lock(mu_);
    return opened_;
  }
  std::size_t ended() const {
    std::lock_guard lock(mu_);
    return ended_;
  }
  std::size_t messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::size_t opened_ = 0;
  std::size_t ended_ = 0;
  std::size_t half_closed_ = 0;
  std::size_t messages_ = 0;
};

void echo(StreamHandle stream, std::span<const std::byte> message) {
  stream.push(message);
}

TEST(GameServer, PingIsAnsweredWithPingAndNotHandedToTheGame) {
  for (const FrameNumbering numbering :
       {FrameNumbering::kGonet2, FrameNumbering::kLaterGeneration}) {
    SCOPED_TRACE(game::to_string(numbering));
    ScriptedHandler handler;
    GameServer server(handler, {.numbering = numbering});
    const int ping = game::frame_type_values(numbering).ping;
    GameTestClient client(make_game_channel(server.port()), 3);
    ASSERT_TRUE(client.send(to_bytes("probe"), ping));
    const auto reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(type_of(*reply), ping);
    EXPECT_EQ(message_of(*reply), to_bytes("probe"));
    EXPECT_EQ(handler.messages(), 0u);
  }
}

TEST(FrameNumbering, WireValuesAndNames) {
  EXPECT_EQ(game::frame_type_values(FrameNumbering::kGonet2).kick, 1);
  EXPECT_EQ(game::frame_type_values(FrameNumbering::kGonet2).ping, 2);
  EXPECT_EQ(game::frame_type_values(FrameNumbering::kLaterGeneration).message, 0);
  EXPECT_EQ(game::frame_type_values(FrameNumbering::kLaterGeneration).kick, 2);
  EXPECT_EQ(game::frame_type_values(FrameNumbering::kLaterGeneration).ping, 3);
  EXPECT_EQ(game::parse_frame_numbering("gonet2"), FrameNumbering::kGonet2);
  EXPECT_EQ(game::parse_frame_numbering("later"), FrameNumbering::kLaterGeneration);
  EXPECT_FALSE(game::parse_frame_numbering("Later"));
  EXPECT_EQ(game::to_string(FrameNumbering::kLaterGeneration), "later");
}

TEST(GameServer, OtherFrameTypesFromTheGatewayAreIgnored) {
  ScriptedHandler handler;
  handler.message_hook = echo;
  GameServer server(handler, {});
  GameTestClient client(make_game_channel(server.port()), 3);
  ASSERT_TRUE(client.send(to_bytes("kick?"), 1));
  ASSERT_TRUE(client.send(to_bytes("what"), 77));
  ASSERT_TRUE(client.send(to_bytes("msg")));
  const auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(message_of(*reply), to_bytes("msg"));
  EXPECT_EQ(handler.messages(), 1u);
}

TEST(GameServer, OnOpenCanPushAndKick) {
  ScriptedHandler handler;
  handler.open_hook = [](StreamHandle stream) {
    stream.push(to_bytes("welcome"));
    if (stream.user_id() == 2) stream.kick();
  };
  GameServer server(handler, {});
  const auto channel = make_game_channel(server.port());
  GameTestClient welcome(channel, 1);
  auto frame = welcome.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(message_of(*frame), to_bytes("welcome"));

  GameTestClient kicked(channel, 2);
  frame = kicked.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(message_of(*frame), to_bytes("welcome"));
  frame = kicked.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(type_of(*frame), 1);
  EXPECT_TRUE(kicked.finish().ok());
}

TEST(GameServer, RegistryAddressesStreamsByIdAndByUser) {
  ScriptedHandler handler;
  GameServer server(handler, {});
  const auto channel = make_game_channel(server.port());
  GameTestClient a1(channel, 1);
  GameTestClient a2(channel, 1);  // a second session of the same user
  GameTestClient b(channel, 2);
  ASSERT_TRUE(handler.wait_opened(3));
  EXPECT_EQ(server.stream_count(), 3u);

  const auto streams = server.streams();
  ASSERT_EQ(streams.size(), 3u);
  EXPECT_THAT(streams, ::testing::Contains(::testing::Property(&StreamHandle::user_id, 2)));
  EXPECT_EQ(server.push_to_user(1, to_bytes("to 1")), 2u);
  EXPECT_EQ(server.push_to_user(3, to_bytes("to 3")), 0u);
  EXPECT_EQ(server.broadcast(to_bytes("all")), 3u);
  for (GameTestClient* client : {&a1, &a2}) {
    EXPECT_EQ(message_of(*client->read()), to_bytes("to 1"));
    EXPECT_EQ(message_of(*client->read()), to_bytes("all"));
  }
  EXPECT_EQ(message_of(*b.read()), to_bytes("all"));

  for (const StreamHandle& stream : streams) {
    if (stream.user_id() == 2) {
      EXPECT_TRUE(server.push(stream.id(), to_bytes("only b")));
      EXPECT_TRUE(server.finish(stream.id(), grpc::Status(grpc::StatusCode::ABORTED, "test")));
      EXPECT_FALSE(stream.push(to_bytes("too late")));
    }
  }
  EXPECT_EQ(message_of(*b.read()), to_bytes("only b"));
  EXPECT_EQ(b.finish().error_code(), grpc::StatusCode::ABORTED);
  EXPECT_FALSE(server.push(game::StreamId{999999}, to_bytes("x")));
  EXPECT_FALSE(server.kick(game::StreamId{999999}));

  EXPECT_EQ(server.finish_user(1, grpc::Status(grpc::StatusCode::DATA_LOSS, "t")), 2u);
  EXPECT_EQ(a1.finish().error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(a2.finish().error_code(), grpc::StatusCode::DATA_LOSS);
  ASSERT_TRUE(handler.wait_all_ended());
  EXPECT_EQ(server.stream_count(), 0u);
}

TEST(GameServer, SlowConsumerIsCancelledNotTrimmed) {
  ScriptedHandler handler;
  GameServer server(handler, {.max_queued_frames = 8});
  GameTestClient client(make_game_channel(server.port()), 3);  // never reads
  ASSERT_TRUE(handler.wait_opened(1));
  const game::Bytes big(64 * 1024, std::byte{0x5a});
  const StreamHandle stream = server.streams().at(0);
  int accepted = 0;
  while (stream.push(big) && accepted < 100000) ++accepted;
  EXPECT_LT(accepted, 100000) << "the queue never overflowed";
  ASSERT_TRUE(handler.wait_all_ended());
  EXPECT_FALSE(client.finish().ok());
}

TEST(GameServer, ShutdownEndsEveryStreamWithUnavailable) {
  constexpr std::size_t kStreams = 20;
  ScriptedHandler handler;
  GameServer server(handler, {});
  const int port = server.port();
  const auto channel = make_game_channel(port);
  std::vector<std::unique_ptr<GameTestClient>> clients;
  for (std::size_t i = 0; i < kStreams; ++i) {
    clients.push_back(std::make_unique<GameTestClient>(channel, static_cast<std::int32_t>(i)));
  }
  ASSERT_TRUE(handler.wait_opened(kStreams));
  ASSERT_EQ(server.broadcast(to_bytes("bye")), kStreams);
  server.shutdown();
  EXPECT_EQ(handler.ended(), kStreams) << "shutdown returns after every on_end";
  EXPECT_EQ(server.stream_count(), 0u);
  for (auto& client : clients) {
    const auto frame = client->read();
    ASSERT_TRUE(frame) << "frames queued before shutdown are flushed";
    EXPECT_EQ(message_of(*frame), to_bytes("bye"));
    EXPECT_EQ(client->finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  server.shutdown();  // idempotent
  GameTestClient late(make_game_channel(port), 1);
  EXPECT_EQ(late.finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

// Reactor lifetime: operations from other threads race with clients that
// cancel, half-close or get kicked. Run under ASan (GATEHOUSE_SANITIZE) to
// make a use-after-free loud.
TEST(GameServer, ConcurrentPushAndKickWhileClientsDisconnect) {
  ScriptedHandler handler;
  handler.message_hook = echo;
  GameServer server(handler, {});
  std::atomic<bool> stop{false};
  std::vector<std::thread> actors;
  for (unsigned t = 0; t < 4; ++t) {
    actors.emplace_back([&server, &stop, t] {
      std::mt19937 rng(t);
      const game::Bytes payload = to_bytes("stress");
      while (!stop.load()) {
        const auto streams = server.streams();
        if (streams.empty()) {
          std::this_thread::yield();
          continue;
        }
        const StreamHandle& stream = streams[rng() % streams.size()];
        switch (rng() % 10) {
          case 0:
            stream.kick();
            break;
          case 1:
            stream.finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "stress"));
            break;
          case 2:
            server.kick_user(stream.user_id());
            break;
          case 3:
            server.broadcast(payload);
            break;
          default:
            stream.push(payload);
            break;
        }
      }
    });
  }
  for (int round = 0; round < 10; ++round) {
    const auto channel = make_game_channel(server.port());
    std::vector<std::unique_ptr<GameTestClient>> clients;
    for (int i = 0; i < 40; ++i) {
      clients.push_back(std::make_unique<GameTestClient>(channel, round * 100 + i));
    }
    for (auto& client : clients) client->send(to_bytes("hello"));
    for (std::size_t i = 0; i < clients.size(); ++i) {
      if (i % 2 == 0) {
        clients[i]->cancel();
      } else {
        clients[i]->writes_done();
      }
    }
    for (auto& client : clients) client->finish();
  }
  stop.store(true);
  for (auto& actor : actors) actor.join();
  ASSERT_TRUE(handler.wait_all_ended());
  EXPECT_EQ(handler.opened(), 400u);
  EXPECT_EQ(server.stream_count(), 0u);
}

// Many messages per stream, from several client threads: every echo arrives,
// in order. Prints the rate for information; it asserts no speed.
TEST(GameServer, ManyMessagesPerStreamArriveInOrder) {
  constexpr int kThreads = 8;
  constexpr int kStreamsPerThread = 8;
  constexpr int kMessages = 500;
  ScriptedHandler handler;
  handler.message_hook = echo;
  GameServer server(handler, {});
  const auto channel = make_game_channel(server.port());
  std::atomic<int> failures{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::unique_ptr<GameTestClient>> clients;
      for (int s = 0; s < kStreamsPerThread; ++s) {
        clients.push_back(std::make_unique<GameTestClient>(channel, t * 100 + s));
      }
      for (int i = 0; i < kMessages; ++i) {
        for (auto& client : clients) client->send(packet(2000, to_bytes(std::to_string(i))));
      }
      for (int i = 0; i < kMessages; ++i) {
        for (auto& client : clients) {
          const auto frame = client->read();
          if (!frame || message_of(*frame) != packet(2000, to_bytes(std::to_string(i)))) {
            ++failures;
          }
        }
      }
      for (auto& client : clients) client->writes_done();
      for (auto& client : clients) {
        if (!client->finish().ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(failures.load(), 0);
  const double round_trips = kThreads * kStreamsPerThread * kMessages;
  std::printf("%.0f echoes in %.3f s: %.0f messages/s each way\n", round_trips, took.count(),
              round_trips / took.count());
}

}  // namespace
}  // namespace gatehouse::testing
