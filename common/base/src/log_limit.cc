#include "gatehouse/base/log_limit.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <vector>

namespace gatehouse {
namespace {

/// Every LogLimit of the process, for flush_log_limits(). One mutex guards
/// them all: a site is only touched when it logs (or would), and the bridge
/// logs from gRPC threads as well as its loop.
struct Registry {
  std::mutex mutex;
  std::vector<LogLimit*> limits;
  /// The earliest time a count may be overdue (max: none is pending), read
  /// without the mutex by flush_log_limits().
  std::atomic<std::int64_t> next_due_ns{std::numeric_limits<std::int64_t>::max()};
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

LogLimit::LogLimit(spdlog::level::level_enum level, std::string site, std::int64_t interval_ns)
    : level_(level), site_(std::move(site)), interval_ns_(interval_ns) {
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  r.limits.push_back(this);
}

LogLimit::~LogLimit() {
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  std::erase(r.limits, this);
}

bool LogLimit::admit(std::int64_t now_ns, std::uint64_t& suppressed) {
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  if (written_ && now_ns - last_ns_ < interval_ns_) {
    ++suppressed_;
    const std::int64_t due = last_ns_ + interval_ns_;
    if (due < r.next_due_ns.load(std::memory_order_relaxed))
      r.next_due_ns.store(due, std::memory_order_relaxed);
    return false;
  }
  written_ = true;
  last_ns_ = now_ns;
  suppressed = std::exchange(suppressed_, 0);
  return true;
}

std::uint64_t LogLimit::take_overdue(std::int64_t now_ns) {
  const std::lock_guard lock(registry().mutex);
  return take_overdue_locked(now_ns);
}

std::uint64_t LogLimit::take_overdue_locked(std::int64_t now_ns) {
  if (suppressed_ == 0 || now_ns - last_ns_ < interval_ns_) return 0;
  last_ns_ = now_ns;
  return std::exchange(suppressed_, 0);
}

void flush_log_limits(std::int64_t now_ns) {
  Registry& r = registry();
  if (now_ns < r.next_due_ns.load(std::memory_order_relaxed)) return;
  struct Overdue {
    spdlog::level::level_enum level;
    std::string site;
    std::uint64_t count;
  };
  std::vector<Overdue> overdue;
  {
    const std::lock_guard lock(r.mutex);
    std::int64_t next = std::numeric_limits<std::int64_t>::max();
    for (LogLimit* limit : r.limits) {
      if (const std::uint64_t count = limit->take_overdue_locked(now_ns); count != 0) {
        overdue.push_back({limit->level_, limit->site_, count});
      } else if (limit->suppressed_ != 0) {
        next = std::min(next, limit->last_ns_ + limit->interval_ns_);
      }
    }
    r.next_due_ns.store(next, std::memory_order_relaxed);
  }
  // Written outside the mutex: a sink may be slow.
  for (const Overdue& o : overdue)
    spdlog::log(o.level, "{} ({} similar suppressed)", o.site, o.count);
}

}  // namespace gatehouse
