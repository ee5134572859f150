// Health: what the metrics endpoint's /healthz and /ready answer
// (docs/operations.md, "Health checks").
//
// The supervisor's loop knows what only it can (that it turns; which
// children run and have attached; whether the start is over and the
// listeners are open) and publishes it here on each pass; the endpoint's
// thread reads that with what the segment says (the drain, the game
// services the bridges see) and the process metrics take the pids from it.
//
//   /healthz  200 "ok" while the loop has turned within kLoopStallNs
//   /ready    200 "ready" when not_ready_reasons() is empty, else 503 naming
//             each reason: "not ready: draining; worker-1 down"
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "gatehouse/supervisor/child.h"

namespace gatehouse::supervisor {

/// A child as /ready and the process metrics see it.
struct ChildHealth {
  ChildId id;
  pid_t pid = 0;          ///< the running process; 0: none (crashed, waiting to restart)
  bool attached = false;  ///< it has attached to the segment (serving, not just forked)
  bool rolling = false;   ///< a reload is replacing it: down on purpose, for a moment
  /// CPU time of the slot's earlier processes (crashed, hung or rolled): its
  /// process_cpu_seconds_total goes on from there instead of going back.
  double exited_cpu_seconds = 0;
  friend bool operator==(const ChildHealth&, const ChildHealth&) = default;
};

/// What the supervisor's loop publishes.
struct HealthReport {
  bool started = false;    ///< start() is over: every child attached once
  bool listening = false;  ///< the client listeners are open
  std::vector<ChildHealth> children;
  friend bool operator==(const HealthReport&, const HealthReport&) = default;
};

/// What the game services look like to /ready: the --backend entries (or
/// the instances discovered) and, by bridge, how many of them take sessions
/// (not disabled by an operator) and that bridge sees reachable
/// (RoutingTable::up). Each bridge serves its own users: each needs one.
struct GameServices {
  std::uint32_t configured = 0;
  std::vector<std::uint32_t> reachable;  ///< by bridge
};

/// Why the gateway should not be sent players now ("starting", "draining",
/// "listeners closed", "worker-1 down", "frontend starting", "no game
/// service reachable", "bridge-1 reaches no game service", ...), in that
/// order; empty when it is ready.
std::vector<std::string> not_ready_reasons(const HealthReport& report, bool draining,
                                           GameServices games);

/// The report, shared between the supervisor's loop (writer) and the
/// endpoint's thread (reader).
class Health {
 public:
  /// The loop's longest pause that is still alive: it turns every 50 ms;
  /// what blocks it on purpose (a reload's layout check) takes milliseconds.
  static constexpr std::int64_t kLoopStallNs = 5'000'000'000;

  /// The loop turned (supervisor thread, each pass; CLOCK_MONOTONIC).
  void beat(std::int64_t now_ns) noexcept { beat_ns_.store(now_ns, std::memory_order_relaxed); }
  /// Whether the loop has turned within kLoopStallNs of `now_ns` (any thread).
  bool alive(std::int64_t now_ns) const noexcept {
    return now_ns - beat_ns_.load(std::memory_order_relaxed) < kLoopStallNs;
  }
  /// Nanoseconds since the loop last turned.
  std::int64_t stalled_ns(std::int64_t now_ns) const noexcept {
    return now_ns - beat_ns_.load(std::memory_order_relaxed);
  }

  /// Supervisor thread: makes `report` the current one if it changed.
  void publish(const HealthReport& report);
  /// Any thread: a copy of the current report.
  HealthReport report() const;

 private:
  std::atomic<std::int64_t> beat_ns_{0};
  mutable std::mutex mutex_;
  HealthReport report_;  // guarded by mutex_
};

}  // namespace gatehouse::supervisor
