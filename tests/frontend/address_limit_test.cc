// AddressLimit: what counts as one address, and the count going up to the
// limit and back down; ConnectRate: the buckets of new connections.
#include "gatehouse/frontend/address_limit.h"
#include "gatehouse/frontend/connect_rate.h"

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

// An exempt address is counted (a range changed by a reload meets the true
// counts) but never refused.
TEST(AddressLimit, AnExemptAddressIsCountedNotRefused) {
  AddressLimit limit(1);
  const auto a = key("127.0.0.1");
  EXPECT_TRUE(limit.try_add(a, /*enforce=*/false));
  EXPECT_TRUE(limit.try_add(a, /*enforce=*/false));
  EXPECT_EQ(limit.count(a), 2u);
  EXPECT_FALSE(limit.try_add(a)) << "no longer exempt: over its limit";
}

// ConnectRate: an address over its bucket is refused and spends none of the
// total; an exempt one is held only to the total; once the total is spent,
// total_wait_ms() says when it has a token again.
TEST(ConnectRate, AddressesPayForThemselvesAndTheTotalSaysWhenToAcceptAgain) {
  ConnectRate rate(/*total=*/4, /*per_address=*/2);
  const auto a = key("192.0.2.7");
  const auto local = key("127.0.0.1");
  const std::int64_t t0 = 1'000'000;
  EXPECT_EQ(rate.admit(a, true, t0), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(rate.admit(a, true, t0), ConnectRate::Verdict::kAccept);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(rate.admit(a, true, t0), ConnectRate::Verdict::kOverAddress);
  }
  EXPECT_EQ(rate.total_wait_ms(t0), 0) << "the refusals spent none of the total";
  EXPECT_EQ(rate.admit(local, false, t0), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(rate.admit(local, false, t0), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(rate.total_wait_ms(t0), 250) << "4 a second: the next in a quarter of a second";
  EXPECT_EQ(rate.admit(local, false, t0), ConnectRate::Verdict::kOverTotal);
  EXPECT_EQ(rate.total_wait_ms(t0 + 250), 0);
  EXPECT_EQ(rate.admit(local, false, t0 + 250), ConnectRate::Verdict::kAccept);
}

// Several frontends take from one total bucket in shared memory: together
// they admit the total, whichever of them the clients reach.
TEST(ConnectRate, FrontendsSharingTheTotalAdmitItTogether) {
  std::atomic<std::int64_t> shared{0};
  ConnectRate first(/*total=*/4, /*per_address=*/0, &shared);
  ConnectRate second(/*total=*/4, /*per_address=*/0, &shared);
  const auto a = key("192.0.2.7");
  const std::int64_t t0 = 1'000'000;
  EXPECT_EQ(first.admit(a, true, t0), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(second.admit(a, true, t0), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(second.admit(a, true, t0), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(first.admit(a, true, t0), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(first.admit(a, true, t0), ConnectRate::Verdict::kOverTotal);
  EXPECT_EQ(second.admit(a, true, t0), ConnectRate::Verdict::kOverTotal);
  EXPECT_EQ(first.total_wait_ms(t0), 250);
  EXPECT_EQ(second.total_wait_ms(t0), 250) << "each sees the shared bucket";
  EXPECT_EQ(second.admit(a, true, t0 + 250), ConnectRate::Verdict::kAccept);
  EXPECT_EQ(first.admit(a, true, t0 + 250), ConnectRate::Verdict::kOverTotal);
}

}  // namespace
}  // namespace gatehouse::frontend
