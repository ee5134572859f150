#include "gatehouse/frontend/address_limit.h"

#include <cstring>

namespace gatehouse::frontend {

AddressLimit::Key AddressLimit::key_of(const boost::asio::ip::address& address) {
  if (address.is_v4()) {
    return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, address.to_v4()).to_bytes();
  }
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) return v6.to_bytes();  // a v4 client on a dual-stack listener
  Key key = v6.to_bytes();
  std::memset(key.data() + 8, 0, 8);  // its /64
  return key;
}

bool AddressLimit::try_add(const Key& key, bool enforce) {
  std::uint32_t& n = counts_[key];
  if (enforce && limit_ != 0 && n >= limit_) return false;
  ++n;
  return true;
}

void AddressLimit::remove(const Key& key) {
  const auto it = counts_.find(key);
  if (it == counts_.end()) return;
  if (--it->second == 0) counts_.erase(it);
}

std::uint32_t AddressLimit::count(const Key& key) const {
  const auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

std::size_t AddressLimit::Hash::operator()(const Key& key) const noexcept {
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  std::memcpy(&high, key.data(), 8);
  std::memcpy(&low, key.data() + 8, 8);
  // Mixed so that addresses differing only in the low bits spread.
  return static_cast<std::size_t>((high * 0x9E3779B97F4A7C15ull) ^
                                  (low + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full);
}

}  // namespace gatehouse::frontend
