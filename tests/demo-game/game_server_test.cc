// GameServer (examples/demo-game) with a scripted handler: the parts of the
// contract and of the server's own promises that the fake's tests do not
// reach (pings, the registry, slow consumers, shutdown, and reactor lifetime
// under concurrent push/kick while clients go away).
#include "gatehouse/game/game_server.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "batch.grpc.pb.h"
#include "game_test_client.h"
#include "gatehouse/codec/game_link_limits.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using game::FrameNumbering;
using game::GameServer;
using game::StreamHandle;

constexpr auto kWait = kPatience;

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
  bool wait_ended(std::size_t n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kWait, [&] { return ended_ >= n; });
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
  std::size_t half_closed() const {
    std::lock_guard lock(mu_);
    return half_closed_;
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
  const game::Bytes big(std::size_t{64} * 1024, std::byte{0x5a});
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
  // Each client reads while the server shuts down, as a gateway's bridge
  // does: the server closes its connections once the calls are over, and a
  // close with unread input resets the connection, discarding what the
  // client had not yet taken from its socket.
  std::vector<std::future<std::pair<std::optional<proto::Game::Frame>, grpc::Status>>> ends;
  for (auto& client : clients) {
    ends.push_back(std::async(std::launch::async, [&client] {
      auto frame = client->read();
      return std::make_pair(std::move(frame), client->finish());
    }));
  }
  ASSERT_EQ(server.broadcast(to_bytes("bye")), kStreams);
  server.shutdown();
  EXPECT_EQ(handler.ended(), kStreams) << "shutdown returns after every on_end";
  EXPECT_EQ(server.stream_count(), 0u);
  for (auto& end : ends) {
    const auto [frame, status] = end.get();
    ASSERT_TRUE(frame) << "frames queued before shutdown are flushed; " << status.error_message();
    EXPECT_EQ(message_of(*frame), to_bytes("bye"));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  server.shutdown();  // idempotent
  GameTestClient late(make_game_channel(port), 1);
  EXPECT_EQ(late.finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

/// One operation of a stress actor on a live stream, given a payload to send.
using StressOp = std::function<void(GameServer&, const StreamHandle&, const game::Bytes&)>;

/// `threads` threads that, until `stop`, pick a random live stream and run
/// `ops[r]` on it for a random r below `spread`, or push to it when r is past
/// the ops.
std::vector<std::thread> stress_actors(GameServer& server, const std::atomic<bool>& stop,
                                       unsigned threads, unsigned spread,
                                       const std::vector<StressOp>& ops) {
  std::vector<std::thread> actors;
  for (unsigned t = 0; t < threads; ++t) {
    actors.emplace_back([&server, &stop, t, spread, ops] {
      std::mt19937 rng(t);
      const game::Bytes payload = to_bytes("stress");
      while (!stop.load()) {
        const auto streams = server.streams();
        if (streams.empty()) {
          std::this_thread::yield();
          continue;
        }
        const StreamHandle& stream = streams[rng() % streams.size()];
        const std::size_t r = rng() % spread;
        if (r < ops.size()) {
          ops[r](server, stream, payload);
        } else {
          stream.push(payload);
        }
      }
    });
  }
  return actors;
}

// Reactor lifetime: operations from other threads race with clients that
// cancel, half-close or get kicked, on two serving threads. Run under ASan (GATEHOUSE_SANITIZE) to
// make a use-after-free loud.
TEST(GameServer, ConcurrentPushAndKickWhileClientsDisconnect) {
  ScriptedHandler handler;
  handler.message_hook = echo;
  // Two serving threads: a call's completions may run at the same time.
  GameServer server(handler, {.threads = 2});
  std::atomic<bool> stop{false};
  std::vector<std::thread> actors = stress_actors(
      server, stop, 4, 10,
      {[](GameServer&, const StreamHandle& s, const game::Bytes&) { s.kick(); },
       [](GameServer&, const StreamHandle& s, const game::Bytes&) {
         s.finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "stress"));
       },
       [](GameServer& g, const StreamHandle& s, const game::Bytes&) { g.kick_user(s.user_id()); },
       [](GameServer& g, const StreamHandle&, const game::Bytes& p) { g.broadcast(p); }});
  for (int round = 0; round < 10; ++round) {
    const auto channel = make_game_channel(server.port());
    std::vector<std::unique_ptr<GameTestClient>> clients;
    for (int i = 0; i < 40; ++i) {
      clients.push_back(std::make_unique<GameTestClient>(channel, round * 100 + i));
    }
    for (auto& client : clients) client->send(to_bytes("hello"));
    // A call cancelled before the server took it never reaches the game, so
    // the cancels start once every call of the round has opened.
    ASSERT_TRUE(handler.wait_opened(static_cast<std::size_t>(round + 1) * clients.size()));
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

// ------------------------------------------------------------------ batched contract
//
// A raw gateway side of Batches() (proto/batch.proto): the tests choose every
// event, seq, ack and the `gateway-id`, and look at every Batch the game
// writes, as a gateway bridge that restarts would.

using gatehouse::batch::Batch;
using BatchEvent = gatehouse::batch::Event;

BatchEvent open_event(std::uint64_t session, std::int64_t user_id) {
  BatchEvent e;
  e.set_session(session);
  e.set_kind(BatchEvent::OPEN);
  e.set_user_id(user_id);
  return e;
}

BatchEvent message_event(std::uint64_t session, std::string_view text, std::uint64_t seq) {
  BatchEvent e;
  e.set_session(session);
  e.set_kind(BatchEvent::MESSAGE);
  e.set_message(std::string(text));
  e.set_seq(seq);
  return e;
}

BatchEvent close_event(std::uint64_t session) {
  BatchEvent e;
  e.set_session(session);
  e.set_kind(BatchEvent::CLOSE);
  return e;
}

std::uint64_t epoch_of(std::uint64_t seq) {
  return seq >> 32;
}
std::uint64_t n_of(std::uint64_t seq) {
  return seq & 0xffffffffu;
}

/// One Batches() call, as the gateway's end; a thread collects what the game
/// writes.
class BatchTestLink {
 public:
  BatchTestLink(const std::shared_ptr<grpc::Channel>& channel,
                std::optional<std::string> gateway_id)
      : stub_(gatehouse::batch::BatchGameService::NewStub(channel)) {
    if (gateway_id) context_.AddMetadata("gateway-id", *gateway_id);
    context_.set_deadline(std::chrono::system_clock::now() + GameTestClient::kDeadline);
    stream_ = stub_->Batches(&context_);
    reader_ = std::thread([this] {
      Batch batch;
      while (stream_->Read(&batch)) {
        std::lock_guard lock(mu_);
        got_.push_back(batch);
        changed_.notify_all();
      }
      std::lock_guard lock(mu_);
      ended_ = true;
      changed_.notify_all();
    });
  }
  ~BatchTestLink() {
    cancel();
    finish();
  }
  BatchTestLink(const BatchTestLink&) = delete;
  BatchTestLink& operator=(const BatchTestLink&) = delete;

  bool send(std::vector<BatchEvent> events, std::uint64_t ack = 0) {
    Batch batch;
    for (BatchEvent& e : events) *batch.add_events() = std::move(e);
    batch.set_ack(ack);
    return stream_->Write(batch);
  }
  /// The next Batch from the game; nullopt after `timeout` or at the end.
  std::optional<Batch> next(std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, timeout, [&] { return !got_.empty() || ended_; })) {
      return std::nullopt;
    }
    if (got_.empty()) return std::nullopt;
    Batch batch = std::move(got_.front());
    got_.pop_front();
    game_events_ += static_cast<std::uint64_t>(batch.events_size());
    return batch;
  }
  /// The game's events of the next batches, until there are `n` (fewer when
  /// they stop coming).
  std::vector<BatchEvent> events(std::size_t n) {
    std::vector<BatchEvent> out;
    while (out.size() < n) {
      const auto batch = next();
      if (!batch) break;
      for (const BatchEvent& e : batch->events()) out.push_back(e);
    }
    return out;
  }
  /// The game's events taken by next() so far: what a gateway would ack.
  std::uint64_t game_events() const {
    std::lock_guard lock(mu_);
    return game_events_;
  }
  /// The game ended the call.
  bool wait_ended() {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kWait, [&] { return ended_; });
  }
  void cancel() { context_.TryCancel(); }
  grpc::Status finish() {
    if (reader_.joinable()) {
      reader_.join();
      status_ = stream_->Finish();
    }
    return status_;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<gatehouse::batch::BatchGameService::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<Batch, Batch>> stream_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Batch> got_;
  std::uint64_t game_events_ = 0;
  bool ended_ = false;
  grpc::Status status_;
};

std::string text_of(const BatchEvent& e) {
  return e.message();
}

/// Echoes every message, except "kick" (kicks) and ones starting "quiet".
void echo_or_kick(StreamHandle stream, std::span<const std::byte> message) {
  const std::string_view text(reinterpret_cast<const char*>(message.data()), message.size());
  if (text == "kick") {
    stream.kick();
  } else if (!text.starts_with("quiet")) {
    stream.push(message);
  }
}

TEST(GameServerBatched, DuplicateMessageSeqIsDispatchedOnceAndSeqZeroAlways) {
  ScriptedHandler handler;
  handler.message_hook = echo_or_kick;
  GameServer server(handler, {});
  BatchTestLink link(make_game_channel(server.port()), "gw");
  ASSERT_TRUE(
      link.send({open_event(7, 42), message_event(7, "a", 1), message_event(7, "a2", 1),
                 message_event(7, "b", 2), message_event(7, "old", 1), message_event(7, "z", 0),
                 message_event(7, "z", 0), message_event(7, "c", 3)}));
  const auto first = link.events(5);
  ASSERT_EQ(first.size(), 5u);
  std::vector<std::string> texts;
  for (const BatchEvent& e : first) texts.push_back(text_of(e));
  EXPECT_THAT(texts, ::testing::ElementsAre("a", "b", "z", "z", "c"));
  // Again on the next batch (a bridge that restarted sends what we have not
  // acknowledged again).
  ASSERT_TRUE(link.send({message_event(7, "c2", 3), message_event(7, "d", 4)}, 5));
  const auto second = link.events(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(text_of(second[0]), "d");
  EXPECT_EQ(handler.messages(), 6u);
  // The game's own numbering: one nonzero epoch, n = 1, 2, ...
  std::uint64_t n = 0;
  for (const auto* events : {&first, &second}) {
    for (const BatchEvent& e : *events) {
      EXPECT_EQ(e.session(), 7u);
      EXPECT_EQ(e.kind(), BatchEvent::MESSAGE);
      EXPECT_NE(epoch_of(e.seq()), 0u);
      EXPECT_EQ(epoch_of(e.seq()), epoch_of(first[0].seq()));
      EXPECT_EQ(n_of(e.seq()), ++n);
    }
  }
}

TEST(GameServerBatched, ReattachSendsWhatTheGatewayDidNotAcknowledgeWithItsSeq) {
  constexpr std::size_t kPushed = 6;
  constexpr std::uint64_t kAcked = 2;
  ScriptedHandler handler;
  handler.message_hook = echo_or_kick;
  GameServer server(handler, {});
  const auto channel = make_game_channel(server.port());
  std::vector<std::uint64_t> seqs;
  {
    BatchTestLink a(channel, "gw");
    std::vector<BatchEvent> batch{open_event(1, 5)};
    for (std::size_t i = 0; i < kPushed; ++i) {
      batch.push_back(message_event(1, "m" + std::to_string(i), i + 1));
    }
    ASSERT_TRUE(a.send(std::move(batch)));
    const auto echoed = a.events(kPushed);
    ASSERT_EQ(echoed.size(), kPushed);
    for (const BatchEvent& e : echoed) seqs.push_back(e.seq());
    // Only the first kAcked are taken over; an event for no session makes the
    // game answer (an ack alone), so the ack surely arrived before the cancel.
    ASSERT_TRUE(a.send({message_event(99, "nobody", 0)}, kAcked));
    const auto ack = a.next();
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->events_size(), 0);
    EXPECT_EQ(ack->ack(), 1 + kPushed + 1);
    a.cancel();
  }
  BatchTestLink b(channel, "gw");
  ASSERT_TRUE(b.send({open_event(1, 5)}));
  const auto again = b.events(kPushed - kAcked);
  ASSERT_EQ(again.size(), kPushed - kAcked);
  for (std::size_t i = 0; i < again.size(); ++i) {
    EXPECT_EQ(text_of(again[i]), "m" + std::to_string(kAcked + i));
    EXPECT_EQ(again[i].seq(), seqs[kAcked + i]);
  }
  ASSERT_TRUE(b.send({message_event(1, "new", kPushed + 1)}, b.game_events()));
  const auto fresh = b.events(1);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(text_of(fresh[0]), "new");
  EXPECT_EQ(epoch_of(fresh[0].seq()), epoch_of(seqs[0]));
  EXPECT_EQ(n_of(fresh[0].seq()), kPushed + 1);
  EXPECT_EQ(handler.opened(), 1u);
  EXPECT_EQ(handler.ended(), 0u);
  EXPECT_EQ(handler.messages(), kPushed + 1);
}

TEST(GameServerBatched, UnacknowledgedKickIsReplayedAndAnAcknowledgedOneTombstones) {
  ScriptedHandler handler;
  handler.message_hook = echo_or_kick;
  GameServer server(handler, {});
  const auto channel = make_game_channel(server.port());
  std::uint64_t kick_seq = 0;
  {
    BatchTestLink a(channel, "gw");
    ASSERT_TRUE(a.send({open_event(3, 9), message_event(3, "kick", 1)}));
    const auto kick = a.events(1);
    ASSERT_EQ(kick.size(), 1u);
    EXPECT_EQ(kick[0].kind(), BatchEvent::KICK);
    EXPECT_EQ(n_of(kick[0].seq()), 1u);
    kick_seq = kick[0].seq();
    ASSERT_TRUE(handler.wait_ended(1));
    a.cancel();  // before acknowledging the KICK
  }
  {
    BatchTestLink b(channel, "gw");
    ASSERT_TRUE(b.send({open_event(3, 9)}));
    const auto kick = b.events(1);
    ASSERT_EQ(kick.size(), 1u);
    EXPECT_EQ(kick[0].kind(), BatchEvent::KICK);
    EXPECT_EQ(kick[0].seq(), kick_seq);
    ASSERT_TRUE(b.send({message_event(99, "nobody", 0)}, 1));  // the KICK is taken over
    const auto ack = b.next();
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->events_size(), 0);
    b.cancel();
  }
  BatchTestLink c(channel, "gw");
  ASSERT_TRUE(c.send({open_event(3, 9), message_event(3, "hello", 2)}));
  const auto batch = c.next();
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->events_size(), 0) << "a closed session's OPEN is ignored";
  EXPECT_EQ(batch->ack(), 2u);
  EXPECT_EQ(handler.opened(), 1u);
  EXPECT_EQ(handler.ended(), 1u);
  EXPECT_EQ(handler.messages(), 1u);
}

// A handler that ends a session from its own callbacks (on_open, on_message)
// gets on_end once that callback returned, not a deadlock.
TEST(GameServerBatched, HandlerCanKickFromItsCallbacks) {
  ScriptedHandler handler;
  handler.open_hook = [](StreamHandle stream) {
    stream.push(to_bytes("welcome"));
    if (stream.user_id() == 2) stream.kick();
  };
  handler.message_hook = [](StreamHandle stream, std::span<const std::byte>) {
    // Every session of user 1 (this one too) from this one's on_message.
    stream.server().kick_user(1);
  };
  GameServer server(handler, {});
  BatchTestLink link(make_game_channel(server.port()), "gw");
  ASSERT_TRUE(link.send({open_event(1, 1), open_event(2, 2), open_event(3, 1)}));
  ASSERT_TRUE(handler.wait_ended(1));
  ASSERT_TRUE(link.send({message_event(1, "kick us", 1)}));
  ASSERT_TRUE(handler.wait_ended(3));
  std::vector<std::pair<std::uint64_t, int>> got;
  for (const BatchEvent& e : link.events(6)) got.emplace_back(e.session(), e.kind());
  EXPECT_THAT(got,
              ::testing::UnorderedElementsAre(std::pair<std::uint64_t, int>{1, BatchEvent::MESSAGE},
                                              std::pair<std::uint64_t, int>{2, BatchEvent::MESSAGE},
                                              std::pair<std::uint64_t, int>{2, BatchEvent::KICK},
                                              std::pair<std::uint64_t, int>{3, BatchEvent::MESSAGE},
                                              std::pair<std::uint64_t, int>{1, BatchEvent::KICK},
                                              std::pair<std::uint64_t, int>{3, BatchEvent::KICK}));
  EXPECT_EQ(handler.opened(), 3u);
  EXPECT_EQ(server.stream_count(), 0u);
}

TEST(GameServerBatched, OpenAfterCloseIsIgnoredButAnotherGatewayIdIsANewSession) {
  ScriptedHandler handler;
  GameServer server(handler, {});
  const auto channel = make_game_channel(server.port());
  {
    BatchTestLink a(channel, "gw-a");
    ASSERT_TRUE(a.send({open_event(5, 1)}));
    ASSERT_TRUE(a.next());
    ASSERT_TRUE(a.send({close_event(5)}));
    ASSERT_TRUE(a.next());
    EXPECT_EQ(handler.ended(), 1u);
    EXPECT_EQ(handler.half_closed(), 1u);
    ASSERT_TRUE(a.send({open_event(5, 1)}));  // a gateway's late resend, same link
    const auto ack = a.next();
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->ack(), 3u);
    EXPECT_EQ(handler.opened(), 1u);
  }
  {
    BatchTestLink again(channel, "gw-a");  // and on the next link
    ASSERT_TRUE(again.send({open_event(5, 1)}));
    ASSERT_TRUE(again.next());
    EXPECT_EQ(handler.opened(), 1u);
  }
  BatchTestLink b(channel, "gw-b");
  ASSERT_TRUE(b.send({open_event(5, 1)}));
  ASSERT_TRUE(b.next());
  EXPECT_EQ(handler.opened(), 2u);
  EXPECT_EQ(server.stream_count(), 1u);
}

TEST(GameServerBatched, DetachedSessionEndsAfterTheGrace) {
  constexpr auto kGrace = 200ms;
  ScriptedHandler handler;
  GameServer server(handler, {.reattach_grace = kGrace});
  const auto channel = make_game_channel(server.port());
  auto link = std::make_unique<BatchTestLink>(channel, "gw");
  ASSERT_TRUE(link->send({open_event(1, 1)}));
  ASSERT_TRUE(handler.wait_opened(1));
  // The game detaches the session when it sees the cancel, which can be
  // before finish() returns here: the clock starts before the cancel.
  const auto cancelled = std::chrono::steady_clock::now();
  link->cancel();
  link->finish();
  link.reset();
  std::this_thread::sleep_for(kGrace / 2);
  EXPECT_EQ(handler.ended(), 0u) << "a detached session waits for its gateway";
  EXPECT_EQ(server.stream_count(), 1u);
  ASSERT_TRUE(handler.wait_ended(1));
  EXPECT_GE(std::chrono::steady_clock::now() - cancelled, kGrace);
  EXPECT_EQ(handler.half_closed(), 0u);
  EXPECT_EQ(server.stream_count(), 0u);
}

TEST(GameServerBatched, EveryBatchAcknowledgesTheEventsReadAndAnAckIsNotAnswered) {
  ScriptedHandler handler;
  handler.message_hook = echo_or_kick;
  GameServer server(handler, {});
  BatchTestLink link(make_game_channel(server.port()), "gw");
  const auto expect_batch = [&](int events, std::uint64_t ack) {
    const auto batch = link.next();
    ASSERT_TRUE(batch);
    EXPECT_EQ(batch->events_size(), events);
    EXPECT_EQ(batch->ack(), ack);
  };
  ASSERT_TRUE(link.send({open_event(1, 1)}));
  expect_batch(0, 1);  // nothing to say: an ack alone
  ASSERT_TRUE(link.send({message_event(1, "echo", 1)}));
  expect_batch(1, 2);
  ASSERT_TRUE(link.send({}, 1));  // an ack alone is not answered
  EXPECT_FALSE(link.next(300ms));
  ASSERT_TRUE(link.send(
      {message_event(1, "quiet", 2), message_event(1, "quiet", 3), message_event(42, "nobody", 0)},
      1));
  expect_batch(0, 5);
  ASSERT_TRUE(link.send({message_event(1, "echo", 4), message_event(1, "quiet", 5)}, 1));
  expect_batch(1, 7);
  EXPECT_FALSE(link.next(300ms));
}

TEST(GameServerBatched, NewLinkOfTheSameGatewayIdTakesTheSessionsOver) {
  ScriptedHandler handler;
  handler.message_hook = echo_or_kick;
  GameServer server(handler, {});
  const auto channel = make_game_channel(server.port());
  BatchTestLink a(channel, "gw");
  ASSERT_TRUE(a.send({open_event(1, 1), message_event(1, "hi", 1)}));
  const auto hi = a.events(1);
  ASSERT_EQ(hi.size(), 1u);

  BatchTestLink b(channel, "gw");  // while a is open
  ASSERT_TRUE(b.send({open_event(1, 1)}));
  EXPECT_TRUE(a.wait_ended()) << "the old link's call ends";
  EXPECT_EQ(a.finish().error_code(), grpc::StatusCode::CANCELLED);
  const auto again = b.events(1);  // a never acknowledged it
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(text_of(again[0]), "hi");
  EXPECT_EQ(again[0].seq(), hi[0].seq());
  ASSERT_TRUE(b.send({message_event(1, "there", 2)}, 1));
  const auto there = b.events(1);
  ASSERT_EQ(there.size(), 1u);
  EXPECT_EQ(text_of(there[0]), "there");
  EXPECT_EQ(handler.opened(), 1u);
  EXPECT_EQ(handler.ended(), 0u);
  EXPECT_EQ(server.stream_count(), 1u);
}

TEST(GameServerBatched, LinkWithoutGatewayIdEndsItsSessions) {
  ScriptedHandler handler;
  GameServer server(handler, {});
  BatchTestLink link(make_game_channel(server.port()), std::nullopt);
  ASSERT_TRUE(link.send({open_event(1, 1), open_event(2, 2)}));
  ASSERT_TRUE(handler.wait_opened(2));
  link.cancel();
  ASSERT_TRUE(handler.wait_ended(2));
  EXPECT_EQ(server.stream_count(), 0u);
}

TEST(GameServerBatched, ShutdownEndsSessionsWithoutKick) {
  ScriptedHandler handler;
  GameServer server(handler, {});
  BatchTestLink link(make_game_channel(server.port()), "gw");
  ASSERT_TRUE(link.send({open_event(1, 1)}));
  ASSERT_TRUE(link.next());
  server.shutdown();
  EXPECT_EQ(handler.ended(), 1u);
  while (const auto batch = link.next()) {
    for (const BatchEvent& e : batch->events()) EXPECT_NE(e.kind(), BatchEvent::KICK);
  }
}

// Lifetime and lock order under load: pushes, kicks and finishes from other
// threads while links of one gateway-id break, replace each other and
// re-attach the same sessions. Run under ASan (GATEHOUSE_SANITIZE) to
// make a race loud.
TEST(GameServerBatched, ConcurrentPushAndKickWhileLinksBreakAndReattach) {
  constexpr std::uint64_t kSessions = 20;
  ScriptedHandler handler;
  handler.message_hook = echo;
  GameServer server(handler, {.max_queued_frames = 256, .reattach_grace = 200ms, .threads = 2});
  std::atomic<bool> stop{false};
  std::vector<std::thread> actors = stress_actors(
      server, stop, 3, 20,
      {[](GameServer&, const StreamHandle& s, const game::Bytes&) { s.kick(); },
       [](GameServer&, const StreamHandle& s, const game::Bytes&) {
         s.finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "stress"));
       },
       [](GameServer& g, const StreamHandle&, const game::Bytes& p) { g.broadcast(p); }});
  const auto channel = make_game_channel(server.port());
  std::mt19937 rng(99);
  std::vector<std::uint64_t> client_seq(kSessions + 1, 0);
  std::unique_ptr<BatchTestLink> link;
  for (int round = 0; round < 30; ++round) {
    auto next = std::make_unique<BatchTestLink>(channel, "gw-stress");
    if (link && rng() % 3 == 0) link->cancel();  // else the new link replaces it
    std::vector<BatchEvent> batch;
    for (std::uint64_t s = 1; s <= kSessions; ++s) {
      batch.push_back(open_event(s, static_cast<std::int64_t>(s)));
      batch.push_back(message_event(s, "hello", ++client_seq[s]));
      if (rng() % 4 == 0) batch.push_back(message_event(s, "dup", client_seq[s]));
    }
    ASSERT_TRUE(next->send(std::move(batch)));
    for (int i = 0; i < 5; ++i) {
      if (!next->next(20ms)) break;
      // An ack of what arrived, or of one less.
      const std::uint64_t got = next->game_events();
      if (rng() % 2 == 0) next->send({}, got - (got != 0 ? rng() % 2 : 0));
    }
    if (rng() % 5 == 0) next->send({close_event(1 + rng() % kSessions)}, next->game_events());
    link = std::move(next);
  }
  stop.store(true);
  for (auto& actor : actors) actor.join();
  // The last link may have been cancelled for holding too many unacknowledged
  // pushes (nobody acknowledges after the last round): a new link takes the
  // sessions over and closes them.
  BatchTestLink closer(channel, "gw-stress");
  std::vector<BatchEvent> closes;
  for (std::uint64_t s = 1; s <= kSessions; ++s) closes.push_back(close_event(s));
  ASSERT_TRUE(closer.send(std::move(closes)));
  ASSERT_TRUE(handler.wait_all_ended());
  EXPECT_EQ(server.stream_count(), 0u);
  link.reset();
}

}  // namespace
}  // namespace gatehouse::testing

namespace gatehouse::testing {
namespace {

// Issue 20, row 7: what a handler answers to one gateway batch leaves in one
// write, unless it is larger than a gRPC message. 10 sessions x 1 MiB are cut
// into writes of at most kMaxMessageBytes (this end's channel has gRPC's
// default 4 MiB receive limit: a larger one would fail the call).
TEST(GameServerBatched, BatchesAreCutByBytesSoEachFitsOneGrpcMessage) {
  constexpr std::uint64_t kSessions = 10;
  const std::string big(std::size_t{1} << 20, 'b');
  ScriptedHandler handler;
  handler.message_hook = [&](StreamHandle stream, std::span<const std::byte>) {
    EXPECT_EQ(stream.server().broadcast(to_bytes(big)), kSessions);
  };
  GameServer server(handler, {});
  BatchTestLink link(make_game_channel(server.port()), "gw");
  std::vector<BatchEvent> opens;
  for (std::uint64_t s = 1; s <= kSessions; ++s)
    opens.push_back(open_event(s, static_cast<std::int64_t>(100 + s)));
  ASSERT_TRUE(link.send(std::move(opens)));
  ASSERT_TRUE(handler.wait_opened(kSessions));
  ASSERT_TRUE(link.send({message_event(1, "go", 1)}));
  std::size_t events = 0;
  std::size_t writes = 0;
  while (events < kSessions) {
    const auto batch = link.next();
    ASSERT_TRUE(batch) << "after " << events << " events";
    EXPECT_LE(batch->ByteSizeLong(), game_link::kMaxMessageBytes);
    for (const BatchEvent& e : batch->events()) EXPECT_EQ(e.message().size(), big.size());
    events += static_cast<std::size_t>(batch->events_size());
    if (batch->events_size() != 0) ++writes;
  }
  EXPECT_EQ(events, kSessions);
  EXPECT_GE(writes, 3u) << "10 MiB cannot go in fewer than three 4 MiB messages";
  EXPECT_EQ(server.oversize_refused(), 0u);
}

// A message larger than one Event or Frame can carry would fail the call it
// goes on (every session of a batched link): it is refused and counted, and
// the largest that fits goes through, on both contracts.
TEST(GameServer, MessageThatCanNeverFitIsRefusedAndCountedAndTheLargestFits) {
  const std::string largest(game_link::kMaxEventMessageBytes, 'l');
  const std::string too_big(game_link::kMaxEventMessageBytes + 1, 't');
  ScriptedHandler handler;
  handler.message_hook = [&](StreamHandle stream, std::span<const std::byte>) {
    EXPECT_FALSE(stream.push(to_bytes(too_big)));
    EXPECT_EQ(stream.server().broadcast(to_bytes(too_big)), 0u);
    EXPECT_EQ(stream.server().push_to_user(stream.user_id(), to_bytes(too_big)), 0u);
    EXPECT_TRUE(stream.push(to_bytes(largest)));
    EXPECT_TRUE(stream.push(to_bytes("after")));
  };
  GameServer server(handler, {});
  GameTestClient client(make_game_channel(server.port()), 3);
  ASSERT_TRUE(client.send(to_bytes("go")));
  auto frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->message().size(), largest.size());
  frame = client.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(message_of(*frame), to_bytes("after"));
  EXPECT_EQ(server.oversize_refused(), 3u);

  BatchTestLink link(make_game_channel(server.port()), "gw");
  ASSERT_TRUE(link.send({open_event(7, 42), message_event(7, "go", 1)}));
  const auto events = link.events(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].message().size(), largest.size());
  EXPECT_EQ(text_of(events[1]), "after");
  EXPECT_EQ(server.oversize_refused(), 6u);
}

}  // namespace
}  // namespace gatehouse::testing
