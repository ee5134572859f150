// ConnectRate: new connections per second, in total and per client address
// (an IPv4 address, an IPv6 /64: AddressLimit::key_of), as token buckets, for
// --connect-rate and --connect-rate-per-ip. Each bucket holds one second's
// worth: a burst of `rate` connections, then `rate` a second.
//
// Every connection costs a worker a key exchange (one per connection: a
// worker refuses a second), so these buckets bound key exchanges too. A
// refusal is an accept and a close, nothing more.
#pragma once

#include <cstdint>
#include <unordered_map>

#include "gatehouse/base/rate_limit.h"
#include "gatehouse/frontend/address_limit.h"

namespace gatehouse::frontend {

class ConnectRate {
 public:
  enum class Verdict { kAccept, kOverTotal, kOverAddress };

  /// Connections a second in total and per address; 0: no limit.
  ConnectRate(std::uint32_t total, std::uint32_t per_address) { set_rates(total, per_address); }
  void set_rates(std::uint32_t total, std::uint32_t per_address);

  /// Whether a new connection from `key` may be accepted now (and if so,
  /// counts it). The total is checked first, so a flood over it creates no
  /// per-address state.
  Verdict admit(const AddressLimit::Key& key, std::int64_t now_ms);
  /// Forgets the addresses whose buckets are full again (at most once a
  /// second, from the frontend's sweep): the map holds only the addresses
  /// that connected within the last second.
  void prune(std::int64_t now_ms);
  std::size_t addresses() const noexcept { return per_address_.size(); }

 private:
  // Buckets (base/rate_limit.h) of a second's worth: `rate` at once, then
  // `rate` a second; each is its next free time, in ns of the frontend's clock.
  RateLimit total_limit_ = RateLimit::per_minute(0, 0);
  RateLimit per_address_limit_ = RateLimit::per_minute(0, 0);
  std::int64_t total_tat_ns_ = 0;
  std::unordered_map<AddressLimit::Key, std::int64_t, AddressLimit::Hash> per_address_;
  std::int64_t pruned_ms_ = 0;
};

}  // namespace gatehouse::frontend
