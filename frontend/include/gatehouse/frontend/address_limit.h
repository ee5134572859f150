// AddressLimit: concurrent connections per client address, for
// --max-connections-per-ip. An address is an IPv4 address or the /64 of an
// IPv6 one (a single host, or a home network, is given a whole /64, so
// counting IPv6 addresses one by one would limit nothing).
//
// A flood of connections from one place then costs that place its new
// connections, not every player the room under --max-connections.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

namespace gatehouse::frontend {

class AddressLimit {
 public:
  /// IPv4-mapped for IPv4, the /64 prefix (rest zero) for IPv6.
  using Key = std::array<std::uint8_t, 16>;

  /// `limit` connections per address; 0: no limit. Connections are counted
  /// either way, so that a limit set later (a reload) sees the ones open.
  explicit AddressLimit(std::uint32_t limit) : limit_(limit) {}
  void set_limit(std::uint32_t limit) noexcept { limit_ = limit; }

  static Key key_of(const boost::asio::ip::address& address);

  /// Counts one more connection from `key`, unless the address has `limit`
  /// already and `enforce` (false for an exempt address): then false, and
  /// nothing changes.
  bool try_add(const Key& key, bool enforce = true);
  /// Uncounts one connection try_add() counted.
  void remove(const Key& key);

  std::uint32_t limit() const noexcept { return limit_; }
  /// Connections counted for `key`.
  std::uint32_t count(const Key& key) const;
  /// Addresses with at least one connection.
  std::size_t addresses() const noexcept { return counts_.size(); }

  struct Hash {
    std::size_t operator()(const Key& key) const noexcept;
  };

 private:
  std::uint32_t limit_;
  std::unordered_map<Key, std::uint32_t, Hash> counts_;
};

}  // namespace gatehouse::frontend
