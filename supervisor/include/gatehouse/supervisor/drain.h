// Drain: SIGTERM's shutdown as a small state machine that the supervisor's
// loop drives with the time and one observation (is the frontend still
// running?), and that answers with what to do (docs/architecture.md, "Drain"):
//
//   start(now) ──► waiting  (drain-wait > 0: no new connections, sessions go on)
//      │              │ now >= start + drain-wait       => close_sessions
//      └─(wait 0)─► closing  (every session closed with reason shutdown)
//   in any phase: the frontend has gone (no connection left) => stop_rest, once
//   now > start + drain-wait + drain-timeout                 => kill_rest, once
//
// Until stop_rest a worker or the bridge that dies is replaced as at any
// other time (it still carries sessions); the frontend is not (its listeners
// have left the port).
#pragma once

#include <cstdint>

#include "gatehouse/supervisor/child.h"

namespace gatehouse::supervisor {

class Drain {
 public:
  enum class Phase { kServing, kWaiting, kClosing };

  /// What the supervisor does after advance().
  struct Step {
    bool close_sessions = false;  ///< drain-wait is over: control.draining = kDrainClosing
    bool stop_rest = false;       ///< the frontend has gone: SIGTERM the others
    bool kill_rest = false;       ///< the deadline has passed: SIGKILL whatever is left
  };

  /// Begins the drain; false (nothing changes) when one is running already.
  bool start(std::int64_t now_ns, std::uint32_t wait_ms, std::uint32_t timeout_ms);

  /// One pass of the loop.
  Step advance(std::int64_t now_ns, bool frontend_running);

  bool draining() const { return phase_ != Phase::kServing; }
  Phase phase() const { return phase_; }
  /// The value of ControlBlock::draining: 0, kDrainNoNewConnections or kDrainClosing.
  std::uint32_t control_value() const;
  /// The frontend has gone and the others have been told to stop.
  bool stopping() const { return stopping_; }
  /// Whether children are still watched: hangs killed, crashes replaced.
  bool supervising() const { return !stopping_; }
  /// Whether a child of `role` that has died is replaced now.
  bool replaces(Role role) const { return !draining() || (!stopping_ && role != Role::kFrontend); }
  std::int64_t close_ns() const { return close_ns_; }
  std::int64_t deadline_ns() const { return deadline_ns_; }

 private:
  Phase phase_ = Phase::kServing;
  bool stopping_ = false;
  bool killed_ = false;
  std::int64_t close_ns_ = 0;     ///< when the sessions left are closed
  std::int64_t deadline_ns_ = 0;  ///< past it, whatever is left is killed
};

}  // namespace gatehouse::supervisor
