#include "gatehouse/frontend/connect_rate.h"

#include <algorithm>

namespace gatehouse::frontend {

std::int64_t TokenBucket::refilled(std::uint32_t rate, std::int64_t now_ms) const {
  const std::int64_t capacity = std::int64_t{rate} * 1000;
  if (milli_tokens_ < 0) return capacity;
  // rate tokens a second = rate thousandths of a token a millisecond.
  const std::int64_t elapsed = std::max<std::int64_t>(0, now_ms - at_ms_);
  return std::min(capacity, milli_tokens_ + elapsed * std::int64_t{rate});
}

bool TokenBucket::take(std::uint32_t rate, std::int64_t now_ms) {
  milli_tokens_ = refilled(rate, now_ms);
  at_ms_ = now_ms;
  if (milli_tokens_ < 1000) return false;
  milli_tokens_ -= 1000;
  return true;
}

bool TokenBucket::full(std::uint32_t rate, std::int64_t now_ms) const {
  return refilled(rate, now_ms) >= std::int64_t{rate} * 1000;
}

void ConnectRate::set_rates(std::uint32_t total, std::uint32_t per_address) {
  total_rate_ = total;
  per_address_rate_ = per_address;
  if (per_address_rate_ == 0) per_address_.clear();
}

ConnectRate::Verdict ConnectRate::admit(const AddressLimit::Key& key, std::int64_t now_ms) {
  // The total's token is spent only if the address has one too.
  TokenBucket total_after = total_;
  if (total_rate_ != 0 && !total_after.take(total_rate_, now_ms)) return Verdict::kOverTotal;
  if (per_address_rate_ != 0 && !per_address_[key].take(per_address_rate_, now_ms)) {
    return Verdict::kOverAddress;
  }
  total_ = total_after;
  return Verdict::kAccept;
}

void ConnectRate::prune(std::int64_t now_ms) {
  if (now_ms - pruned_ms_ < 1000) return;
  pruned_ms_ = now_ms;
  std::erase_if(per_address_,
                [&](const auto& entry) { return entry.second.full(per_address_rate_, now_ms); });
}

}  // namespace gatehouse::frontend
