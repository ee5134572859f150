// The ring between two threads: the same protocol as between processes, in
// a form ThreadSanitizer can check (it cannot see across processes). Built
// and run in every configuration; the TSan build (GATEHOUSE_SANITIZE=thread)
// is the one that matters.
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "aligned_buffer.h"

#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/spsc_ring.h"
#include "ring_test_records.h"

namespace gatehouse::shm {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr std::uint64_t kScale = 10;  // TSan runs ~10x slower
#else
constexpr std::uint64_t kScale = 1;
#endif

void run(std::size_t capacity, testing::RecordShape shape, bool park, std::uint64_t count) {
  count /= kScale;
  gatehouse::testing::AlignedBuffer memory(SpscRing::region_bytes(capacity));
  SpscRing ring = SpscRing::initialise(memory.span(), capacity);
  Doorbell doorbell = Doorbell::create();
  std::string error;
  std::uint64_t lost_wakeups = 0;

  std::thread consumer_thread([&] {
    RingConsumer consumer(ring);
    BackoffIdler idler({.spin = std::chrono::microseconds(5),
                        .yields = 2,
                        .park_timeout = std::chrono::seconds(2)});
    std::uint64_t expected = 0;
    while (expected < count && error.empty()) {
      const std::size_t n = consumer.read(
          [&](const Record& r) {
            if (error.empty()) error = testing::check_record(r, expected, shape);
            ++expected;
          },
          64);
      if (!park) {
        if (n == 0) std::this_thread::yield();
        continue;
      }
      idler.idle(n, [&](std::chrono::nanoseconds timeout) {
        if (!consumer.prepare_park()) return;
        if (!doorbell.wait(timeout)) ++lost_wakeups;
        consumer.unpark();
      });
    }
  });

  RingProducer producer(ring, park ? &doorbell : nullptr);
  for (std::uint64_t seq = 0; seq < count;) {
    if (testing::write_record(producer, seq, shape) == WriteStatus::kOk) {
      ++seq;
      if (seq % 16 == 0) producer.publish();
      if (park && seq % 4096 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    } else {
      producer.publish();
      std::this_thread::yield();
    }
  }
  producer.publish();
  consumer_thread.join();
  EXPECT_EQ(error, "");
  EXPECT_EQ(lost_wakeups, 0u);
  EXPECT_EQ(ring.occupancy(), 0u);
}

TEST(RingThreads, SmallRecordsBusySpin) {
  run(1 << 16, {64}, false, 3'000'000);
}
// 8 records fill the ring: every record that does not fit is a hand-over
// between the threads (a yield each way), whose cost is the scheduler's, not
// the ring's: on a CPU shared with busy processes a yield waits for their
// time slices, ~ms. 60,000 records wrap the ring 7,500 times, yet stay well
// within the test's time on a fully loaded machine (300,000 did not).
TEST(RingThreads, LargeRecordsWrapOften) {
  run(1 << 14, {(1 << 14) / 8 - 8}, false, 60'000);
}
TEST(RingThreads, ParkingConsumer) {
  run(1 << 16, {64}, true, 1'000'000);
}

}  // namespace
}  // namespace gatehouse::shm
