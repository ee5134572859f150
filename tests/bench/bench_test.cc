// The pieces of gatehouse-bench that can be checked without a gateway: the
// latency histogram, the gateway memory sampling from /proc, and the JSON
// summary line.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "child_process.h"
#include "gatehouse/bench/latency_histogram.h"
#include "gatehouse/bench/load.h"
#include "gatehouse/bench/process_memory.h"

namespace gatehouse::bench {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------- histogram

TEST(LatencyHistogram, EveryValueLandsInABucketThatHoldsItAndIsNarrow) {
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> values;
  for (std::uint64_t v = 0; v < 5000; ++v) values.push_back(v);
  for (int i = 0; i < 100000; ++i) values.push_back(rng() >> (rng() % 64));
  values.push_back(LatencyHistogram::kMaxTrackable);
  for (const std::uint64_t v : values) {
    const std::size_t b = LatencyHistogram::bucket_of(v);
    ASSERT_LT(b, LatencyHistogram::kBucketCount) << v;
    const std::uint64_t clamped = std::min(v, LatencyHistogram::kMaxTrackable);
    ASSERT_LE(LatencyHistogram::bucket_low(b), clamped) << v;
    ASSERT_GE(LatencyHistogram::bucket_high(b), clamped) << v;
    // Two significant digits: a bucket spans under 1% of its values.
    const std::uint64_t width = LatencyHistogram::bucket_high(b) - LatencyHistogram::bucket_low(b);
    ASSERT_LE(width * 128, LatencyHistogram::bucket_low(b)) << v;
  }
}

TEST(LatencyHistogram, BucketsTileTheRangeWithoutGaps) {
  for (std::size_t b = 1; b < LatencyHistogram::kBucketCount; ++b) {
    ASSERT_EQ(LatencyHistogram::bucket_low(b), LatencyHistogram::bucket_high(b - 1) + 1) << b;
  }
  EXPECT_EQ(LatencyHistogram::bucket_high(LatencyHistogram::kBucketCount - 1),
            LatencyHistogram::kMaxTrackable);
}

TEST(LatencyHistogram, PercentilesOfAUniformRunAreWithinOnePercent) {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 100000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 100000u);
  EXPECT_DOUBLE_EQ(h.mean(), 50000.5);
  const auto near = [](std::uint64_t got, double want) {
    return static_cast<double>(got) >= want && static_cast<double>(got) <= want * 1.01;
  };
  EXPECT_PRED2(near, h.value_at_percentile(50), 50000);
  EXPECT_PRED2(near, h.value_at_percentile(90), 90000);
  EXPECT_PRED2(near, h.value_at_percentile(99), 99000);
  EXPECT_PRED2(near, h.value_at_percentile(99.9), 99900);
  EXPECT_EQ(h.value_at_percentile(100), 100000u);  // clamped to the exact max
  EXPECT_EQ(h.value_at_percentile(0), 1u);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram h;
  for (int i = 0; i < 99; ++i) h.record(10);
  h.record(200);
  EXPECT_EQ(h.value_at_percentile(50), 10u);
  EXPECT_EQ(h.value_at_percentile(99), 10u);
  EXPECT_EQ(h.value_at_percentile(99.9), 200u);
}

TEST(LatencyHistogram, EmptyMergeAndHugeValues) {
  LatencyHistogram empty;
  EXPECT_EQ(empty.count(), 0u);
  EXPECT_EQ(empty.value_at_percentile(50), 0u);
  EXPECT_EQ(empty.min(), 0u);
  EXPECT_EQ(empty.max(), 0u);

  LatencyHistogram a;
  LatencyHistogram b;
  for (int i = 0; i < 10; ++i) a.record(100);
  for (int i = 0; i < 10; ++i) b.record(1000);
  a.merge(b);
  a.merge(empty);
  EXPECT_EQ(a.count(), 20u);
  EXPECT_EQ(a.min(), 100u);
  EXPECT_EQ(a.max(), 1000u);
  EXPECT_EQ(a.value_at_percentile(50), 100u);
  EXPECT_GE(a.value_at_percentile(51), 1000u);

  LatencyHistogram huge;
  huge.record(std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(huge.max(), std::numeric_limits<std::uint64_t>::max());
  // Beyond kMaxTrackable the bucket is the last one, but the exact min/max
  // bound what a percentile reports: a lone value is reported exactly.
  EXPECT_EQ(huge.value_at_percentile(50), std::numeric_limits<std::uint64_t>::max());
  huge.record(1);
  EXPECT_EQ(huge.value_at_percentile(50), 1u);
  EXPECT_EQ(huge.value_at_percentile(100), std::numeric_limits<std::uint64_t>::max());
}

// ---------------------------------------------------------------- process memory

ProcessSelection select(std::vector<pid_t> pids, std::vector<pid_t> trees,
                        std::string comm_prefix = {}) {
  ProcessSelection s;
  s.pids = std::move(pids);
  s.trees = std::move(trees);
  s.comm_prefix = std::move(comm_prefix);
  return s;
}

TEST(ProcessMemory, TreeHoldsAChildAndSamplingSumsIt) {
  testing::ChildProcess child({"/bin/sleep", "30"});
  // The fork is there at once; wait for the exec so the child has its own RSS.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto tree = process_tree(::getpid());
  EXPECT_THAT(tree, Contains(::getpid()));
  EXPECT_THAT(tree, Contains(child.pid()));

  const auto only_child = resolve(select({}, {child.pid()}));
  ASSERT_EQ(only_child, std::vector<pid_t>{child.pid()});
  const MemorySample sample = sample_memory(only_child);
  EXPECT_EQ(sample.processes, 1u);
  EXPECT_GT(sample.rss_kib, 0u);
  ASSERT_TRUE(sample.pss_kib.has_value());  // our own child: smaps_rollup is readable
  EXPECT_LE(*sample.pss_kib, sample.rss_kib);

  EXPECT_THAT(processes_by_comm_prefix("sleep", 0), Contains(child.pid()));
  EXPECT_THAT(resolve(select({}, {}, "sleep")), Contains(child.pid()));
}

TEST(ProcessMemory, NeverCountsItselfNorTheGone) {
  EXPECT_THAT(resolve(select({::getpid()}, {})), Not(Contains(::getpid())));
  EXPECT_THAT(resolve(select({}, {::getpid()})), Not(Contains(::getpid())));
  // A pid that cannot exist (above pid_max's ceiling).
  const pid_t gone = 4'194'304 + 1;
  EXPECT_TRUE(resolve(select({gone}, {gone})).empty());
  const MemorySample sample = sample_memory(std::vector<pid_t>{gone});
  EXPECT_EQ(sample.processes, 0u);
  EXPECT_EQ(sample.rss_kib, 0u);
  EXPECT_FALSE(sample.pss_kib.has_value());
}

TEST(ProcessCpu, CountsWhatAChildBurnsAndNothingForTheGone) {
  // A shell spinning on builtins: CPU time, no children of its own.
  testing::ChildProcess child({"/bin/sh", "-c", "while :; do :; done"});
  const std::vector<pid_t> pids{child.pid()};
  const std::uint64_t before = cpu_time_us(pids);
  std::uint64_t after = before;
  // 50 ms of CPU (5 clock ticks) within 5 s, however loaded the machine.
  for (int i = 0; i < 100 && after < before + 50'000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::uint64_t now = cpu_time_us(pids);
    ASSERT_GE(now, after) << "CPU time went backwards";
    after = now;
  }
  EXPECT_GE(after - before, 50'000u) << "before " << before << " after " << after;
  EXPECT_EQ(cpu_time_us(std::vector<pid_t>{4'194'304 + 1}), 0u);
}

// ---------------------------------------------------------------- JSON

TEST(SummaryJson, HasTheContractFieldsInOrder) {
  LoadOptions o;
  o.connections = 20;
  o.crypto = Crypto::kLegacy;
  o.window = 4;
  LoadResult r;
  r.seconds = 2;
  r.messages = 1000;
  for (std::uint64_t v = 1; v <= 1000; ++v) r.latency_us.record(v);
  r.errors.timeout = 1;
  r.memory_held = MemorySample{.rss_kib = 1234, .pss_kib = 1000, .processes = 5};
  const std::string json = to_json(o, r);
  // Percentiles are the tops of their buckets (500 shares one with 501, 900
  // with 901..903), as HdrHistogram reports them: never understated.
  EXPECT_EQ(
      json.rfind("{\"connections\":20,\"encrypted\":true,\"window\":4,\"body_bytes\":64,"
                 "\"seconds\":2.000,\"messages\":1000,\"errors\":1,\"msgs_per_s\":500.0,"
                 "\"p50_us\":501,\"p90_us\":903,\"p99_us\":991,\"p999_us\":999,\"max_us\":1000,"
                 "\"gateway_rss_kib\":1234,",
                 0),
      0u)
      << json;
  EXPECT_THAT(json, HasSubstr("\"timeout\":1}"));
  EXPECT_THAT(json, HasSubstr("\"crypto\":\"legacy\""));
  EXPECT_THAT(json, Not(HasSubstr("idle")));
  EXPECT_THAT(json, HasSubstr("\"gateway_cpu_us_per_msg\":null"));  // not measured
  EXPECT_THAT(json, HasSubstr("\"bench_cpu_us_per_msg\":0.00"));
  r.gateway_cpu_us = 2500;
  r.bench_cpu_us = 1000;
  EXPECT_THAT(to_json(o, r), HasSubstr("\"gateway_cpu_us_per_msg\":2.50"));
  EXPECT_THAT(to_json(o, r), HasSubstr("\"bench_cpu_us_per_msg\":1.00"));
  // The ramp: the gateway's CPU per connection logged in, and the rate.
  EXPECT_THAT(json, HasSubstr("\"gateway_cpu_us_per_connect\":null"));
  r.connections_up = 20;
  r.ramp_s = 0.5;
  r.ramp_gateway_cpu_us = 5000;
  EXPECT_THAT(to_json(o, r), HasSubstr("\"gateway_cpu_us_per_connect\":250.0"));
  EXPECT_THAT(to_json(o, r), HasSubstr("\"connects_per_s\":40.0"));
  EXPECT_EQ(json.back(), '}');
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST(SummaryJson, EncryptedIsTrueForBothKeyExchangesAndCryptoNamesWhich) {
  LoadOptions o;
  LoadResult r;
  EXPECT_THAT(to_json(o, r), HasSubstr("\"encrypted\":false,"));
  EXPECT_THAT(to_json(o, r), HasSubstr("\"crypto\":\"clear\""));
  o.crypto = Crypto::kModern;
  EXPECT_THAT(to_json(o, r), HasSubstr("\"encrypted\":true,"));
  EXPECT_THAT(to_json(o, r), HasSubstr("\"crypto\":\"modern\""));
}

TEST(Crypto, NamesRoundTripAndModernLeavesRoomForTheTag) {
  for (const Crypto c : {Crypto::kClear, Crypto::kLegacy, Crypto::kModern}) {
    EXPECT_EQ(parse_crypto(crypto_name(c)), c);
  }
  EXPECT_EQ(parse_crypto("Modern"), std::nullopt);
  EXPECT_EQ(parse_crypto(""), std::nullopt);
  EXPECT_EQ(parse_crypto("encrypt"), std::nullopt);
  EXPECT_EQ(max_body_bytes(Crypto::kClear), 65529u);
  EXPECT_EQ(max_body_bytes(Crypto::kLegacy), 65529u);
  // | seq u32 | proto i16 | body | + the 16-byte tag fills the 65535 of the size header.
  EXPECT_EQ(max_body_bytes(Crypto::kModern), 65535u - 6 - 16);
}

TEST(SummaryJson, NoSamplesAreNullAndIdleReportsPerConnectionMemory) {
  LoadOptions o;
  o.idle = true;
  o.connections = 100;
  LoadResult r;
  r.seconds = 1;
  r.connections_held = 100;
  r.memory_baseline = MemorySample{.rss_kib = 1000, .pss_kib = 800, .processes = 5};
  r.memory_held = MemorySample{.rss_kib = 2000, .pss_kib = 1300, .processes = 5};
  const std::string json = to_json(o, r);
  EXPECT_THAT(json, HasSubstr("\"p50_us\":null"));
  EXPECT_THAT(json, HasSubstr("\"max_us\":null"));
  EXPECT_THAT(json, HasSubstr("\"idle_connections\":100"));
  EXPECT_THAT(json, HasSubstr("\"gateway_rss_baseline_kib\":1000"));
  EXPECT_THAT(json, HasSubstr("\"rss_per_connection_bytes\":10240"));  // 1000 KiB / 100
  EXPECT_THAT(json, HasSubstr("\"pss_per_connection_bytes\":5120"));

  r.memory_held.reset();
  EXPECT_THAT(to_json(o, r), HasSubstr("\"gateway_rss_kib\":null"));
  EXPECT_THAT(to_json(o, r), HasSubstr("\"rss_per_connection_bytes\":null"));
}

}  // namespace
}  // namespace gatehouse::bench
