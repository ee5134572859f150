// The Bridge's duty cycle driven one pass at a time (do_work()), with the
// test as the worker (its two rings in a real segment) and a real gRPC game
// service in the process, for each contract: records from the worker reach
// the game, and the game's replies reach the worker ring by the same path,
// in order, even when the ring is full; the drain half-closes and finishes.
// BridgeBackPressure: a game that outruns a worker that does not read is
// paused (game-backlog-bytes), loses nothing, and does not hold up the drain.
#include "gatehouse/bridge/bridge.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "game_test_client.h"
#include "gatehouse/codec/game_link_limits.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/game/demo_game.h"
#include "patience.h"
#include "test_segment.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using gatehouse::testing::FakeGameService;
using gatehouse::testing::FakeGameServiceOptions;
using gatehouse::testing::packet;
using gatehouse::testing::to_bytes;

constexpr std::int64_t kUser = 7;
const std::uint64_t kConn = shm::ConnectionId(1, 2).value();

struct Got {
  std::uint32_t type;
  std::uint64_t conn;
  std::string bytes;
};

/// Parameter: the --backend prefix of the contract ("" gonet2, "batch:").
class BridgeDutyCycle : public ::testing::TestWithParam<std::string> {
 protected:
  explicit BridgeDutyCycle(std::uint32_t backlog_bytes = 4u << 20,
                           std::uint32_t drain_timeout_ms = 5000)
      : game_(FakeGameServiceOptions{.echo = true}),
        settings_(settings(GetParam() + game_.address(), backlog_bytes, drain_timeout_ms)),
        segment_(testing::make_segment(settings_)),
        to_bridge_(segment_.ring(RingKind::kWorkerToBridge, 0)),
        from_bridge_(segment_.ring(RingKind::kBridgeToWorker, 0)) {
    std::vector<shm::Doorbell> workers;
    workers.push_back(shm::Doorbell::create());
    bridge_ = std::make_unique<Bridge>(segment_, 0, shm::Doorbell::create(), std::move(workers));
    bridge_->take_over();
  }

  static Settings settings(const std::string& backend, std::uint32_t backlog_bytes,
                           std::uint32_t drain_timeout_ms) {
    Settings s = testing::test_settings(1, {backend});
    s.game_backlog_bytes = backlog_bytes;
    s.drain_timeout_ms = drain_timeout_ms;
    return s;
  }

  bool batched() const { return !GetParam().empty(); }

  template <class Header>
  void write(ipc::RecordType type, const Header& header, std::span<const std::byte> tail = {}) {
    ASSERT_EQ(ipc::write_record(to_bridge_, type, header, tail), shm::WriteStatus::kOk);
    to_bridge_.publish();
  }

  /// do_work() (and the worker's read) until `done()` (true) or 10 s passed.
  template <class Predicate>
  bool run_until(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      bridge_->do_work();
      read();
      std::this_thread::sleep_for(200us);
    }
    return true;
  }
  bool run_until_read(std::size_t n) {
    return run_until([&] { return got_.size() >= n; });
  }

  void read() {
    from_bridge_.read(
        [&](const shm::Record& r) {
          Got g{r.type, 0, {}};
          std::memcpy(&g.conn, r.payload.data(), sizeof g.conn);  // every header starts so
          if (r.type == ipc::kLoginVerdict) {
            accepted_.push_back(ipc::parse_record<ipc::LoginVerdict>(r.payload)->header.accepted);
          }
          if (r.type == ipc::kGameMessage) {
            const auto tail = ipc::parse_record<ipc::GameMessage>(r.payload)->tail;
            g.bytes.assign(reinterpret_cast<const char*>(tail.data()), tail.size());
          }
          got_.push_back(std::move(g));
        },
        1 << 20);
  }

  std::uint64_t counter(metrics::Counter c) const {
    return segment_.metrics().bridges[0].counters[c].load();
  }
  std::int64_t gauge(metrics::Gauge g) const {
    return segment_.metrics().bridges[0].gauges[g].load();
  }

  FakeGameService game_;
  const Settings settings_;
  GatewaySegment segment_;
  shm::RingProducer to_bridge_;
  shm::RingConsumer from_bridge_;
  std::unique_ptr<Bridge> bridge_;
  std::vector<Got> got_;
  std::vector<std::uint32_t> accepted_;  // kLoginVerdict's, in order
};

TEST_P(BridgeDutyCycle, WorkerRecordsReachTheGameAndItsRepliesTheWorkerRing) {
  write(ipc::kStreamOpen, ipc::StreamOpen{kConn, kUser, 0, 0, 0});
  const game::Bytes ping = packet(game::demo::kPingReq, to_bytes("one pass"));
  write(ipc::kStreamMessage, ipc::StreamMessage{kConn, kUser, 1}, ping);
  ASSERT_TRUE(run_until_read(1));
  ASSERT_EQ(got_[0].type, ipc::kGameMessage);
  EXPECT_EQ(got_[0].conn, kConn);
  const game::Bytes ack = packet(game::demo::kPingAck, to_bytes("one pass"));
  EXPECT_EQ(got_[0].bytes, std::string(reinterpret_cast<const char*>(ack.data()), ack.size()));
  EXPECT_EQ(game_.frames(kUser), std::vector<game::Bytes>{ping});
  EXPECT_EQ(counter(metrics::kGameMessagesSent), 1u);
  EXPECT_EQ(counter(metrics::kGameMessagesReceived), 1u);

  // Closing: the game sees the session end; the worker hears nothing more.
  write(ipc::kStreamClose, ipc::StreamClose{kConn, kUser});
  ASSERT_TRUE(run_until([&] { return game_.live_stream_count() == 0; }));
  EXPECT_TRUE(game_.streams()[0].client_half_closed);
  bridge_->request_stop();
  EXPECT_TRUE(run_until([&] { return bridge_->finished(); })) << "every call ended";
  read();
  EXPECT_EQ(got_.size(), 1u);
}

TEST_P(BridgeDutyCycle, RepliesThatDoNotFitWaitInOrderAndTheKickComesLast) {
  write(ipc::kStreamOpen, ipc::StreamOpen{kConn, kUser, 0, 0, 0});
  ASSERT_TRUE(run_until([&] { return game_.live_stream_count() == 1; }));
  // More than the 64 KiB ring holds, while the worker does not read.
  constexpr int kReplies = 300;
  const std::string pad(500, 'r');
  for (int i = 0; i < kReplies; ++i)
    ASSERT_TRUE(game_.push(kUser, to_bytes(std::to_string(i) + pad)));
  ASSERT_TRUE(game_.kick(kUser));
  // Every reply taken from the game before the worker reads one: the ring is
  // full, the rest waits in the bridge (counted in flight for gonet2).
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (counter(metrics::kGameMessagesReceived) < kReplies &&
         std::chrono::steady_clock::now() < deadline) {
    bridge_->do_work();
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(counter(metrics::kGameMessagesReceived), static_cast<std::uint64_t>(kReplies));
  if (!batched()) {
    EXPECT_GT(segment_.metrics().bridges[0].in_flight.load(), 0);
  }
  ASSERT_TRUE(run_until_read(kReplies + (batched() ? 1 : 2)));
  for (std::size_t i = 0; i < static_cast<std::size_t>(kReplies); ++i) {
    ASSERT_EQ(got_[i].type, ipc::kGameMessage);
    ASSERT_EQ(got_[i].bytes, std::to_string(i) + pad);
  }
  EXPECT_EQ(got_[kReplies].type, ipc::kGameKick);
  // gonet2: the stream ends after its kick; batched: the link stays.
  if (!batched()) {
    EXPECT_EQ(got_[kReplies + 1].type, ipc::kStreamEnded);
  }
  EXPECT_EQ(segment_.metrics().bridges[0].in_flight.load(), 0) << "nothing held any more";
}

/// A 32 KiB bound on the game backlog (the ring holds 64 KiB).
class BridgeBackPressure : public BridgeDutyCycle {
 protected:
  static constexpr std::uint32_t kBound = 32 << 10;
  static constexpr int kFirst = 500;     // 0.5 MB: more than the ring and the bound
  static constexpr int kReplies = 1500;  // then 1 MB more once the bridge paused

  BridgeBackPressure() : BridgeDutyCycle(kBound, /*drain_timeout_ms=*/1000) {}

  /// Opens the session's game call; the game pushes kFirst messages as fast
  /// as it can while the worker does not read, and once the bridge paused
  /// the rest and a kick.
  void flood() {
    write(ipc::kStreamOpen, ipc::StreamOpen{kConn, kUser, 0, 0, 0});
    ASSERT_TRUE(run_until([&] { return game_.live_stream_count() == 1; }));
    for (int i = 0; i < kFirst; ++i) ASSERT_TRUE(game_.push(kUser, to_bytes(reply(i))));
    ASSERT_TRUE(stall_until([&] { return counter(metrics::kGameReadsPaused) >= 1; }));
    for (int i = kFirst; i < kReplies; ++i) ASSERT_TRUE(game_.push(kUser, to_bytes(reply(i))));
    ASSERT_TRUE(game_.kick(kUser));
  }
  static std::string reply(int i) { return std::to_string(i) + std::string(1000, 'r'); }

  /// do_work() passes while the worker does not read, until `done()`.
  template <class Predicate>
  bool stall_until(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + gatehouse::testing::kPatience;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      bridge_->do_work();
      std::this_thread::sleep_for(200us);
    }
    return true;
  }
};

TEST_P(BridgeBackPressure, AGameThatOutrunsTheWorkerIsPausedAndLosesNothing) {
  ASSERT_NO_FATAL_FAILURE(flood());
  // While the worker does not read, the backlog stays within its bound plus
  // the one gRPC message each paused call had read already (a gonet2 Frame
  // is one reply; a Batch may carry many), and the game keeps the rest.
  const std::int64_t slack =
      batched() ? std::int64_t{game_link::kMaxMessageBytes} : std::int64_t{2048};
  std::int64_t most = 0;
  for (int pass = 0; pass < 200; ++pass) {
    bridge_->do_work();
    most = std::max(most, gauge(metrics::kGameBacklogBytes));
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_LE(most, std::int64_t{kBound} + slack);
  EXPECT_GT(most, std::int64_t{kBound}) << "it went over the bound, then paused";
  EXPECT_EQ(gauge(metrics::kGameReadsPausedNow), 1);
  EXPECT_LE(counter(metrics::kGameMessagesReceived), static_cast<std::uint64_t>(kFirst))
      << "the game holds back what it sent after the pause";

  // The worker reads again: every reply, in order, then the kick (and for
  // gonet2 the stream's end), and nothing waits any more.
  ASSERT_TRUE(run_until_read(kReplies + (batched() ? 1 : 2)));
  for (std::size_t i = 0; i < std::size_t{kReplies}; ++i) {
    ASSERT_EQ(got_[i].type, ipc::kGameMessage);
    ASSERT_EQ(got_[i].bytes, reply(static_cast<int>(i)));
  }
  EXPECT_EQ(got_[kReplies].type, ipc::kGameKick);
  if (!batched()) {
    EXPECT_EQ(got_[kReplies + 1].type, ipc::kStreamEnded);
  }
  EXPECT_TRUE(run_until([&] { return gauge(metrics::kGameBacklogBytes) == 0; }));
  EXPECT_EQ(gauge(metrics::kGameBacklogEvents), 0);
  EXPECT_EQ(gauge(metrics::kGameReadsPausedNow), 0);
  EXPECT_EQ(segment_.metrics().bridges[0].in_flight.load(), 0) << "nothing held any more";
}

TEST_P(BridgeBackPressure, TheDrainEndsWithACallPausedForAWorkerThatNeverReads) {
  ASSERT_NO_FATAL_FAILURE(flood());
  // The half-close cannot end a paused call (the game's end waits behind
  // what it still has to send): the drain times out and cancels it, and a
  // paused call, with no read to fail, takes its status itself.
  bridge_->request_stop();
  EXPECT_TRUE(stall_until([&] { return bridge_->finished(); }));
  const auto start = std::chrono::steady_clock::now();
  bridge_.reset();  // cancels what is still up and waits for every call to end
  EXPECT_LT(std::chrono::steady_clock::now() - start, gatehouse::testing::kPatience);
}

std::string contract_name(const ::testing::TestParamInfo<std::string>& param) {
  return param.param.empty() ? "Gonet2" : "Batched";
}

// duplicate-login = replace: a second login of the user makes the bridge
// tell the first session's worker it is replaced; the newcomer's game stream
// opens only once the old one has ended (the game never sees two streams of
// the user), and what the newcomer sent meanwhile reaches the game after, in
// order.
TEST_P(BridgeDutyCycle, ASecondLoginReplacesTheFirstAndItsStreamOpensAfterTheOldEnds) {
  const std::uint64_t second = shm::ConnectionId(3, 1).value();
  write(ipc::kStreamOpen, ipc::StreamOpen{kConn, kUser, 100, ipc::kReplaceOlder, 0});
  ASSERT_TRUE(run_until([&] { return game_.live_stream_count() == 1; }));
  write(ipc::kStreamOpen, ipc::StreamOpen{second, kUser, 200, ipc::kReplaceOlder, 0});
  const game::Bytes early = packet(game::demo::kPingReq, to_bytes("before my stream"));
  write(ipc::kStreamMessage, ipc::StreamMessage{second, kUser, 1}, early);
  ASSERT_TRUE(run_until_read(1));
  EXPECT_EQ(got_[0].type, ipc::kReplaced);
  EXPECT_EQ(got_[0].conn, kConn) << "the older session is the one told";
  for (int i = 0; i < 50; ++i) {  // the old session has not closed: no second stream
    bridge_->do_work();
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(game_.streams().size(), 1u);
  // The worker closes the replaced session: its stream ends, then the new one opens.
  write(ipc::kStreamClose, ipc::StreamClose{kConn, kUser});
  ASSERT_TRUE(
      run_until([&] { return game_.streams().size() == 2 && game_.frames(kUser).size() == 1; }));
  const auto streams = game_.streams();
  ASSERT_TRUE(streams[0].ended);
  EXPECT_LE(streams[0].ended_at, streams[1].opened_at) << "one stream of the user at a time";
  EXPECT_EQ(game_.frames(kUser), std::vector<game::Bytes>{early});
  EXPECT_TRUE(run_until_read(2)) << "the echo reaches the newcomer";
  EXPECT_EQ(got_.back().conn, second);
}

// duplicate-login = refuse: the worker waits for a verdict; a user with a
// live session is refused, and may log in again once it has gone.
TEST_P(BridgeDutyCycle, ALoginOfAUserLoggedInAlreadyIsRefusedUntilTheFirstHasGone) {
  const std::uint64_t second = shm::ConnectionId(3, 1).value();
  const std::uint64_t third = shm::ConnectionId(4, 1).value();
  write(ipc::kStreamOpen, ipc::StreamOpen{kConn, kUser, 100, ipc::kAwaitVerdict, 0});
  ASSERT_TRUE(run_until_read(1));
  EXPECT_EQ(got_[0].type, ipc::kLoginVerdict);
  write(ipc::kStreamOpen, ipc::StreamOpen{second, kUser, 200, ipc::kAwaitVerdict, 0});
  ASSERT_TRUE(run_until_read(2));
  EXPECT_EQ(got_[1].type, ipc::kLoginVerdict);
  EXPECT_EQ(got_[1].conn, second);
  ASSERT_TRUE(run_until([&] { return game_.streams().size() == 1; }));
  write(ipc::kStreamClose, ipc::StreamClose{second, kUser});  // the refused one leaves: no effect
  write(ipc::kStreamClose, ipc::StreamClose{kConn, kUser});
  write(ipc::kStreamOpen, ipc::StreamOpen{third, kUser, 300, ipc::kAwaitVerdict, 0});
  ASSERT_TRUE(run_until_read(3));
  EXPECT_EQ(accepted_, (std::vector<std::uint32_t>{1, 0, 1}));
  ASSERT_TRUE(run_until([&] { return game_.streams().size() == 2; }));
  const auto streams = game_.streams();
  EXPECT_LE(streams[0].ended_at, streams[1].opened_at);
}

INSTANTIATE_TEST_SUITE_P(EachContract, BridgeDutyCycle, ::testing::Values("", "batch:"),
                         contract_name);
INSTANTIATE_TEST_SUITE_P(EachContract, BridgeBackPressure, ::testing::Values("", "batch:"),
                         contract_name);

}  // namespace
}  // namespace gatehouse::bridge
