// Rendezvous (highest random weight) hashing: which instance of a service
// serves a user. Each (user, instance) pair gets a pseudo-random score and the
// user goes to the instance with the highest one. Adding an instance to N
// moves exactly the users whose new score beats their old winner, about
// 1/(N+1) of them, and each of those to the new instance; removing one moves
// only its own users. Instances are identified by name (the etcd key), not
// address, so an instance that moves keeps its users.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace gatehouse::bridge {

/// An instance name's hash (64-bit FNV-1a), computed once per instance.
constexpr std::uint64_t instance_hash(std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

/// A strong 64-bit mixer (splitmix64's finalizer): near independent scores
/// for neighbouring user ids and instance hashes.
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/// The index of the instance (by instance_hash) that serves `user_id`;
/// `instances` must not be empty. Ties (equal scores) go to the lower index.
inline std::size_t rendezvous_pick(std::int64_t user_id,
                                   std::span<const std::uint64_t> instances) noexcept {
  const std::uint64_t user = mix64(static_cast<std::uint64_t>(user_id));
  std::size_t best = 0;
  std::uint64_t best_score = 0;
  for (std::size_t i = 0; i < instances.size(); ++i) {
    const std::uint64_t score = mix64(user ^ instances[i]);
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

}  // namespace gatehouse::bridge
