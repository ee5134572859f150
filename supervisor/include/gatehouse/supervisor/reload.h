// Reload: SIGHUP's configuration reload and rolling worker replacement.
//
// 1. Decide (decide_reload): the worker binary on disk must answer
//    `gatehouse-worker --check-layout SEGMENT` with success (it speaks this
//    segment's layout), and the configuration read again must parse;
//    otherwise the reload is refused and everything stays as it runs. The
//    plan (plan_reload()) says what applies live and what needs a restart.
// 2. Apply: the supervisor publishes the planned settings in the control
//    block (the frontend takes them at once).
// 3. Roll (class Reload): each worker in turn is stopped (SIGTERM: it
//    finishes its batch), replaced at once from the binary on disk when it
//    has exited, and the roll moves on when the replacement has attached;
//    one that does not stop within kStopTimeoutNs is killed (its journal
//    rolls its last batch back or forward).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "gatehouse/supervisor/config.h"
#include "gatehouse/supervisor/processes.h"

namespace gatehouse::supervisor {

/// A child's or a parse's message as one log line's text.
std::string without_trailing_newlines(std::string text);

/// Whether a reload goes ahead: the plan, or why not (a log line).
struct ReloadDecision {
  std::optional<ReloadPlan> plan;
  std::string refused;
};

/// `layout`: what `gatehouse-worker --check-layout` said; `reread`: the
/// command line parsed again (with its config file).
ReloadDecision decide_reload(const RunResult& layout, const Config& running,
                             const ParseResult& reread);

class Reload {
 public:
  static constexpr std::int64_t kStopTimeoutNs = 5'000'000'000;

  /// What the roll sees of a worker.
  struct Worker {
    pid_t pid = 0;                ///< 0: not running
    std::int64_t started_ns = 0;  ///< when the running process was started
    bool attached = false;        ///< it has attached to the segment
  };
  enum class Action {
    kWait,  ///< nothing to do this pass
    kStop,  ///< SIGTERM `worker`
    kKill,  ///< SIGKILL `worker`: it did not stop in time
    kDone,  ///< every worker has been replaced
  };
  struct Step {
    Action action;
    std::uint32_t worker;
  };

  /// Rolls the workers started before `started_ns`.
  explicit Reload(std::int64_t started_ns) : started_ns_(started_ns) {}

  /// One pass of the loop; `workers` by index.
  Step advance(std::int64_t now_ns, std::span<const Worker> workers);

  /// Worker `index` has exited. True when this reload stopped it: replace it
  /// at once (a restart with cause "reload").
  bool exited(std::uint32_t index);

  std::uint32_t current() const { return current_; }
  bool stopping() const { return stopping_; }

 private:
  const std::int64_t started_ns_;
  std::uint32_t current_ = 0;  ///< the worker being replaced
  bool stopping_ = false;      ///< it has been told to stop and has not exited yet
  std::int64_t deadline_ns_ = 0;
};

}  // namespace gatehouse::supervisor
