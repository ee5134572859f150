// LogBudget: at most one line a second for a warning that a client or a game
// service can trigger at will, so that a flood of them cannot flood the log;
// the lines held back are counted in the next one logged.
#pragma once

#include <cstdint>
#include <utility>

namespace gatehouse {

class LogBudget {
 public:
  /// Whether to log now (`now_ms`: any millisecond clock); `suppressed` gets
  /// how many lines were held back since the last one logged.
  bool allow(std::int64_t now_ms, std::uint64_t& suppressed) noexcept {
    if (now_ms < next_ms_) {
      ++held_;
      return false;
    }
    next_ms_ = now_ms + 1000;
    suppressed = std::exchange(held_, 0);
    return true;
  }

 private:
  std::int64_t next_ms_ = 0;
  std::uint64_t held_ = 0;
};

}  // namespace gatehouse
