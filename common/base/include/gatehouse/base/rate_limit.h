// A token bucket kept as one number: the generic cell rate algorithm (GCRA).
// The state is the "theoretical arrival time" of the next unit, so a bucket
// fits in a plain struct in shared memory (a Session's frames and bytes per
// minute) and costs a compare and an add per admission.
//
//   RateLimit limit = RateLimit::per_minute(200, 200);   // 200/min, 200 at once
//   if (!limit.admit(tat_ns, now_ns)) kick(...);
//
// A bucket that is full (tat_ns <= now) admits `burst` units at once; then
// one unit every 60 s / per_minute. Units are frames, bytes or anything.
// per_period() takes any period: "10 failed logins a minute" and "one a
// second" alike (a period of 6 s and 1 unit is one unit every 6 s).
#pragma once

#include <algorithm>
#include <cstdint>

namespace gatehouse {

class RateLimit {
 public:
  /// `per_minute` units a minute, at most `burst` at once (0: per_minute).
  /// per_minute 0: no limit, every admission succeeds.
  static constexpr RateLimit per_minute(std::uint64_t per_minute, std::uint64_t burst) noexcept {
    return per_period(per_minute, kMinuteNs, burst);
  }
  /// `units` every `period_ns`, at most `burst` at once (0: units). units 0:
  /// no limit.
  static constexpr RateLimit per_period(std::uint64_t units, std::int64_t period_ns,
                                        std::uint64_t burst) noexcept {
    return RateLimit{units, period_ns, burst == 0 ? units : burst};
  }

  constexpr bool unlimited() const noexcept { return per_period_ == 0; }

  /// Admits `units` at `now_ns` (any monotonic or wall clock in ns, the
  /// same for every call on `tat_ns`) and advances `tat_ns`; false, leaving
  /// it unchanged, when the bucket does not hold them.
  constexpr bool admit(std::int64_t& tat_ns, std::int64_t now_ns,
                       std::uint64_t units = 1) const noexcept {
    if (unlimited()) return true;
    const std::int64_t start = std::max(tat_ns, now_ns);
    const std::int64_t next = start + cost_ns(units);
    if (next - now_ns > cost_ns(burst_)) return false;
    tat_ns = next;
    return true;
  }
  /// How long from `now_ns` until admit() of `units` would succeed (0: now).
  constexpr std::int64_t wait_ns(std::int64_t tat_ns, std::int64_t now_ns,
                                 std::uint64_t units = 1) const noexcept {
    if (unlimited()) return 0;
    const std::int64_t over = std::max(tat_ns, now_ns) + cost_ns(units) - now_ns - cost_ns(burst_);
    return std::max<std::int64_t>(over, 0);
  }

 private:
  static constexpr std::int64_t kMinuteNs = 60'000'000'000;

  __extension__ typedef unsigned __int128
      Wide;  // NOLINT(modernize-use-using): __extension__ needs typedef
  static constexpr std::int64_t kMostNs = INT64_MAX / 4;  // far beyond any clock we add it to

  constexpr RateLimit(std::uint64_t per_period, std::int64_t period_ns, std::uint64_t burst)
      : per_period_(per_period), period_ns_(period_ns), burst_(burst) {}

  /// What `units` cost, exact: units * period / per_period (128-bit: a
  /// minute in ns times a few MiB overflows 64 bits).
  constexpr std::int64_t cost_ns(std::uint64_t units) const noexcept {
    const Wide ns = Wide{units} * static_cast<Wide>(period_ns_) / per_period_;
    return ns > Wide{kMostNs} ? kMostNs : static_cast<std::int64_t>(ns);
  }

  std::uint64_t per_period_;
  std::int64_t period_ns_;
  std::uint64_t burst_;
};

}  // namespace gatehouse
