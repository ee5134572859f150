// LogLimit: one log site a client can make fire at will ("connection limit
// reached", a refused login) writes at most one line per interval; the lines
// in between are counted, and the next line that passes ends with
// "(N similar suppressed)". If the flood stops, flush_log_limits() (called from
// each process's loop) writes "<site> (N similar suppressed)" once the
// interval is over, so no count is lost.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <string>
#include <utility>

#include "gatehouse/base/clock.h"

namespace gatehouse {

class LogLimit {
 public:
  static constexpr std::int64_t kDefaultIntervalNs = 1'000'000'000;

  /// `site` names the lines in a flush ("connection refused: connection
  /// limit reached").
  LogLimit(spdlog::level::level_enum level, std::string site,
           std::int64_t interval_ns = kDefaultIntervalNs);
  ~LogLimit();
  LogLimit(const LogLimit&) = delete;
  LogLimit& operator=(const LogLimit&) = delete;

  /// Writes the line now if the site's interval allows, else counts it.
  template <typename... Args>
  void log(fmt::format_string<Args...> format, Args&&... args) {
    std::uint64_t suppressed = 0;
    if (!admit(monotonic_ns(), suppressed)) return;
    if (suppressed == 0) {
      spdlog::log(level_, format, std::forward<Args>(args)...);
    } else {
      spdlog::log(level_, "{} ({} similar suppressed)",
                  fmt::format(format, std::forward<Args>(args)...), suppressed);
    }
  }

  /// The clock-explicit core: whether a line may be written at `now_ns`;
  /// when it may, `suppressed` is how many were refused since the last.
  bool admit(std::int64_t now_ns, std::uint64_t& suppressed);
  /// The count of refused lines once the interval since the last written one
  /// is over (it is then reset, and counts as a line written); else 0.
  std::uint64_t take_overdue(std::int64_t now_ns);

  spdlog::level::level_enum level() const { return level_; }
  const std::string& site() const { return site_; }

 private:
  friend void flush_log_limits(std::int64_t now_ns);
  std::uint64_t take_overdue_locked(std::int64_t now_ns);

  const spdlog::level::level_enum level_;
  const std::string site_;
  const std::int64_t interval_ns_;
  bool written_ = false;  // a line was ever written: the interval runs from last_ns_
  std::int64_t last_ns_ = 0;
  std::uint64_t suppressed_ = 0;
};

/// Writes "<site> (N similar suppressed)" for every LogLimit of this process
/// whose count is overdue. Cheap when none is: one atomic load.
void flush_log_limits(std::int64_t now_ns);

}  // namespace gatehouse
