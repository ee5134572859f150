// BackoffIdler: what a duty-cycle loop does when a pass found no work.
// Spin (cheapest wakeup, burns the core), then yield, then park on the
// process's Doorbell. Waking a parked process on the other core costs tens of
// microseconds on a VM, so the spin phase is what keeps ping-pong latency
// low; parking is what keeps an idle gateway at 0% CPU.
//
//   while (running) idler.idle(do_work(), [&](auto timeout) { park(timeout); });
#pragma once

#include <sched.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace gatehouse::shm {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class BackoffIdler {
 public:
  struct Config {
    std::uint32_t spins = 2000;  ///< pause-loop passes (~tens of us in all)
    std::uint32_t yields = 20;   ///< sched_yield passes
    std::chrono::nanoseconds park_timeout = std::chrono::milliseconds(100);
  };

  BackoffIdler() = default;
  explicit BackoffIdler(Config config) : config_(config) {}

  /// `park(timeout)` is called once the spin and yield budgets are spent; it
  /// should raise the parked flags, re-check, and sleep on the Doorbell.
  template <class Park>
  void idle(std::size_t work_count, Park&& park) {
    if (work_count != 0) {
      passes_ = 0;
      return;
    }
    if (passes_ < config_.spins) {
      cpu_relax();
    } else if (passes_ < config_.spins + config_.yields) {
      ::sched_yield();
    } else {
      park(config_.park_timeout);
      passes_ = 0;
      return;
    }
    ++passes_;
  }

  void reset() noexcept { passes_ = 0; }

 private:
  Config config_{};
  std::uint32_t passes_ = 0;
};

}  // namespace gatehouse::shm
