#include "gatehouse/supervisor/reload.h"

#include <climits>

namespace gatehouse::supervisor {

std::string without_trailing_newlines(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

ReloadDecision decide_reload(const RunResult& layout, const Config& running,
                             const ParseResult& reread) {
  ReloadDecision decision;
  if (layout.exit_code != 0) {
    decision.refused =
        "reload refused, the running workers stay: " + without_trailing_newlines(layout.output);
    return decision;
  }
  if (!reread.config) {
    decision.refused =
        "reload refused, the configuration does not parse (settings and workers stay as they "
        "run): " +
        without_trailing_newlines(reread.message);
    return decision;
  }
  if (const std::string listener = any_login_public_listener(*reread.config);
      !listener.empty() && !reread.config->login_any_allow_public) {
    decision.refused = "reload refused: login = any on listener " + listener +
                       ", which is not loopback (login-any-allow-public is false)";
    return decision;
  }
  decision.plan = plan_reload(running, *reread.config);
  return decision;
}

Reload::Step Reload::advance(std::int64_t now_ns, std::span<const Worker> workers) {
  while (current_ < workers.size()) {
    const Worker& w = workers[current_];
    if (stopping_) {  // the old one is on its way out
      if (now_ns > deadline_ns_ && w.pid != 0) {
        deadline_ns_ = INT64_MAX;  // kill once
        return {Action::kKill, current_};
      }
      return {Action::kWait, current_};
    }
    if (w.pid != 0 && w.attached && w.started_ns > started_ns_) {
      ++current_;  // its replacement is up: the next one
      continue;
    }
    if (w.pid != 0 && w.started_ns <= started_ns_) {  // the old one: stop it
      stopping_ = true;
      deadline_ns_ = now_ns + kStopTimeoutNs;
      return {Action::kStop, current_};
    }
    return {Action::kWait, current_};  // not running (a crash being restarted), or starting
  }
  return {Action::kDone, current_};
}

bool Reload::exited(std::uint32_t index) {
  if (!stopping_ || index != current_) return false;
  stopping_ = false;
  return true;
}

}  // namespace gatehouse::supervisor
