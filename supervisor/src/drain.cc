#include "gatehouse/supervisor/drain.h"

#include "gatehouse/contract/gateway_segment.h"

namespace gatehouse::supervisor {

bool Drain::start(std::int64_t now_ns, std::uint32_t wait_ms, std::uint32_t timeout_ms) {
  if (draining()) return false;
  close_ns_ = now_ns + std::int64_t{wait_ms} * 1'000'000;
  deadline_ns_ = close_ns_ + std::int64_t{timeout_ms} * 1'000'000;
  phase_ = wait_ms != 0 ? Phase::kWaiting : Phase::kClosing;
  return true;
}

Drain::Step Drain::advance(std::int64_t now_ns, bool frontend_running) {
  Step step;
  if (phase_ == Phase::kServing) return step;
  if (phase_ == Phase::kWaiting && now_ns >= close_ns_) {
    phase_ = Phase::kClosing;
    step.close_sessions = true;
  }
  if (!stopping_ && !frontend_running) {
    stopping_ = true;
    step.stop_rest = true;
  }
  if (!killed_ && now_ns > deadline_ns_) {
    killed_ = true;  // once; reaping finishes the job
    step.kill_rest = true;
  }
  return step;
}

std::uint32_t Drain::control_value() const {
  switch (phase_) {
    case Phase::kServing:
      return 0;
    case Phase::kWaiting:
      return kDrainNoNewConnections;
    case Phase::kClosing:
      return kDrainClosing;
  }
  return 0;
}

}  // namespace gatehouse::supervisor
