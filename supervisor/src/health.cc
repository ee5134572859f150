#include "gatehouse/supervisor/health.h"

#include <algorithm>

namespace gatehouse::supervisor {

std::vector<std::string> not_ready_reasons(const HealthReport& report, bool draining,
                                           GameServices games) {
  std::vector<std::string> reasons;
  // A drain first: it is why everything else goes down next.
  if (draining) reasons.emplace_back("draining");
  if (!report.started) reasons.emplace_back("starting");
  if (report.started && !report.listening && !draining) reasons.emplace_back("listeners closed");
  for (const ChildHealth& c : report.children) {
    if (c.rolling || (c.pid != 0 && c.attached)) continue;
    // Before the start is over every child is "starting": say it once.
    if (!report.started) continue;
    reasons.push_back(c.id.name() + (c.pid == 0 ? " down" : " starting"));
  }
  const auto blind = [](std::uint32_t reachable) { return reachable == 0; };
  if (games.configured == 0) {
    reasons.emplace_back("no game service configured");
  } else if (std::all_of(games.reachable.begin(), games.reachable.end(), blind)) {
    reasons.emplace_back("no game service reachable");
  } else {
    // Some bridges reach one: the users of the others cannot play.
    for (std::uint32_t b = 0; b < games.reachable.size(); ++b) {
      if (blind(games.reachable[b])) {
        reasons.push_back(ChildId{Role::kBridge, b}.name() + " reaches no game service");
      }
    }
  }
  return reasons;
}

void Health::publish(const HealthReport& report) {
  std::lock_guard lock(mutex_);
  if (report_ != report) report_ = report;
}

HealthReport Health::report() const {
  std::lock_guard lock(mutex_);
  return report_;
}

}  // namespace gatehouse::supervisor
