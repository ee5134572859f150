// Failed logins, limited per client address and per user id (docs/login.md,
// "Failed logins"). Each is a token bucket (GCRA): `limit` failures at once,
// then `limit` more per window. While an address's bucket is empty its
// logins are refused without being checked (address_backoff); while a user
// id's is, logins as that user are refused even with a good credential
// (user_backoff), so that guessing one user's credential gains nothing.
//
// Where the counts live: in each worker, for the sessions it serves, with
// the limit divided by the number of workers (at least 1 each). Whatever
// worker an attacker's connections land on, the gateway as a whole checks
// at most `limit` (or one per worker, if that is more) failures at once and
// `limit` a window after that; nothing is shared between processes, so
// nothing is locked and a crashed worker leaves nothing behind (it forgets
// its counts: an attacker gains one fresh share per crash it cannot cause).
// A worker's table holds at most kMaxEntries keys: past that, keys whose
// buckets are full again are forgotten first, then any.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "gatehouse/base/rate_limit.h"
#include "gatehouse/contract/control.h"

namespace gatehouse::worker {

class LoginFailures {
 public:
  static constexpr std::size_t kMaxEntries = 16384;

  /// This worker's share of the settings' limits (login-failures-per-ip,
  /// login-failures-per-user, login-failure-window) among `settings.workers`.
  explicit LoginFailures(const Settings& settings);

  /// `address`: 16 bytes, IPv4-mapped for IPv4 (Session::address).
  bool address_blocked(const std::uint8_t* address, std::int64_t now_ns) const;
  bool user_blocked(std::int32_t uid, std::int64_t now_ns) const;
  /// A failed login from `address`, claiming `uid` (0: none).
  void failed(const std::uint8_t* address, std::int32_t uid, std::int64_t now_ns);

  std::size_t entries() const noexcept { return tat_ns_.size(); }

 private:
  /// 16 bytes: the address (an IPv6 one's /64); empty for an exempt one.
  std::string address_key(const std::uint8_t* address) const;
  /// 4 bytes: cannot be mistaken for an address key.
  static std::string user_key(std::int32_t uid);
  bool blocked(const RateLimit& limit, const std::string& key, std::int64_t now_ns) const;
  void count(const RateLimit& limit, const std::string& key, std::int64_t now_ns);

  const RateLimit per_address_;
  const RateLimit per_user_;
  const std::vector<AddressRange> exempt_;                // address-limits-exempt, copied
  std::unordered_map<std::string, std::int64_t> tat_ns_;  ///< key -> its bucket
};

}  // namespace gatehouse::worker
