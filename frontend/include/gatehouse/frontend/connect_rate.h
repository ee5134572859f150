// ConnectRate: new connections per second, in total and per client address
// (an IPv4 address, an IPv6 /64: AddressLimit::key_of), as token buckets, for
// --connect-rate and --connect-rate-per-ip. Each bucket holds one second's
// worth: a burst of `rate` connections, then `rate` a second.
//
// The two are enforced differently. Over the total, the frontend stops
// accepting until the bucket has a token again (total_wait_ms()): new
// connections wait in the kernel's listen queue, as they would behind a
// busy gateway, and none is refused. Over an address's bucket the connection
// is accepted and reset at once: only that address pays, and its refused
// connections spend none of the total.
//
// Every connection costs a worker a key exchange (one per connection: a
// worker refuses a second), so these buckets bound key exchanges too.
//
// With several frontends the total bucket is one cell in shared memory
// (ControlBlock::connect_tat_ns), which each frontend takes tokens from with
// a compare-and-swap: the total holds for the instance, however the kernel
// spreads the clients. The per-address buckets are each frontend's own (with
// frontend-affinity address one frontend sees all of an address's clients).
#pragma once

#include <atomic>
#include <cstdint>
#include <unordered_map>

#include "gatehouse/base/rate_limit.h"
#include "gatehouse/frontend/address_limit.h"

namespace gatehouse::frontend {

class ConnectRate {
 public:
  enum class Verdict { kAccept, kOverTotal, kOverAddress };

  /// Connections a second in total and per address; 0: no limit.
  /// `shared_total`: the total bucket's state where several frontends share
  /// it (CLOCK_MONOTONIC ns); null: this object's own.
  ConnectRate(std::uint32_t total, std::uint32_t per_address,
              std::atomic<std::int64_t>* shared_total = nullptr)
      : total_tat_(shared_total != nullptr ? shared_total : &own_total_tat_) {
    set_rates(total, per_address);
  }
  void set_rates(std::uint32_t total, std::uint32_t per_address);

  /// Whether a new connection from `key` may be served (and if so, counts
  /// it). `limit_address`: false for an address exempt from per-address
  /// limits. kOverTotal only when several listeners accepted on one token.
  Verdict admit(const AddressLimit::Key& key, bool limit_address, std::int64_t now_ms);
  /// Milliseconds until the total bucket has a token (0: it has one now).
  std::int64_t total_wait_ms(std::int64_t now_ms) const;
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
  /// Takes a token of the total bucket, false when it has none.
  bool take_total(std::int64_t now_ns);

  std::atomic<std::int64_t> own_total_tat_{0};
  std::atomic<std::int64_t>* total_tat_;  // own_total_tat_, or the shared one
  std::unordered_map<AddressLimit::Key, std::int64_t, AddressLimit::Hash> per_address_;
  std::int64_t pruned_ms_ = 0;
};

}  // namespace gatehouse::frontend
