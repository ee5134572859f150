// GatewaySegment's settings under a reload: the supervisor publishes new
// settings while other processes read them. A reader must only ever get a
// whole copy of one published version, never a mix, and (under TSan, where
// this runs too) without a data race.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/contract/gateway_segment.h"

namespace gatehouse {
namespace {

Settings version(std::uint32_t n) {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = 1;
  s.max_connections = 16;
  s.ring_bytes = 1 << 16;
  s.rpm_limit = n;
  s.read_timeout_ms = n;
  std::snprintf(s.login_file, sizeof s.login_file, "tokens-%u", n);
  s.max_connections_per_ip = n;
  return s;
}

TEST(SettingsPublish, ReadersSeeWholeVersionsInOrderWhileTheyArePublished) {
  const std::string name = "gatehouse-test-settings-" + std::to_string(::getpid());
  GatewaySegment segment = GatewaySegment::create(name, version(0));
  EXPECT_EQ(segment.settings().rpm_limit, 0u);

  constexpr std::uint32_t kVersions = 20000;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> torn{0};
  std::atomic<std::uint64_t> backwards{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      std::uint32_t last = 0;
      while (!done.load()) {
        const Settings s = segment.settings();
        char expected[kPathBytes];
        std::snprintf(expected, sizeof expected, "tokens-%u", s.rpm_limit);
        if (s.read_timeout_ms != s.rpm_limit || s.max_connections_per_ip != s.rpm_limit ||
            std::string(s.login_file) != expected) {
          ++torn;
        }
        if (s.rpm_limit < last) ++backwards;
        last = s.rpm_limit;
      }
    });
  }
  for (std::uint32_t n = 1; n <= kVersions; ++n) segment.publish_settings(version(n));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(backwards.load(), 0u);
  EXPECT_EQ(segment.settings().rpm_limit, kVersions);
  EXPECT_EQ(segment.settings_generation(), 2u * kVersions);
}

}  // namespace
}  // namespace gatehouse
