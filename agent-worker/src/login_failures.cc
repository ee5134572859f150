#include "gatehouse/worker/login_failures.h"

#include <algorithm>
#include <cstring>

namespace gatehouse::worker {
namespace {

/// `limit` failures a window across `workers`: this worker's share.
RateLimit share(std::uint32_t limit, std::uint32_t window_ms, std::uint32_t workers) {
  if (limit == 0) return RateLimit::per_minute(0, 0);  // no limit
  const std::uint64_t each = std::max<std::uint64_t>(1, limit / std::max(workers, 1u));
  return RateLimit::per_period(each, std::int64_t{std::max(window_ms, 1u)} * 1'000'000, each);
}

}  // namespace

LoginFailures::LoginFailures(const Settings& settings)
    : per_address_(share(settings.login_failures_per_ip, settings.login_failure_window_ms,
                         settings.workers)),
      per_user_(share(settings.login_failures_per_user, settings.login_failure_window_ms,
                      settings.workers)),
      exempt_(settings.address_limits_exempt,
              settings.address_limits_exempt +
                  std::min(settings.address_limits_exempt_count, kMaxExemptNetworks)) {}

std::string LoginFailures::address_key(const std::uint8_t* address) const {
  for (const AddressRange& range : exempt_) {
    if (range.contains(address)) return {};
  }
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  std::string key(reinterpret_cast<const char*>(address), 16);
  // An IPv6 client controls the low 64 bits of its address.
  if (std::memcmp(address, kMapped, sizeof kMapped) != 0) std::fill(key.begin() + 8, key.end(), 0);
  return key;
}

std::string LoginFailures::user_key(std::int32_t uid) {
  return std::string(reinterpret_cast<const char*>(&uid), sizeof uid);
}

bool LoginFailures::blocked(const RateLimit& limit, const std::string& key,
                            std::int64_t now_ns) const {
  if (key.empty() || limit.unlimited()) return false;
  const auto it = tat_ns_.find(key);
  return it != tat_ns_.end() && limit.wait_ns(it->second, now_ns) > 0;
}

void LoginFailures::count(const RateLimit& limit, const std::string& key, std::int64_t now_ns) {
  if (key.empty() || limit.unlimited()) return;
  if (tat_ns_.size() >= kMaxEntries && tat_ns_.find(key) == tat_ns_.end()) {
    std::erase_if(tat_ns_, [now_ns](const auto& entry) { return entry.second <= now_ns; });
    if (tat_ns_.size() >= kMaxEntries) tat_ns_.erase(tat_ns_.begin());
  }
  limit.admit(tat_ns_[key], now_ns);  // a failure while blocked was not checked: not counted
}

bool LoginFailures::address_blocked(const std::uint8_t* address, std::int64_t now_ns) const {
  return blocked(per_address_, address_key(address), now_ns);
}

bool LoginFailures::user_blocked(std::int32_t uid, std::int64_t now_ns) const {
  return blocked(per_user_, user_key(uid), now_ns);
}

void LoginFailures::failed(const std::uint8_t* address, std::int32_t uid, std::int64_t now_ns) {
  count(per_address_, address_key(address), now_ns);
  if (uid > 0) count(per_user_, user_key(uid), now_ns);
}

}  // namespace gatehouse::worker
