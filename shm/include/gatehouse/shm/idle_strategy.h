// BackoffIdler: what a duty-cycle loop does when a pass found no work.
// Spin for a bounded time (cheapest wakeup, burns the core), then yield a few
// times, then park on the process's Doorbell. Parking is what keeps an idle
// gateway at 0% CPU; waking a parked process costs tens of microseconds on a
// VM, so spinning pays only where every spinner has a core of its own. On a
// machine with fewer cores than busy processes it is the other way round: a
// spinner takes the core from the process that has the work (measured in
// docs/benchmarks.md), which is why the budget is a setting and not a
// constant.
//
//   while (running) idler.idle(do_work(), [&](auto timeout) { park(timeout); });
#pragma once

#include <sched.h>
#include <time.h>

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
    std::chrono::nanoseconds spin{0};  ///< how long to spin after the last work
    std::uint32_t yields = 0;          ///< sched_yield passes after spinning
    std::chrono::nanoseconds park_timeout = std::chrono::milliseconds(100);
  };

  BackoffIdler() = default;
  explicit BackoffIdler(Config config) : config_(config) {}
  /// The duty-cycle idler of a process that polls rings: spin for `spin`,
  /// then, if it spun at all, two yields (a cheap chance for a peer on this
  /// core to produce before paying for a park and a wakeup), then park for
  /// at most 100 ms at a time.
  static BackoffIdler duty_cycle(std::chrono::microseconds spin) noexcept {
    return BackoffIdler({.spin = spin,
                         .yields = spin.count() != 0 ? 2u : 0u,
                         .park_timeout = std::chrono::milliseconds(100)});
  }

  /// `park(timeout)` is called once the spin and yield budgets are spent; it
  /// should raise the parked flags, re-check, and sleep on the Doorbell.
  template <class Park>
  void idle(std::size_t work_count, Park&& park) {
    if (work_count != 0) {
      reset();
      return;
    }
    if (phase_ == Phase::kStart) {
      phase_ = Phase::kSpin;
      spin_until_ = config_.spin.count() == 0 ? 0 : now_ns() + config_.spin.count();
    }
    if (phase_ == Phase::kSpin) {
      // The clock is read once per 32 passes: a vDSO call costs ~30 ns.
      if (spin_until_ != 0 && (++passes_ % 32 != 0 || now_ns() < spin_until_)) {
        cpu_relax();
        return;
      }
      phase_ = Phase::kYield;
    }
    if (yields_ < config_.yields) {
      ++yields_;
      ::sched_yield();
      return;
    }
    park(config_.park_timeout);
    reset();
  }

  void reset() noexcept {
    phase_ = Phase::kStart;
    passes_ = 0;
    yields_ = 0;
  }

 private:
  static std::int64_t now_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }

  enum class Phase : std::uint8_t { kStart, kSpin, kYield };

  Config config_{};
  Phase phase_ = Phase::kStart;
  std::uint32_t passes_ = 0;
  std::uint32_t yields_ = 0;
  std::int64_t spin_until_ = 0;
};

}  // namespace gatehouse::shm
