// BatchUpstream against a real gRPC game service in the process
// (FakeGameService, whose GameServer serves the batched contract too): the
// events of a pass in one Batch, the game's replies and kicks, records kept
// until the game acknowledges them, a link that breaks and re-announces its
// sessions, and sessions given up after --backend-wait.
#include "gatehouse/bridge/batch_upstream.h"
#include "gatehouse/base/clock.h"

#include <chrono>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "game_test_client.h"
#include "gatehouse/game/demo_game.h"
#include "recording_events.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using gatehouse::testing::FakeGameService;
using gatehouse::testing::FakeGameServiceOptions;
using gatehouse::testing::packet;
using gatehouse::testing::to_bytes;
using testing::kWait;
using testing::Recorded;
using testing::RecordingEvents;
using testing::RecordingKeeper;
using testing::span_of;
using testing::text;

constexpr std::uint64_t kConn = 0x1'0000'0003;

class BatchUpstreamTest : public ::testing::Test {
 protected:
  BatchUpstreamTest()
      : game_(FakeGameServiceOptions{.echo = true}),
        doorbell_(shm::Doorbell::create()),
        wakeup_(doorbell_),
        metrics_(shard_) {}

  void make_upstream(std::int64_t backend_wait_ns = 60'000'000'000) {
    upstream_ = std::make_unique<BatchUpstream>(
        BatchUpstream::Options{game_.address(), "test-gateway/0", backend_wait_ns}, calls_, events_,
        wakeup_, instance_metrics_);
  }

  template <class Predicate>
  bool flush_until(Predicate done, std::chrono::milliseconds timeout = kWait) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      upstream_->flush(monotonic_ns());
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  std::uint64_t counter(metrics::Counter c) const { return shard_.counters[c].load(); }
  std::uint64_t instance_count(metrics::InstanceCounter c) const {
    return instance_metrics_.counts()[c];
  }
  Origin origin(std::uint64_t position) { return Origin{&keeper_, position, false}; }

  FakeGameService game_;
  shm::Doorbell doorbell_;
  Wakeup wakeup_;
  metrics::Shard shard_{};
  metrics::Writer metrics_;
  InstanceMetrics instance_metrics_{metrics_};  // the instance's counts, beside the bridge's
  RecordingEvents events_;
  RecordingKeeper keeper_;
  CallQueue calls_;
  std::unique_ptr<BatchUpstream> upstream_;  // after calls_: goes first
};

TEST_F(BatchUpstreamTest, APassesEventsShareOneBatchAndRepliesComeBackPerSession) {
  make_upstream();
  for (std::uint64_t i = 0; i < 3; ++i) {
    const Origin o = origin(i * 64);
    ASSERT_TRUE(upstream_->open(kConn + i, static_cast<std::int64_t>(100 + i), 0, &o));
    upstream_->send(kConn + i, 1, span_of(packet(game::demo::kPingReq, to_bytes("hi"))), o);
  }
  ASSERT_TRUE(flush_until([&] { return counter(metrics::kGameBatchesSent) >= 1; }));
  EXPECT_EQ(counter(metrics::kGameBatchesSent), 1u) << "one pass, one write";
  EXPECT_EQ(upstream_->calls_open(), 1u) << "one link for every session";
  ASSERT_TRUE(game_.wait_for_streams(3, kWait));
  ASSERT_TRUE(events_.wait_for(3, kWait));
  for (const Recorded& e : events_.events()) {
    EXPECT_EQ(e.kind, Recorded::kMessage);
    EXPECT_EQ(e.bytes, text(packet(game::demo::kPingAck, to_bytes("hi"))));
    EXPECT_NE(e.seq, 0u) << "the game numbers its events";
  }
  EXPECT_EQ(counter(metrics::kGameMessagesSent), 3u);
  // The instance's own counts: events, not batches.
  EXPECT_EQ(instance_count(metrics::kInstanceMessagesSent), 3u);
  EXPECT_EQ(instance_count(metrics::kInstanceMessagesReceived), 3u);
}

// Issue 20, row 7, the gateway -> game direction: a pass's events go in one
// write unless they exceed a gRPC message; 80 client payloads of 60 KB (4.8
// MB) are cut into writes that fit, on the one link, and all arrive.
TEST_F(BatchUpstreamTest, APassLargerThanOneGrpcMessageIsCutByBytesAndAllArrives) {
  make_upstream();
  constexpr std::uint64_t kSessions = 80;
  const game::Bytes big(60'000, std::byte{'m'});
  for (std::uint64_t i = 0; i < kSessions; ++i) {
    const Origin o = origin(i * 64);
    ASSERT_TRUE(upstream_->open(kConn + i, static_cast<std::int64_t>(100 + i), 0, &o));
    upstream_->send(kConn + i, 1, big, o);
  }
  ASSERT_TRUE(flush_until([&] { return counter(metrics::kGameBatchesSent) >= 2; }));
  ASSERT_TRUE(game_.wait_for_streams(kSessions, kWait));
  for (std::uint64_t i = 0; i < kSessions; ++i) {
    ASSERT_TRUE(game_.wait_for_frames(static_cast<std::int32_t>(100 + i), 1, kWait)) << i;
  }
  ASSERT_TRUE(flush_until([&] { return upstream_->unacknowledged() == 0; }));
  EXPECT_EQ(counter(metrics::kGameMessagesSent), kSessions);
  EXPECT_EQ(counter(metrics::kGameStreamsOpened), 1u) << "the link never broke";
  EXPECT_EQ(counter(metrics::kGameStreamsFailed), 0u);
  EXPECT_EQ(counter(metrics::kDroppedToGame), 0u);
}

TEST_F(BatchUpstreamTest, RecordsAreKeptUntilTheGameAcknowledgesTheirEvents) {
  make_upstream();
  const Origin first = origin(0);
  const Origin second = origin(64);
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, &first));
  upstream_->send(kConn, 1, span_of(to_bytes("m")), second);
  ASSERT_EQ(keeper_.kept.size(), 2u);
  EXPECT_EQ(keeper_.kept[0].position, 0u);
  EXPECT_EQ(keeper_.kept[0].index, 0u);
  EXPECT_EQ(keeper_.kept[1].position, 64u);
  EXPECT_EQ(keeper_.kept[1].index, 1u);
  const auto& link = keeper_.kept[1].link;
  EXPECT_FALSE(link->releases(1)) << "not even sent yet";
  ASSERT_TRUE(flush_until([&] { return link->releases(1); }));
  EXPECT_EQ(upstream_->unacknowledged(), 0u);
}

TEST_F(BatchUpstreamTest, GameKickReachesOnlyItsSession) {
  make_upstream();
  for (std::int64_t i = 0; i < 2; ++i)
    ASSERT_TRUE(upstream_->open(kConn + static_cast<std::uint64_t>(i), 10 + i, 0, nullptr));
  ASSERT_TRUE(flush_until([&] { return game_.live_stream_count() == 2; }));
  ASSERT_TRUE(game_.push(11, to_bytes("to 11")));
  ASSERT_TRUE(game_.kick(11));
  ASSERT_TRUE(events_.wait_for(2, kWait));
  const auto events = events_.events();
  EXPECT_EQ(events[0].kind, Recorded::kMessage);
  EXPECT_EQ(events[0].conn, kConn + 1);
  EXPECT_EQ(events[1].kind, Recorded::kKick);
  EXPECT_EQ(events[1].conn, kConn + 1);
}

TEST_F(BatchUpstreamTest, RepliesWaitingForRingRoomAreAcknowledgedOnlyOnceWritten) {
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr));
  ASSERT_TRUE(flush_until(
      [&] { return game_.live_stream_count() == 1 && counter(metrics::kGameBatchesSent) == 1; }));
  events_.hold_replies(true);
  ASSERT_TRUE(game_.push(7, to_bytes("a")));
  ASSERT_TRUE(events_.wait_for(1, kWait));
  // The game keeps "a" (and would send it again on a new link) until then:
  // no ack goes out for it.
  const std::uint64_t batches = counter(metrics::kGameBatchesSent);
  ASSERT_FALSE(flush_until([] { return false; }, 100ms));
  EXPECT_EQ(counter(metrics::kGameBatchesSent), batches);
  events_.release_held();
  ASSERT_TRUE(flush_until([&] { return counter(metrics::kGameBatchesSent) > batches; }, 2s))
      << "the ack goes out alone once it lags";
  EXPECT_EQ(shard_.in_flight.load(), 0) << "a batched link does not count in-flight";
}

TEST_F(BatchUpstreamTest, ALinkThatBreaksComesBackAndReattachesItsSessions) {
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr));
  ASSERT_TRUE(flush_until([&] { return game_.live_stream_count() == 1; }));
  game_.stop();
  ASSERT_TRUE(flush_until([&] { return upstream_->calls_open() == 0; }));
  EXPECT_GE(counter(metrics::kGameStreamsFailed), 1u);
  EXPECT_EQ(instance_count(metrics::kInstanceStreamsFailed), counter(metrics::kGameStreamsFailed));
  game_.start();
  ASSERT_TRUE(flush_until([&] { return game_.live_stream_count() >= 1; }, 10s));
  EXPECT_EQ(game_.streams().back().user_id, 7);
  ASSERT_TRUE(game_.push(7, to_bytes("again")));
  ASSERT_TRUE(events_.wait_for(1, kWait));
  EXPECT_EQ(events_.events()[0].kind, Recorded::kMessage) << "waiting, not kicked";
  EXPECT_EQ(events_.events()[0].bytes, "again");
}

TEST_F(BatchUpstreamTest, SessionsGiveUpOnAGameServiceAwayLongerThanBackendWait) {
  make_upstream(/*backend_wait_ns=*/300'000'000);
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr));
  ASSERT_TRUE(upstream_->open(kConn + 1, 8, 0, nullptr));
  ASSERT_TRUE(flush_until([&] { return game_.live_stream_count() == 2; }));
  game_.stop();
  ASSERT_TRUE(flush_until([&] { return events_.events().size() == 2; }, 10s));
  for (const Recorded& e : events_.events()) {
    EXPECT_EQ(e.kind, Recorded::kEnded);
    EXPECT_EQ(e.grpc_code, grpc::StatusCode::UNAVAILABLE);
  }
}

TEST_F(BatchUpstreamTest, CloseEndsTheSessionAtTheGameAndCloseAllTheLink) {
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr));
  ASSERT_TRUE(flush_until([&] { return game_.live_stream_count() == 1; }));
  upstream_->close(kConn, Origin{});
  ASSERT_TRUE(flush_until([&] { return game_.live_stream_count() == 0; }));
  EXPECT_TRUE(game_.streams()[0].client_half_closed);
  upstream_->close_all();
  ASSERT_TRUE(flush_until([&] { return upstream_->calls_open() == 0; }));
  EXPECT_TRUE(events_.events().empty());
}

}  // namespace
}  // namespace gatehouse::bridge

namespace gatehouse::bridge {
namespace {

/// A batched game service that answers the first OPEN it reads with a kick
/// and a message for a session it was never given (the next slot: another
/// backend's, say), then a message for its own.
class MeddlingGame final : public batch::BatchGameService::CallbackService {
 public:
  MeddlingGame() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~MeddlingGame() override { server_->Shutdown(std::chrono::system_clock::now()); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::ServerBidiReactor<batch::Batch, batch::Batch>* Batches(
      grpc::CallbackServerContext*) override {
    return new Reactor();
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<batch::Batch, batch::Batch> {
   public:
    Reactor() { StartRead(&in_); }
    void OnReadDone(bool ok) override {
      if (!ok) return Finish(grpc::Status::OK);
      read_ += static_cast<std::uint64_t>(in_.events_size());
      for (const batch::Event& e : in_.events()) {
        if (e.kind() != batch::Event::OPEN || answered_) continue;
        answered_ = true;
        const std::uint64_t other = e.session() + 1;
        add(batch::Event::KICK, other, "");
        add(batch::Event::MESSAGE, other, "not yours");
        add(batch::Event::MESSAGE, e.session(), "mine");
        out_.set_ack(read_);
        StartWrite(&out_);
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {}
    void OnDone() override { delete this; }

   private:
    void add(batch::Event::Kind kind, std::uint64_t session, const std::string& text) {
      batch::Event* e = out_.add_events();
      e->set_kind(kind);
      e->set_session(session);
      e->set_message(text);
    }
    batch::Batch in_;
    batch::Batch out_;
    std::uint64_t read_ = 0;
    bool answered_ = false;
  };

  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// Issue 20: sessions go to a backend by user id; a batched game service may
// message or kick only the sessions of its own link, never another's. Its
// events for others are dropped and counted; its own session is served.
TEST_F(BatchUpstreamTest, AGameCannotMessageOrKickASessionItDoesNotServe) {
  MeddlingGame meddler;
  upstream_ = std::make_unique<BatchUpstream>(
      BatchUpstream::Options{meddler.address(), "test-gateway/0", 60'000'000'000}, calls_, events_,
      wakeup_, instance_metrics_);
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr));
  ASSERT_TRUE(flush_until([&] { return counter(metrics::kGameEventsForeign) >= 2; }));
  ASSERT_TRUE(events_.wait_for(1, kWait));
  const auto events = events_.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Recorded::kMessage);
  EXPECT_EQ(events[0].conn, kConn);
  EXPECT_EQ(events[0].bytes, "mine");
  EXPECT_EQ(counter(metrics::kGameEventsForeign), 2u);
}

}  // namespace
}  // namespace gatehouse::bridge
