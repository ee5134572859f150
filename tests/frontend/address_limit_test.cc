// AddressLimit: what counts as one address, and the count going up to the
// limit and back down.
#include "gatehouse/frontend/address_limit.h"

#include <gtest/gtest.h>

namespace gatehouse::frontend {
namespace {

using boost::asio::ip::make_address;

AddressLimit::Key key(const char* text) {
  return AddressLimit::key_of(make_address(text));
}

TEST(AddressLimit, IPv4CountsPerAddressAndIPv6PerSlash64) {
  EXPECT_EQ(key("10.0.0.1"), key("::ffff:10.0.0.1")) << "v4 and v4-mapped v6 are one client";
  EXPECT_NE(key("10.0.0.1"), key("10.0.0.2"));
  EXPECT_EQ(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff")) << "one /64";
  EXPECT_NE(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
}

TEST(AddressLimit, RefusesOverTheLimitUntilOneLeaves) {
  AddressLimit limit(2);
  const auto a = key("192.0.2.7");
  const auto b = key("192.0.2.8");
  EXPECT_TRUE(limit.try_add(a));
  EXPECT_TRUE(limit.try_add(a));
  EXPECT_FALSE(limit.try_add(a)) << "the third from one address";
  EXPECT_EQ(limit.count(a), 2u) << "a refusal counts nothing";
  EXPECT_TRUE(limit.try_add(b)) << "other addresses are not affected";
  limit.remove(a);
  EXPECT_TRUE(limit.try_add(a));
  limit.remove(a);
  limit.remove(a);
  limit.remove(b);
  EXPECT_EQ(limit.addresses(), 0u) << "addresses with no connection are forgotten";
}

TEST(AddressLimit, ZeroMeansNoLimitButCountsForALimitSetLater) {
  AddressLimit limit(0);
  const auto a = key("192.0.2.7");
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limit.try_add(a));
  EXPECT_EQ(limit.count(a), 1000u);
  limit.set_limit(999);  // a reload
  EXPECT_FALSE(limit.try_add(a));
  limit.remove(a);
  limit.remove(a);
  EXPECT_TRUE(limit.try_add(a)) << "998 open: room for one";
  EXPECT_FALSE(limit.try_add(a));
}

}  // namespace
}  // namespace gatehouse::frontend
