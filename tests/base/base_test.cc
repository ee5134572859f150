// gw::base: what every gateway process parses from the supervisor and the
// clock they compare across processes.
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/base/child_process_args.h"
#include "gatehouse/base/clock.h"
#include "gatehouse/base/rate_limit.h"

namespace gatehouse {
namespace {

ChildArgs parse(std::vector<std::string> words) {
  std::vector<char*> argv;
  static std::string program = "gatehouse-test";
  argv.push_back(program.data());
  for (auto& w : words) argv.push_back(w.data());
  return parse_child_args(static_cast<int>(argv.size()), argv.data());
}

TEST(ChildArgs, EveryArgumentTheSupervisorPasses) {
  const ChildArgs a = parse({"--segment", "gatehouse-x", "--index", "3", "--doorbell", "7",
                             "--peer-doorbells", "8,9", "--listen-fds", "10"});
  EXPECT_EQ(a.segment, "gatehouse-x");
  EXPECT_EQ(a.index, 3u);
  EXPECT_EQ(a.doorbell, 7);
  EXPECT_EQ(a.peer_doorbells, (std::vector<int>{8, 9}));
  EXPECT_EQ(a.listen_fds, (std::vector<int>{10}));
}

TEST(ChildArgs, MistakesAreRefusedByName) {
  EXPECT_THROW(parse({"--index", "1"}), std::invalid_argument);  // no --segment
  EXPECT_THROW(parse({"--segment"}), std::invalid_argument);     // no value
  EXPECT_THROW(parse({"--segment", "s", "--colour", "red"}), std::invalid_argument);
}

TEST(FdList, ParsesCommaSeparatedDescriptorsAndRefusesGarbage) {
  EXPECT_EQ(parse_fd_list("3"), (std::vector<int>{3}));
  EXPECT_EQ(parse_fd_list("3,4,15"), (std::vector<int>{3, 4, 15}));
  EXPECT_TRUE(parse_fd_list("").empty());
  EXPECT_THROW(parse_fd_list("3,x"), std::invalid_argument);
  EXPECT_THROW(parse_fd_list("3x"), std::invalid_argument);
  EXPECT_THROW(parse_fd_list("-1"), std::invalid_argument);
}

TEST(Clock, MonotonicNanosecondsNeverGoBack) {
  std::int64_t last = monotonic_ns();
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t now = monotonic_ns();
    EXPECT_GE(now, last);
    last = now;
  }
  EXPECT_GT(last, 0);
}

}  // namespace
}  // namespace gatehouse

namespace gatehouse {
namespace {

constexpr std::int64_t kSecondNs = 1'000'000'000;

TEST(RateLimit, AFullBucketAdmitsTheBurstAtOnceThenTheRate) {
  const RateLimit limit = RateLimit::per_minute(60, 5);  // one a second, five at once
  std::int64_t tat = 0;
  const std::int64_t t0 = 100 * kSecondNs;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.admit(tat, t0)) << i;
  EXPECT_FALSE(limit.admit(tat, t0)) << "the sixth at once";
  EXPECT_FALSE(limit.admit(tat, t0 + kSecondNs / 2)) << "not refilled yet";
  EXPECT_TRUE(limit.admit(tat, t0 + kSecondNs)) << "one refilled after a second";
  EXPECT_FALSE(limit.admit(tat, t0 + kSecondNs));
  // A long pause refills the whole burst, never more.
  const std::int64_t later = t0 + 3600 * kSecondNs;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.admit(tat, later)) << i;
  EXPECT_FALSE(limit.admit(tat, later));
}

TEST(RateLimit, ARefusalLeavesTheBucketAsItWas) {
  const RateLimit limit = RateLimit::per_minute(60, 1);
  std::int64_t tat = 0;
  ASSERT_TRUE(limit.admit(tat, kSecondNs));
  const std::int64_t before = tat;
  EXPECT_FALSE(limit.admit(tat, kSecondNs));
  EXPECT_EQ(tat, before);
}

TEST(RateLimit, SustainedTrafficAtTheRateIsNeverRefusedAndAboveItIs) {
  const RateLimit limit = RateLimit::per_minute(200, 200);  // the rpm-limit default
  std::int64_t tat = 0;
  const std::int64_t step = 60 * kSecondNs / 200;
  for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(limit.admit(tat, i * step)) << i;
  // 10 % faster than the rate: the burst is spent within ten minutes.
  std::int64_t fast = 0;
  int admitted = 0;
  for (int i = 0; i < 10'000; ++i) admitted += limit.admit(fast, i * step * 9 / 10) ? 1 : 0;
  EXPECT_LT(admitted, 10'000);
  EXPECT_GT(admitted, 9'000 + 150);
}

TEST(RateLimit, BytesCountByWeightAndHugeLimitsDoNotOverflow) {
  const RateLimit bytes = RateLimit::per_minute(6'000, 1'000);  // 100 B/s, 1000 at once
  std::int64_t tat = 0;
  EXPECT_TRUE(bytes.admit(tat, 0, 600));
  EXPECT_TRUE(bytes.admit(tat, 0, 400));
  EXPECT_FALSE(bytes.admit(tat, 0, 1));
  EXPECT_TRUE(bytes.admit(tat, kSecondNs, 100));
  const RateLimit huge = RateLimit::per_minute(4'000'000'000u, 4'000'000'000u);
  std::int64_t t = 0;
  EXPECT_TRUE(huge.admit(t, 0, 4'000'000'000u));
  EXPECT_FALSE(huge.admit(t, 0, 65'535));
  EXPECT_TRUE(RateLimit::per_minute(0, 0).admit(t, 0, ~std::uint64_t{0})) << "0: no limit";
}

}  // namespace
}  // namespace gatehouse
