// RecordingEvents: an UpstreamEvents that records what an upstream reports
// (in one sequence, so that order across kinds shows), for the unit tests of
// the upstreams. Thread-safe: the gRPC thread reports, the test waits.
//
// With hold_replies(true) it plays a worker ring that is full: every message
// and kick waits (ReplySource::held) until release_held() "writes" them
// (ReplySource::released), as WorkerRings' backlog does.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/bridge/upstream.h"
#include "gatehouse/game/game_server.h"

namespace gatehouse::bridge::testing {

struct Recorded {
  enum Kind { kMessage, kKick, kEnded } kind;
  std::uint64_t conn;
  std::string bytes;           ///< kMessage
  std::uint64_t seq = 0;       ///< kMessage
  std::int32_t grpc_code = 0;  ///< kEnded
};

class RecordingEvents final : public UpstreamEvents {
 public:
  void message(Unpublished&, std::uint64_t conn, std::uint64_t seq, std::string& bytes,
               ReplySource& from) override {
    add({Recorded::kMessage, conn, bytes, seq, 0}, from);
  }
  void kick(Unpublished&, std::uint64_t conn, ReplySource& from) override {
    add({Recorded::kKick, conn, {}, 0, 0}, from);
  }
  void ended(Unpublished&, std::uint64_t conn, std::int32_t grpc_code) override {
    std::lock_guard lock(mutex_);
    events_.push_back({Recorded::kEnded, conn, {}, 0, grpc_code});
    changed_.notify_all();
  }
  void publish(const Unpublished&) override {}
  /// Never backed up: back-pressure is bridge_test's and worker_link_test's.
  bool hold_reads(std::uint64_t, const std::weak_ptr<PausedReads>&) override { return false; }

  void hold_replies(bool on) {
    std::lock_guard lock(mutex_);
    hold_ = on;
  }
  /// "Writes" every held reply (main thread in the bridge: the test's).
  std::size_t release_held() {
    std::vector<std::shared_ptr<ReplySource>> held;
    {
      std::lock_guard lock(mutex_);
      held.swap(held_);
    }
    for (const auto& source : held) source->released();
    return held.size();
  }

  std::vector<Recorded> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  /// Waits until at least `n` events are recorded; false on timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
  }

 private:
  void add(Recorded event, ReplySource& from) {
    std::lock_guard lock(mutex_);
    if (hold_) {
      from.held();
      held_.push_back(from.keep());
    }
    events_.push_back(std::move(event));
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Recorded> events_;
  bool hold_ = false;
  std::vector<std::shared_ptr<ReplySource>> held_;
};

/// Remembers what an upstream asked to keep (a worker ring's part).
class RecordingKeeper final : public RecordKeeper {
 public:
  struct Kept {
    std::uint64_t position;
    std::shared_ptr<Acknowledger> link;
    std::uint64_t index;
  };
  void keep(std::uint64_t position, const std::shared_ptr<Acknowledger>& link,
            std::uint64_t index) override {
    kept.push_back({position, link, index});
  }
  std::vector<Kept> kept;  // main thread only
};

/// How long the upstream tests wait for what a game service answers.
inline constexpr std::chrono::seconds kWait{5};

/// A game message's bytes as text, and as the span an upstream sends.
inline std::string text(const game::Bytes& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}
inline std::span<const std::byte> span_of(const game::Bytes& bytes) {
  return bytes;
}

}  // namespace gatehouse::bridge::testing
