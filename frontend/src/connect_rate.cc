#include "gatehouse/frontend/connect_rate.h"

namespace gatehouse::frontend {

void ConnectRate::set_rates(std::uint32_t total, std::uint32_t per_address) {
  total_limit_ = RateLimit::per_minute(std::uint64_t{total} * 60, total);
  per_address_limit_ = RateLimit::per_minute(std::uint64_t{per_address} * 60, per_address);
  if (per_address == 0) per_address_.clear();
}

ConnectRate::Verdict ConnectRate::admit(const AddressLimit::Key& key, bool limit_address,
                                        std::int64_t now_ms) {
  const std::int64_t now_ns = now_ms * 1'000'000;
  // The address's token first: a refused connection spends none of the total.
  std::int64_t* address_tat = nullptr;
  std::int64_t address_after = 0;
  if (limit_address && !per_address_limit_.unlimited()) {
    address_tat = &per_address_[key];
    address_after = *address_tat;
    if (!per_address_limit_.admit(address_after, now_ns)) return Verdict::kOverAddress;
  }
  if (!take_total(now_ns)) return Verdict::kOverTotal;
  if (address_tat != nullptr) *address_tat = address_after;
  return Verdict::kAccept;
}

bool ConnectRate::take_total(std::int64_t now_ns) {
  std::int64_t seen = total_tat_->load(std::memory_order_relaxed);
  for (;;) {
    std::int64_t next = seen;
    if (!total_limit_.admit(next, now_ns)) return false;
    // Another frontend may have taken a token meanwhile: then again, from
    // the state it left.
    if (total_tat_->compare_exchange_weak(seen, next, std::memory_order_relaxed)) return true;
  }
}

std::int64_t ConnectRate::total_wait_ms(std::int64_t now_ms) const {
  const std::int64_t ns =
      total_limit_.wait_ns(total_tat_->load(std::memory_order_relaxed), now_ms * 1'000'000);
  return (ns + 999'999) / 1'000'000;
}

void ConnectRate::prune(std::int64_t now_ms) {
  if (now_ms - pruned_ms_ < 1000) return;
  pruned_ms_ = now_ms;
  // A bucket whose next free time has passed is full again: nothing to keep.
  const std::int64_t now_ns = now_ms * 1'000'000;
  std::erase_if(per_address_, [&](const auto& entry) { return entry.second <= now_ns; });
}

}  // namespace gatehouse::frontend
