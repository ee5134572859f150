#include "gatehouse/frontend/connect_rate.h"

namespace gatehouse::frontend {

void ConnectRate::set_rates(std::uint32_t total, std::uint32_t per_address) {
  total_limit_ = RateLimit::per_minute(std::uint64_t{total} * 60, total);
  per_address_limit_ = RateLimit::per_minute(std::uint64_t{per_address} * 60, per_address);
  if (per_address == 0) per_address_.clear();
}

ConnectRate::Verdict ConnectRate::admit(const AddressLimit::Key& key, std::int64_t now_ms) {
  // The total's token is spent only if the address has one too.
  const std::int64_t now_ns = now_ms * 1'000'000;
  std::int64_t total_after = total_tat_ns_;
  if (!total_limit_.admit(total_after, now_ns)) return Verdict::kOverTotal;
  if (!per_address_limit_.unlimited() && !per_address_limit_.admit(per_address_[key], now_ns)) {
    return Verdict::kOverAddress;
  }
  total_tat_ns_ = total_after;
  return Verdict::kAccept;
}

void ConnectRate::prune(std::int64_t now_ms) {
  if (now_ms - pruned_ms_ < 1000) return;
  pruned_ms_ = now_ms;
  // A bucket whose next free time has passed is full again: nothing to keep.
  const std::int64_t now_ns = now_ms * 1'000'000;
  std::erase_if(per_address_, [&](const auto& entry) { return entry.second <= now_ns; });
}

}  // namespace gatehouse::frontend
