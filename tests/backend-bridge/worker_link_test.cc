// WorkerRings, the one path game events take into the worker rings: straight
// into the ring while it has room, behind the backlog (in order) when it is
// full, the backlog written by the main thread as room frees, and whoever
// answers for a waiting event told when it waits and when it is written.
// The last test delivers from another thread, as the gRPC thread does, while
// the main thread flushes and a worker reads (TSan runs it: label tsan).
#include "gatehouse/bridge/worker_link.h"

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/contract/records.h"
#include "test_segment.h"

namespace gatehouse::bridge {
namespace {

using testing::make_segment;
using testing::test_settings;

/// Counts what waits, as a gonet2 stream does (in-flight).
class CountingSource final : public ReplySource,
                             public std::enable_shared_from_this<CountingSource> {
 public:
  void held() override { held_.fetch_add(1); }
  void released() override { released_.fetch_add(1); }
  std::shared_ptr<ReplySource> keep() override { return shared_from_this(); }
  std::uint64_t held_count() const { return held_.load(); }
  std::uint64_t released_count() const { return released_.load(); }

 private:
  std::atomic<std::uint64_t> held_{0};
  std::atomic<std::uint64_t> released_{0};
};

/// What a worker reads from its ring from the bridge.
struct Got {
  std::uint32_t type;
  std::uint64_t conn;
  std::string bytes;  // kGameMessage
  std::int32_t code = 0;
};

class WorkerRingsTest : public ::testing::Test {
 protected:
  static constexpr std::uint32_t kWorkers = 2;

  WorkerRingsTest()
      : settings_(test_settings(kWorkers)),
        segment_(make_segment(settings_)),
        doorbell_(shm::Doorbell::create()),
        wakeup_(doorbell_),
        rings_(workers_, settings_, wakeup_) {
    for (std::uint32_t w = 0; w < kWorkers; ++w) {
      workers_.push_back(std::make_unique<WorkerLink>(segment_, w, shm::Doorbell::create(),
                                                      1'000'000'000, settings_));
      readers_.emplace_back(segment_.ring(RingKind::kBridgeToWorker, w));
    }
  }

  /// A session id of worker `w` (8 slots each).
  static std::uint64_t conn_of(std::uint32_t w, std::uint32_t n = 0) {
    return shm::ConnectionId(1, w * 8 + n).value();
  }

  std::vector<Got> read(std::uint32_t w) {
    std::vector<Got> got;
    readers_[w].read(
        [&](const shm::Record& r) {
          Got g{r.type, 0, {}, 0};
          if (r.type == ipc::kGameMessage) {
            const auto m = ipc::parse_record<ipc::GameMessage>(r.payload);
            g.conn = m->header.conn;
            g.bytes.assign(reinterpret_cast<const char*>(m->tail.data()), m->tail.size());
          } else if (r.type == ipc::kStreamEnded) {
            const auto e = ipc::parse_record<ipc::StreamEnded>(r.payload);
            g.conn = e->header.conn;
            g.code = e->header.grpc_code;
          } else if (r.type == ipc::kGameKick) {
            g.conn = ipc::parse_record<ipc::GameKick>(r.payload)->header.conn;
          }
          got.push_back(std::move(g));
        },
        1 << 20);
    return got;
  }

  void message(std::uint64_t conn, std::string bytes) {
    UpstreamEvents::Unpublished unpublished;
    rings_.message(unpublished, conn, 0, bytes, *source_);
    rings_.publish(unpublished);
  }

  const Settings settings_;
  GatewaySegment segment_;
  shm::Doorbell doorbell_;
  Wakeup wakeup_;
  std::vector<std::unique_ptr<WorkerLink>> workers_;
  WorkerRings rings_;
  std::vector<shm::RingConsumer> readers_;
  std::shared_ptr<CountingSource> source_ = std::make_shared<CountingSource>();
};

TEST_F(WorkerRingsTest, EventsGoStraightIntoTheirSessionsWorkerRing) {
  message(conn_of(1), "to worker 1");
  UpstreamEvents::Unpublished unpublished;
  rings_.kick(unpublished, conn_of(0), *source_);
  EXPECT_TRUE(read(0).empty()) << "not published yet";
  rings_.publish(unpublished);
  const auto zero = read(0);
  ASSERT_EQ(zero.size(), 1u);
  EXPECT_EQ(zero[0].type, ipc::kGameKick);
  const auto one = read(1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].bytes, "to worker 1");
  EXPECT_EQ(source_->held_count(), 0u);
  EXPECT_EQ(rings_.take_messages_received(), 1u);
}

TEST_F(WorkerRingsTest, AFullRingKeepsTheRestInOrderAndTheEndBehindIt) {
  const std::string big(1000, 'x');
  std::size_t sent = 0;
  while (source_->held_count() == 0) message(conn_of(0), big + std::to_string(sent++));
  message(conn_of(0), "last");
  UpstreamEvents::Unpublished unpublished;
  rings_.ended(unpublished, conn_of(0), 14);
  rings_.publish(unpublished);
  EXPECT_EQ(source_->held_count(), 2u) << "the one that did not fit, and the one behind it";

  std::vector<Got> got;
  for (int i = 0; i < 100 && (got.empty() || got.back().type != ipc::kStreamEnded); ++i) {
    for (auto& g : read(0)) got.push_back(std::move(g));
    rings_.flush_backlogs();
  }
  ASSERT_EQ(got.size(), sent + 2);
  for (std::size_t i = 0; i < sent; ++i) ASSERT_EQ(got[i].bytes, big + std::to_string(i));
  EXPECT_EQ(got[sent].bytes, "last");
  EXPECT_EQ(got[sent + 1].type, ipc::kStreamEnded);
  EXPECT_EQ(got[sent + 1].code, 14);
  EXPECT_EQ(source_->released_count(), 2u);
  EXPECT_TRUE(read(1).empty()) << "the other worker's ring was not touched";
}

TEST_F(WorkerRingsTest, EventsForSessionsNoWorkerOwnsAreDroppedAndCounted) {
  message(shm::ConnectionId(1, 100).value(), "nobody");
  EXPECT_EQ(rings_.take_dropped(), 1u);
  EXPECT_TRUE(read(0).empty());
  EXPECT_TRUE(read(1).empty());
}

TEST_F(WorkerRingsTest, DeliveriesFromAnotherThreadKeepEachSessionsOrderThroughTheBacklog) {
  constexpr int kPerSession = 3000;
  const std::vector<std::uint64_t> sessions = {conn_of(0, 1), conn_of(0, 2), conn_of(1, 3)};
  std::atomic<bool> produced{false};
  std::thread grpc([&] {
    const std::string pad(300, 'p');
    for (int i = 0; i < kPerSession; ++i) {
      UpstreamEvents::Unpublished unpublished;  // one "gRPC message" per round
      for (const std::uint64_t conn : sessions) {
        std::string bytes = std::to_string(i) + pad;
        rings_.message(unpublished, conn, 0, bytes, *source_);
      }
      rings_.publish(unpublished);
    }
    produced.store(true);
  });
  // The reader starts once the rings are full, whatever the scheduler does,
  // so the backlog is always exercised.
  while (source_->held_count() == 0 && !produced.load()) std::this_thread::yield();
  std::map<std::uint64_t, int> next;
  std::size_t total = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (total < sessions.size() * kPerSession && std::chrono::steady_clock::now() < deadline) {
    rings_.flush_backlogs();  // the main thread's part
    for (std::uint32_t w = 0; w < kWorkers; ++w) {
      for (const Got& g : read(w)) {
        EXPECT_EQ(std::stoi(g.bytes), next[g.conn]++) << "session " << g.conn;
        ++total;
      }
    }
  }
  grpc.join();
  EXPECT_EQ(total, sessions.size() * kPerSession);
  EXPECT_GT(source_->held_count(), 0u) << "the rings filled up: the backlog was used";
  EXPECT_EQ(source_->held_count(), source_->released_count());
}

}  // namespace
}  // namespace gatehouse::bridge
