// WorkerRings, the one path game events take into the worker rings: straight
// into the ring while it has room, behind the backlog (in order) when it is
// full, the backlog written by the main thread as room frees, and whoever
// answers for a waiting event told when it waits and when it is written.
// Back-pressure: a backlog over game-backlog-bytes pauses the calls that
// feed it (hold_reads), and flush_backlogs() resumes them at half of it.
// The threaded tests deliver from another thread, as the gRPC thread does,
// while the main thread flushes and a worker reads (TSan runs them: label
// tsan).
#include "gatehouse/bridge/worker_link.h"

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/base/log.h"
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

/// A game call as the back-pressure sees it: resume() counted.
class FakeCall final : public PausedReads {
 public:
  void resume() override { resumed_.fetch_add(1); }
  int resumed() const { return resumed_.load(); }

 private:
  std::atomic<int> resumed_{0};
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

  static constexpr std::uint32_t kBound = 16 << 10;

  static Settings settings() {
    Settings s = test_settings(kWorkers);
    s.game_backlog_bytes = kBound;  // a quarter of the 64 KiB ring
    return s;
  }

  WorkerRingsTest()
      : settings_(settings()),
        segment_(make_segment(settings_)),
        doorbell_(shm::Doorbell::create()),
        wakeup_(doorbell_),
        rings_(workers_, settings_, wakeup_) {
    for (std::uint32_t w = 0; w < kWorkers; ++w) {
      workers_.push_back(std::make_unique<WorkerLink>(segment_, w, 0, shm::Doorbell::create(),
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

TEST_F(WorkerRingsTest, ABacklogOverItsBoundPausesTheCallsThatFeedItUntilHalfIsWritten) {
  auto stream0 = std::make_shared<FakeCall>();  // a gonet2 stream of a worker 0 session
  auto stream1 = std::make_shared<FakeCall>();  // ... of a worker 1 session
  auto link = std::make_shared<FakeCall>();     // a batched link: every worker
  auto gone = std::make_shared<FakeCall>();     // a call that ends while paused
  EXPECT_FALSE(rings_.hold_reads(conn_of(0), stream0)) << "nothing waits yet";

  const std::string big(1000, 'x');
  std::size_t sent = 0;
  while (source_->held_count() == 0) message(conn_of(0), big + std::to_string(sent++));
  rings_.flush_backlogs();
  EXPECT_LE(rings_.backlog_bytes(), kBound);
  EXPECT_FALSE(rings_.hold_reads(conn_of(0), stream0)) << "a backlog under its bound";
  while (rings_.flush_backlogs(), rings_.backlog_bytes() <= kBound) {
    message(conn_of(0), big + std::to_string(sent++));
  }
  const std::size_t waiting = rings_.backlog_events();
  EXPECT_GT(waiting, 0u);

  EXPECT_TRUE(rings_.hold_reads(conn_of(0), stream0));
  EXPECT_FALSE(rings_.hold_reads(conn_of(1), stream1)) << "worker 1 is not backed up";
  EXPECT_TRUE(rings_.hold_reads(UpstreamEvents::kEveryWorker, link));
  EXPECT_TRUE(rings_.hold_reads(conn_of(0, 1), gone));
  gone.reset();
  EXPECT_EQ(rings_.take_pauses(), 3u);

  // The worker does not read: nothing moves, nobody resumes.
  rings_.flush_backlogs();
  EXPECT_EQ(rings_.paused_calls(), 2u) << "the ended call is forgotten";
  EXPECT_EQ(stream0->resumed() + link->resumed(), 0);

  // The worker reads one ring's worth: the backlog moves into the ring,
  // and once at most half the bound waits, the calls read again.
  std::vector<Got> got;
  for (int i = 0; i < 100 && stream0->resumed() == 0; ++i) {
    for (auto& g : read(0)) got.push_back(std::move(g));
    rings_.flush_backlogs();
  }
  ASSERT_EQ(stream0->resumed(), 1);
  EXPECT_LE(rings_.backlog_bytes(), kBound / 2);
  EXPECT_EQ(link->resumed(), 1);
  EXPECT_EQ(stream1->resumed(), 0) << "it never paused";
  EXPECT_EQ(rings_.paused_calls(), 0u);
  rings_.flush_backlogs();
  EXPECT_EQ(stream0->resumed(), 1) << "resumed once";

  // Nothing was dropped: every message, in order.
  for (int i = 0; i < 100 && got.size() < sent; ++i) {
    for (auto& g : read(0)) got.push_back(std::move(g));
    rings_.flush_backlogs();
  }
  ASSERT_EQ(got.size(), sent);
  for (std::size_t i = 0; i < sent; ++i) ASSERT_EQ(got[i].bytes, big + std::to_string(i));
  EXPECT_EQ(rings_.backlog_bytes(), 0u);
  EXPECT_EQ(rings_.backlog_events(), 0u);
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

// A producer that honours hold_reads() as a call does (it reads nothing
// while paused, until resumed by the main thread's flush): the backlog never
// grows past the bound by more than one message, and nothing is lost.
TEST_F(WorkerRingsTest, APausedProducerKeepsTheBacklogWithinItsBound) {
  constexpr int kMessages = 4000;
  const std::uint64_t conn = conn_of(0, 1);
  const std::string pad(500, 'p');
  class Producer final : public PausedReads {
   public:
    void resume() override {
      paused.store(false);
      resumed.fetch_add(1);
    }
    std::atomic<bool> paused{false};
    std::atomic<bool> held{false};  // hold_reads() paused it once
    std::atomic<int> resumed{0};
  };
  auto call = std::make_shared<Producer>();
  std::atomic<bool> done{false};
  // spdlog's registry is a function-local static of the (uninstrumented)
  // library: made here, before the thread, TSan sees it made before both use it.
  spdlog::default_logger_raw();
  std::thread grpc([&] {
    for (int i = 0; i < kMessages; ++i) {
      while (call->paused.load()) std::this_thread::yield();
      std::string bytes = std::to_string(i) + pad;
      UpstreamEvents::Unpublished unpublished;
      rings_.message(unpublished, conn, 0, bytes, *source_);
      rings_.publish(unpublished);
      // As QueuedCall does before its next read.
      call->paused.store(true);
      if (rings_.hold_reads(conn, call)) {
        call->held.store(true);
      } else {
        call->paused.store(false);
      }
    }
    done.store(true);
  });
  int next = 0;
  std::size_t most = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  // The worker reads slowly (a ring's worth every few passes), and not at
  // all before the backlog first reached its bound, however slowly the
  // producer runs on a busy machine: the backlog fills up to its bound,
  // again and again.
  for (int pass = 0; next < kMessages && std::chrono::steady_clock::now() < deadline; ++pass) {
    rings_.flush_backlogs();
    most = std::max(most, rings_.backlog_bytes());
    if (pass % 8 != 0 || !call->held.load()) {
      std::this_thread::yield();
      continue;
    }
    for (const Got& g : read(0)) EXPECT_EQ(std::stoi(g.bytes), next++);
  }
  grpc.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(next, kMessages) << "every message, in order";
  EXPECT_GT(call->resumed.load(), 0) << "the backlog went over its bound and drained";
  EXPECT_LE(most, kBound + 1024) << "the bound, plus the one message read before the pause";
}

}  // namespace
}  // namespace gatehouse::bridge
