#include "gatehouse/supervisor/health.h"

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
  if (games.configured == 0) {
    reasons.emplace_back("no game service configured");
  } else if (games.reachable == 0) {
    reasons.emplace_back("no game service reachable");
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
