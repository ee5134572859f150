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

#include "gatehouse/frontend/address_limit.h"

namespace gatehouse::frontend {

/// `rate` tokens a second, at most `rate` saved. Starts full. Counts in
/// thousandths of a token, so that a millisecond of a small rate adds up.
class TokenBucket {
 public:
  /// Takes a token if there is one (refilled up to `now_ms` first).
  bool take(std::uint32_t rate, std::int64_t now_ms);
  /// Refilled up to `now_ms`, would it be full?
  bool full(std::uint32_t rate, std::int64_t now_ms) const;

 private:
  std::int64_t refilled(std::uint32_t rate, std::int64_t now_ms) const;

  std::int64_t milli_tokens_ = -1;  // -1: never used (full)
  std::int64_t at_ms_ = 0;
};

class ConnectRate {
 public:
  enum class Verdict { kAccept, kOverTotal, kOverAddress };

  /// Connections a second in total and per address; 0: no limit.
  ConnectRate(std::uint32_t total, std::uint32_t per_address)
      : total_rate_(total), per_address_rate_(per_address) {}
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
  std::uint32_t total_rate_;
  std::uint32_t per_address_rate_;
  TokenBucket total_;
  std::unordered_map<AddressLimit::Key, TokenBucket, AddressLimit::Hash> per_address_;
  std::int64_t pruned_ms_ = 0;
};

}  // namespace gatehouse::frontend
