// Gonet2Upstream against a real gRPC game service in the process
// (FakeGameService): a Stream per session with its userid, frames both ways,
// the end of a stream behind its last message, half-close, and the re-open
// after a bridge restart while the game service is down. The test drives
// the upstream as the bridge's main thread does (open/send/close, and
// flush() for its connection's I/O, parked on its IoPoller in between).
#include "gatehouse/bridge/gonet2_upstream.h"
#include "gatehouse/base/clock.h"

#include <chrono>
#include <string>
#include <thread>

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
using testing::span_of;
using testing::text;

constexpr std::uint64_t kConn = 0x1'0000'0003;

class Gonet2UpstreamTest : public ::testing::Test {
 protected:
  explicit Gonet2UpstreamTest(FakeGameServiceOptions game = {.echo = true})
      : game_(game), metrics_(shard_) {}

  void make_upstream(std::int64_t backend_wait_ns = 60'000'000'000) {
    upstream_ = std::make_unique<Gonet2Upstream>(
        Gonet2Upstream::Options{game_.address(), FrameNumbering::kGonet2, backend_wait_ns,
                                "test-gw"},
        io_, events_, instance_metrics_, shard_.in_flight);
  }

  /// Runs the upstream's flush() as the duty cycle would until `done()`.
  template <class Predicate>
  bool flush_until(Predicate done, std::chrono::milliseconds timeout = kWait) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      upstream_->flush(monotonic_ns());
      io_.wait(1ms);  // as the bridge parks: its sockets wake it
    }
    return true;
  }

  std::uint64_t counter(metrics::Counter c) const { return shard_.counters[c].load(); }
  std::uint64_t instance_count(metrics::InstanceCounter c) const {
    return instance_metrics_.counts()[c];
  }

  FakeGameService game_;
  metrics::Shard shard_{};
  metrics::Writer metrics_;
  InstanceMetrics instance_metrics_{metrics_};  // the instance's counts, beside the bridge's
  RecordingEvents events_;
  IoPoller io_;
  std::unique_ptr<Gonet2Upstream> upstream_;  // after io_: goes first
  const Origin origin_{nullptr, 0, false};
};

TEST_F(Gonet2UpstreamTest, OpensAStreamPerSessionWithItsUseridAndCarriesFramesBothWays) {
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 42, 0, &origin_));
  EXPECT_FALSE(upstream_->open(kConn, 42, 0, &origin_)) << "one stream per session";
  ASSERT_TRUE(flush_until([&] { return game_.wait_for_streams(1, 0ms); }));
  EXPECT_EQ(game_.streams()[0].user_id, 42);
  EXPECT_EQ(upstream_->calls_open(), 1u);

  const game::Bytes ping = packet(game::demo::kPingReq, to_bytes("hello"));
  upstream_->send(kConn, 1, span_of(ping), origin_);
  ASSERT_TRUE(flush_until([&] { return game_.wait_for_frames(42, 1, 0ms); }));
  EXPECT_EQ(game_.frames(42)[0], ping);

  // The echo comes back read by flush(), on this thread.
  ASSERT_TRUE(flush_until([&] { return events_.events().size() >= 1; }));
  const Recorded reply = events_.events()[0];
  EXPECT_EQ(reply.kind, Recorded::kMessage);
  EXPECT_EQ(reply.conn, kConn);
  EXPECT_EQ(reply.bytes, text(packet(game::demo::kPingAck, to_bytes("hello"))));
  EXPECT_EQ(reply.seq, 0u);
  EXPECT_EQ(counter(metrics::kGameMessagesSent), 1u);
  EXPECT_EQ(counter(metrics::kGameStreamsOpened), 1u);
  // The instance's own counts (gatehouse_game_instance_*_total).
  EXPECT_EQ(instance_count(metrics::kInstanceMessagesSent), 1u);
  EXPECT_EQ(instance_count(metrics::kInstanceMessagesReceived), 1u);
  EXPECT_EQ(instance_count(metrics::kInstanceStreamsFailed), 0u);
  // Counted in flight from send() until gRPC says it is written (which may
  // come after the echo).
  EXPECT_TRUE(flush_until([&] { return shard_.in_flight.load() == 0; }));
}

TEST_F(Gonet2UpstreamTest, KickAndEndComeAfterTheStreamsLastMessage) {
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, &origin_));
  ASSERT_TRUE(flush_until([&] { return game_.wait_for_streams(1, 0ms); }));
  ASSERT_TRUE(game_.push(7, to_bytes("one")));
  ASSERT_TRUE(game_.push(7, to_bytes("two")));
  ASSERT_TRUE(game_.kick(7));
  ASSERT_TRUE(flush_until([&] { return upstream_->calls_open() == 0; }));
  const auto events = events_.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].kind, Recorded::kMessage);
  EXPECT_EQ(events[0].bytes, "one");
  EXPECT_EQ(events[1].bytes, "two");
  EXPECT_EQ(events[2].kind, Recorded::kKick);
  EXPECT_EQ(events[3].kind, Recorded::kEnded);
  EXPECT_EQ(events[3].grpc_code, 0);
}

TEST_F(Gonet2UpstreamTest, AFailedStreamEndsItsSessionAndFurtherFramesSayItAgain) {
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, &origin_));
  ASSERT_TRUE(flush_until([&] { return game_.wait_for_streams(1, 0ms); }));
  ASSERT_TRUE(game_.fail_stream(7));
  ASSERT_TRUE(flush_until([&] { return upstream_->calls_open() == 0; }));
  ASSERT_EQ(events_.events().size(), 1u);
  EXPECT_EQ(events_.events()[0].kind, Recorded::kEnded);
  EXPECT_EQ(events_.events()[0].grpc_code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(counter(metrics::kGameStreamsFailed), 1u);

  // A frame the worker sent before it heard: dropped, and the end said again.
  upstream_->send(kConn, 2, span_of(to_bytes("late")), origin_);
  EXPECT_EQ(counter(metrics::kDroppedToGame), 1u);
  EXPECT_EQ(instance_count(metrics::kInstanceMessagesDropped), 1u);
  EXPECT_EQ(instance_count(metrics::kInstanceStreamsFailed), 2u) << "the end said again counts";
  ASSERT_EQ(events_.events().size(), 2u);
  EXPECT_EQ(events_.events()[1].kind, Recorded::kEnded);
}

TEST_F(Gonet2UpstreamTest, CloseHalfClosesAndReportsNoEnd) {
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, &origin_));
  upstream_->send(kConn, 1, span_of(to_bytes("bye")), origin_);
  upstream_->close(kConn, origin_);
  std::optional<gatehouse::testing::FakeStream> end;
  ASSERT_TRUE(flush_until([&] { return (end = game_.wait_for_stream_end(7, 0ms)).has_value(); }));
  EXPECT_TRUE(end->client_half_closed);
  EXPECT_EQ(game_.frames(7).size(), 1u) << "queued frames go before the half-close";
  ASSERT_TRUE(flush_until([&] { return upstream_->calls_open() == 0; }));
  EXPECT_TRUE(events_.events().empty()) << "the session is gone already";
  EXPECT_EQ(shard_.in_flight.load(), 0);
}

TEST_F(Gonet2UpstreamTest, ReplayedRecordsAreNotSentAgain) {
  make_upstream();
  const Origin replay{nullptr, 0, true};
  EXPECT_FALSE(upstream_->open(kConn, 7, 0, &replay));
  upstream_->send(kConn, 1, span_of(to_bytes("x")), replay);
  EXPECT_EQ(upstream_->calls_open(), 0u);
  EXPECT_TRUE(events_.events().empty());
  EXPECT_EQ(counter(metrics::kDroppedToGame), 0u);
}

TEST_F(Gonet2UpstreamTest, RepliesWaitingForRingRoomCountAsInFlight) {
  make_upstream();
  events_.hold_replies(true);
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, &origin_));
  ASSERT_TRUE(flush_until([&] { return game_.wait_for_streams(1, 0ms); }));
  ASSERT_TRUE(game_.push(7, to_bytes("a")));
  ASSERT_TRUE(game_.push(7, to_bytes("b")));
  ASSERT_TRUE(flush_until([&] { return events_.events().size() >= 2; }));
  // Each counted from its read; once the read is done, only while it waits.
  EXPECT_TRUE(flush_until([&] { return shard_.in_flight.load() == 2; }));
  EXPECT_EQ(events_.release_held(), 2u);
  EXPECT_EQ(shard_.in_flight.load(), 0);
}

TEST_F(Gonet2UpstreamTest, ANewSessionWhileTheGameIsDownEnds) {
  game_.stop();
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, &origin_));
  ASSERT_TRUE(flush_until([&] { return !events_.events().empty(); }));
  EXPECT_EQ(events_.events()[0].kind, Recorded::kEnded);
  EXPECT_EQ(events_.events()[0].grpc_code, grpc::StatusCode::UNAVAILABLE);
}

TEST_F(Gonet2UpstreamTest, ATakenOverSessionWaitsForItsGameServiceToComeBack) {
  game_.stop();
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr)) << "take-over: no record behind it";
  // The first attempt fails and is retried with backoff, not ended.
  ASSERT_TRUE(flush_until([&] { return counter(metrics::kGameStreamsOpened) >= 3; }));
  // Dropped and counted: at once between attempts, or when the attempt it
  // was queued on fails.
  upstream_->send(kConn, 1, span_of(to_bytes("meanwhile")), origin_);
  EXPECT_TRUE(flush_until([&] { return counter(metrics::kDroppedToGame) >= 1; }));
  game_.start();
  ASSERT_TRUE(flush_until([&] { return game_.live_stream_count() == 1; }, 10s));
  EXPECT_EQ(game_.streams().back().user_id, 7);
  EXPECT_TRUE(events_.events().empty()) << "the session was never ended";
}

TEST_F(Gonet2UpstreamTest, ATakenOverSessionGivesUpAfterBackendWait) {
  game_.stop();
  make_upstream(/*backend_wait_ns=*/300'000'000);
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr));
  ASSERT_TRUE(flush_until([&] { return !events_.events().empty(); }, 10s));
  EXPECT_EQ(events_.events()[0].kind, Recorded::kEnded);
  EXPECT_EQ(events_.events()[0].grpc_code, grpc::StatusCode::UNAVAILABLE);
}

TEST_F(Gonet2UpstreamTest, TheDrainStopsRetriesAndOpensNothing) {
  game_.stop();
  make_upstream();
  ASSERT_TRUE(upstream_->open(kConn, 7, 0, nullptr));
  ASSERT_TRUE(flush_until([&] { return counter(metrics::kGameStreamsOpened) >= 2; }));
  upstream_->close_all();
  ASSERT_TRUE(flush_until([&] {
    return upstream_->calls_open() == 0 && !events_.events().empty();
  })) << "the retrying session hears its game is unavailable";
  EXPECT_EQ(events_.events()[0].kind, Recorded::kEnded);
  EXPECT_EQ(events_.events()[0].grpc_code, grpc::StatusCode::UNAVAILABLE);

  EXPECT_FALSE(upstream_->open(kConn + 1, 8, 0, &origin_)) << "no stream opens during the drain";
  ASSERT_TRUE(flush_until([&] { return events_.events().size() == 2; }));
  EXPECT_EQ(events_.events()[1].conn, kConn + 1);
  // Past the longest backoff nothing was re-opened and nothing stays open.
  const std::uint64_t opened = counter(metrics::kGameStreamsOpened);
  flush_until([] { return false; }, 1500ms);
  EXPECT_EQ(counter(metrics::kGameStreamsOpened), opened);
  EXPECT_EQ(upstream_->calls_open(), 0u);
}

TEST_F(Gonet2UpstreamTest, CloseAllHalfClosesEveryStream) {
  make_upstream();
  for (std::int64_t i = 0; i < 3; ++i)
    ASSERT_TRUE(upstream_->open(kConn + static_cast<std::uint64_t>(i), 10 + i, 0, &origin_));
  ASSERT_TRUE(flush_until([&] { return game_.wait_for_streams(3, 0ms); }));
  upstream_->close_all();
  ASSERT_TRUE(flush_until([&] { return upstream_->calls_open() == 0; }));
  for (const auto& s : game_.streams()) EXPECT_TRUE(s.client_half_closed);
  EXPECT_TRUE(events_.events().empty());
}

}  // namespace
}  // namespace gatehouse::bridge
