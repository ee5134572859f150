// SpscRing in one process: the edges of the record format and of the
// producer/consumer protocol.
#include "gatehouse/shm/spsc_ring.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdlib>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "aligned_buffer.h"
#include "throwing_violations.h"

namespace gatehouse::shm {
namespace {

constexpr std::size_t kCapacity = 4096;

/// A ring in ordinary (128-byte aligned) heap memory.
class RingTest : public ::testing::Test {
 protected:
  RingTest()
      : memory_(SpscRing::region_bytes(kCapacity)),
        ring_(SpscRing::initialise(memory_.span(), kCapacity)) {}

  static std::vector<std::byte> bytes(std::size_t n, int seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((seed * 31 + int(i)) & 0xff);
    return v;
  }

  /// Reads everything published: (type, payload) pairs.
  static std::vector<std::pair<std::uint32_t, std::vector<std::byte>>> drain(RingConsumer& c) {
    std::vector<std::pair<std::uint32_t, std::vector<std::byte>>> out;
    c.read(
        [&](const Record& r) {
          out.emplace_back(r.type, std::vector(r.payload.begin(), r.payload.end()));
        },
        1'000'000);
    return out;
  }

  testing::AlignedBuffer memory_;
  SpscRing ring_;
};

TEST_F(RingTest, EmptyRingReadsNothing) {
  RingConsumer consumer(ring_);
  int calls = 0;
  EXPECT_EQ(consumer.read([&](const Record&) { ++calls; }, 10), 0u);
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(consumer.empty());
  EXPECT_EQ(ring_.occupancy(), 0u);
}

TEST_F(RingTest, RecordsAreInvisibleUntilPublished) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  const auto payload = bytes(20, 1);
  ASSERT_EQ(producer.try_write(7, payload), WriteStatus::kOk);
  ASSERT_EQ(producer.try_write(8, payload), WriteStatus::kOk);
  EXPECT_TRUE(drain(consumer).empty());
  producer.publish();
  const auto got = drain(consumer);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 7u);
  EXPECT_EQ(got[1].first, 8u);
  EXPECT_EQ(got[0].second, payload);
  EXPECT_EQ(ring_.descriptor().records_written.load(), 2u);
}

// A consumer that keeps records until someone downstream acknowledges them:
// commit(position) releases only what is before it, and a successor re-reads
// the kept records and learns how far its predecessor had got.
TEST_F(RingTest, KeptRecordsAreReReadBySuccessor) {
  RingProducer producer(ring_);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(producer.try_write(static_cast<std::uint32_t>(10 + i), bytes(5 + std::size_t(i), i)),
              WriteStatus::kOk);
  }
  producer.publish();
  std::vector<Record> seen;
  {
    RingConsumer first(ring_);
    EXPECT_EQ(first.taken_before_attach(), 0u);
    first.poll(
        [&](const Record& r) {
          if (!seen.empty()) {
            EXPECT_EQ(r.position, seen.back().end) << "positions are contiguous";
          }
          EXPECT_EQ(r.end - r.position, align_record(sizeof(RecordHeader) + r.payload.size()));
          seen.push_back(r);
          first.note_taken(r.end);
        },
        100);
    ASSERT_EQ(seen.size(), 6u);
    first.commit(seen[2].position);  // records 2.. not acknowledged yet
    EXPECT_EQ(ring_.occupancy(), seen[5].end - seen[2].position);
  }
  RingConsumer second(ring_);
  EXPECT_EQ(second.position(), seen[2].position);
  EXPECT_EQ(second.taken_before_attach(), seen[5].end);
  std::vector<std::uint32_t> types;
  second.read([&](const Record& r) { types.push_back(r.type); }, 100);
  EXPECT_EQ(types, (std::vector<std::uint32_t>{12, 13, 14, 15}));
  EXPECT_EQ(ring_.occupancy(), 0u);
}

TEST_F(RingTest, ZeroLengthRecord) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  ASSERT_EQ(producer.try_write(3, {}), WriteStatus::kOk);
  producer.publish();
  const auto got = drain(consumer);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, 3u);
  EXPECT_TRUE(got[0].second.empty());
  EXPECT_EQ(ring_.occupancy(), 0u);
}

TEST_F(RingTest, LargestRecordFitsAndOneByteMoreIsRejected) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  const std::size_t max = ring_.max_payload();
  EXPECT_EQ(max, kCapacity / 8 - sizeof(RecordHeader));
  const auto largest = bytes(max, 2);
  ASSERT_EQ(producer.try_write(1, largest), WriteStatus::kOk);
  EXPECT_EQ(producer.try_write(1, bytes(max + 1, 2)), WriteStatus::kTooLarge);
  WriteStatus status = WriteStatus::kOk;
  EXPECT_TRUE(producer.claim(1, max + 1, &status).empty());
  EXPECT_EQ(status, WriteStatus::kTooLarge);
  producer.publish();
  const auto got = drain(consumer);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].second, largest);
}

TEST_F(RingTest, FullRingRefusesWithoutBlockingAndRecoversAfterRead) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  const auto payload = bytes(56, 3);  // 64-byte records: exactly 64 fit
  int written = 0;
  while (producer.try_write(1, payload) == WriteStatus::kOk) ++written;
  EXPECT_EQ(written, int(kCapacity / 64));
  EXPECT_EQ(producer.try_write(1, payload), WriteStatus::kFull);
  EXPECT_FALSE(producer.can_write(0));
  EXPECT_GE(ring_.descriptor().full_events.load(), 2u);
  producer.publish();
  EXPECT_EQ(ring_.occupancy(), kCapacity);

  // Reading without committing frees nothing for the producer.
  EXPECT_EQ(consumer.poll([](const Record&) {}, 1), 1u);
  EXPECT_EQ(producer.try_write(1, payload), WriteStatus::kFull);
  consumer.commit();
  EXPECT_EQ(producer.try_write(1, payload), WriteStatus::kOk);
}

TEST_F(RingTest, RecordThatDoesNotFitBeforeTheEndWrapsBehindPadding) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  // 7 x 512-byte records and one of 504 leave 8 bytes before the end: the
  // next 512-byte record goes to offset 0 behind an 8-byte padding record.
  const std::size_t max = ring_.max_payload();
  for (int i = 0; i < 7; ++i) ASSERT_EQ(producer.try_write(1, bytes(max, i)), WriteStatus::kOk);
  ASSERT_EQ(producer.try_write(1, bytes(max - 8, 7)), WriteStatus::kOk);
  producer.publish();
  ASSERT_EQ(drain(consumer).size(), 8u);
  ASSERT_EQ(producer.position(), kCapacity - 8);
  const auto big = bytes(ring_.max_payload(), 9);
  ASSERT_EQ(producer.try_write(2, big), WriteStatus::kOk);
  producer.publish();
  EXPECT_EQ(producer.position(), kCapacity + align_record(8 + big.size()));
  const auto got = drain(consumer);
  ASSERT_EQ(got.size(), 1u) << "the padding record must not reach the handler";
  EXPECT_EQ(got[0].first, 2u);
  EXPECT_EQ(got[0].second, big);
  EXPECT_EQ(consumer.position(), producer.position());
}

TEST_F(RingTest, ClaimCommitWritesInPlaceAndMayShrink) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  std::span<std::byte> area = producer.claim(5, 300);
  ASSERT_EQ(area.size(), 300u);
  const auto payload = bytes(40, 4);
  std::copy(payload.begin(), payload.end(), area.begin());
  producer.commit(40);
  EXPECT_EQ(producer.position(), align_record(8 + 40));
  producer.publish();
  const auto got = drain(consumer);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, 5u);
  EXPECT_EQ(got[0].second, payload);
}

TEST_F(RingTest, AbandonedClaimIsNeverPublished) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  ASSERT_FALSE(producer.claim(5, 100).empty());
  producer.publish();
  EXPECT_TRUE(drain(consumer).empty());
  ASSERT_EQ(producer.try_write(6, bytes(10, 1)), WriteStatus::kOk);
  producer.publish();
  const auto got = drain(consumer);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, 6u);
}

TEST_F(RingTest, ClaimOnFullRingReportsFull) {
  RingProducer producer(ring_);
  while (producer.try_write(1, bytes(100, 1)) == WriteStatus::kOk) {
  }
  WriteStatus status = WriteStatus::kOk;
  EXPECT_TRUE(producer.claim(1, 100, &status).empty());
  EXPECT_EQ(status, WriteStatus::kFull);
}

TEST_F(RingTest, HandlerReturningFalseLeavesTheRecordForLater) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  for (std::uint32_t t = 1; t <= 3; ++t) ASSERT_EQ(producer.try_write(t, {}), WriteStatus::kOk);
  producer.publish();
  std::vector<std::uint32_t> seen;
  EXPECT_EQ(consumer.read(
                [&](const Record& r) {
                  if (r.type == 2) return false;
                  seen.push_back(r.type);
                  return true;
                },
                10),
            1u);
  EXPECT_EQ(seen, std::vector<std::uint32_t>{1});
  const auto rest = drain(consumer);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].first, 2u);
}

TEST_F(RingTest, ReadLimitBoundsOnePoll) {
  RingProducer producer(ring_);
  RingConsumer consumer(ring_);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(producer.try_write(1, {}), WriteStatus::kOk);
  producer.publish();
  EXPECT_EQ(consumer.read([](const Record&) {}, 4), 4u);
  EXPECT_EQ(consumer.read([](const Record&) {}, 4), 4u);
  EXPECT_EQ(consumer.read([](const Record&) {}, 4), 2u);
}

TEST_F(RingTest, NewConsumerResumesAtCommittedHead) {
  RingProducer producer(ring_);
  for (std::uint32_t t = 1; t <= 4; ++t) ASSERT_EQ(producer.try_write(t, {}), WriteStatus::kOk);
  producer.publish();
  {
    RingConsumer first(ring_);
    EXPECT_EQ(first.read([](const Record&) {}, 2), 2u);  // committed
    EXPECT_EQ(first.poll([](const Record&) {}, 1), 1u);  // read, not committed: "dies" here
  }
  RingConsumer successor(ring_);
  const auto got = drain(successor);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 3u) << "the uncommitted record is delivered again";
}

TEST_F(RingTest, NewProducerResumesAtPublishedTailDroppingUnpublished) {
  {
    RingProducer first(ring_);
    ASSERT_EQ(first.try_write(1, bytes(10, 1)), WriteStatus::kOk);
    first.publish();
    ASSERT_EQ(first.try_write(2, bytes(10, 2)), WriteStatus::kOk);  // "dies" before publish
  }
  RingProducer successor(ring_);
  ASSERT_EQ(successor.try_write(3, bytes(10, 3)), WriteStatus::kOk);
  successor.publish();
  RingConsumer consumer(ring_);
  const auto got = drain(consumer);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 1u);
  EXPECT_EQ(got[1].first, 3u);
}

TEST_F(RingTest, AttachSeesTheSameRingAndRejectsGarbage) {
  SpscRing again = SpscRing::attach(memory_.span());
  EXPECT_EQ(again.capacity(), kCapacity);
  std::vector<std::byte> garbage(8192, std::byte{0x5a});
  EXPECT_THROW(SpscRing::attach(garbage), std::runtime_error);
}

TEST_F(RingTest, AttachRefusesConstantsThatDoNotFitTheRegion) {
  RingDescriptor& d = ring_.descriptor();
  d.capacity = 512;  // a power of two below the minimum: max_payload would wrap
  d.max_payload = SpscRing::max_payload_for(512);
  EXPECT_THROW(SpscRing::attach(memory_.span()), std::runtime_error);
  d.capacity = std::uint64_t{1} << 40;  // past the region
  d.max_payload = SpscRing::max_payload_for(d.capacity);
  EXPECT_THROW(SpscRing::attach(memory_.span(), "ring/x"), std::runtime_error);
  d.capacity = kCapacity;
  d.max_payload = 1000;
  EXPECT_THROW(SpscRing::attach(memory_.span()), std::runtime_error);
}

TEST_F(RingTest, ConstantsAreKeptFromAttachWhateverTheDescriptorSaysLater) {
  const SpscRing attached = SpscRing::attach(memory_.span());
  ring_.descriptor().capacity = std::uint64_t{1} << 40;
  ring_.descriptor().max_payload = std::uint64_t{1} << 36;
  EXPECT_EQ(attached.capacity(), kCapacity);
  EXPECT_EQ(attached.max_payload(), SpscRing::max_payload_for(kCapacity));
  RingProducer producer(attached);
  EXPECT_EQ(producer.try_write(1, bytes(kCapacity, 1)), WriteStatus::kTooLarge);
}

/// The violation a consumer of `ring` reports (reading everything), or "".
std::string consumer_refusal(SpscRing ring) {
  const testing::ThrowingViolations throwing;
  try {
    RingConsumer consumer(ring);
    consumer.read([](const Record&) {}, 1000);
    return "";
  } catch (const testing::ShmViolation& e) {
    return e.what();
  }
}

TEST_F(RingTest, AConsumerRefusesCursorsAndRecordsNoProducerWrites) {
  const SpscRing ring = SpscRing::attach(memory_.span(), "ring/test");
  RingDescriptor& d = ring.descriptor();
  RingProducer producer(ring);
  ASSERT_EQ(producer.try_write(1, bytes(100, 1)), WriteStatus::kOk);
  producer.publish();
  EXPECT_EQ(consumer_refusal(ring), "");  // read and committed: head == tail == 112
  ASSERT_EQ(d.head.load(), 112u);

  d.tail.store(112 + kCapacity + 8);  // more than a ring's worth published
  EXPECT_EQ(consumer_refusal(ring),
            "ring/test: cursors head 112 and tail 4216 are not 8-byte aligned positions at most "
            "capacity 4096 apart (tail >= head)");
  d.tail.store(116);  // not on a record boundary
  EXPECT_NE(consumer_refusal(ring), "");
  d.tail.store(104);  // behind the head
  EXPECT_NE(consumer_refusal(ring), "");
  d.tail.store(112);
  d.taken.store(200);  // handled past what was published
  EXPECT_EQ(consumer_refusal(ring), "ring/test: taken 200 is past the tail 112");
  d.taken.store(0);

  // A record longer than the largest payload, whole inside the published part.
  const RecordHeader huge{static_cast<std::uint32_t>(ring.max_payload() + 8), 5};
  std::memcpy(ring.data() + 112, &huge, sizeof huge);
  d.tail.store(112 + align_record(sizeof huge + huge.length));
  EXPECT_NE(consumer_refusal(ring).find("ring/test: corrupt ring record at position 112"),
            std::string::npos);
  // A padding record that does not end the buffer.
  const RecordHeader pad{8, kPaddingType};
  std::memcpy(ring.data() + 112, &pad, sizeof pad);
  d.tail.store(112 + 16);
  EXPECT_NE(consumer_refusal(ring), "");
}

TEST_F(RingTest, AProducerDiesOnAHeadNoConsumerWrites) {
  RingDescriptor& d = ring_.descriptor();
  d.head.store(8);  // past the published tail (0)
  EXPECT_DEATH(RingProducer producer(ring_), "shared-memory violation: ring: cursors head 8");
  d.head.store(0);
  RingProducer producer(ring_);
  d.head.store(4);
  // Only re-read when the ring looks full.
  const auto big = bytes(ring_.max_payload(), 2);
  EXPECT_DEATH(
      {
        while (producer.try_write(1, big) == WriteStatus::kOk) {
        }
      },
      "shared-memory violation: ring: cursors head 4");
}

TEST(RingInitialise, RejectsBadCapacities) {
  alignas(128) static std::byte region[SpscRing::region_bytes(8192)];
  EXPECT_THROW(SpscRing::initialise(region, 3000), std::invalid_argument);
  EXPECT_THROW(SpscRing::initialise(region, 512), std::invalid_argument);
  EXPECT_THROW(SpscRing::initialise({region, 100}, 4096), std::invalid_argument);
  EXPECT_NO_THROW(SpscRing::initialise(region, 8192));
}

TEST_F(RingTest, ParkingConsumerIsWokenByPublish) {
  Doorbell doorbell = Doorbell::create();
  RingProducer producer(ring_, &doorbell);
  RingConsumer consumer(ring_);
  ASSERT_TRUE(consumer.prepare_park());
  EXPECT_FALSE(doorbell.wait(std::chrono::milliseconds(0)));
  ASSERT_EQ(producer.try_write(1, {}), WriteStatus::kOk);
  producer.publish();
  EXPECT_TRUE(doorbell.wait(std::chrono::milliseconds(0)));
  consumer.unpark();

  // Not parked: publish does not ring.
  ASSERT_EQ(producer.try_write(1, {}), WriteStatus::kOk);
  producer.publish();
  EXPECT_FALSE(doorbell.wait(std::chrono::milliseconds(0)));
  // Records waiting: parking is refused.
  EXPECT_FALSE(consumer.prepare_park());
  EXPECT_EQ(ring_.descriptor().consumer_parked.load(), 0u);
}

TEST_F(RingTest, DoorbellWakesAnAsioLoop) {
  Doorbell doorbell = Doorbell::create();
  RingProducer producer(ring_, &doorbell);
  RingConsumer consumer(ring_);
  boost::asio::io_context io;
  boost::asio::posix::stream_descriptor bell(io, ::dup(doorbell.fd()));
  std::vector<std::uint32_t> got;
  ASSERT_TRUE(consumer.prepare_park());
  bell.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                  [&](boost::system::error_code ec) {
                    ASSERT_FALSE(ec);
                    doorbell.drain();
                    consumer.unpark();
                    consumer.read([&](const Record& r) { got.push_back(r.type); }, 10);
                  });
  io.poll();
  EXPECT_TRUE(got.empty());
  ASSERT_EQ(producer.try_write(42, {}), WriteStatus::kOk);
  producer.publish();
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(got, std::vector<std::uint32_t>{42});
}

// Random interleavings of writes, claims, publishes and partial reads against
// a model queue: every record comes out once, whole and in order, across many
// wraps of a small ring.
TEST(RingModel, RandomOperationsMatchAQueue) {
  constexpr std::size_t kSmall = 1024;
  alignas(128) static std::byte region[SpscRing::region_bytes(kSmall)];
  SpscRing ring = SpscRing::initialise(region, kSmall);
  RingProducer producer(ring);
  RingConsumer consumer(ring);
  std::mt19937 rng(12345);
  std::deque<std::vector<std::byte>> published, pending;
  std::uint64_t next = 0, delivered = 0;

  for (int step = 0; step < 200'000; ++step) {
    switch (rng() % 4) {
      case 0:
      case 1: {
        std::vector<std::byte> p(rng() % (ring.max_payload() + 1));
        for (auto& b : p) b = static_cast<std::byte>(next & 0xff);
        const bool use_claim = rng() % 2 == 0;
        WriteStatus s;
        if (use_claim) {
          auto area = producer.claim(static_cast<std::uint32_t>(next & 0xffff), p.size(), &s);
          if (s == WriteStatus::kOk) {
            std::copy(p.begin(), p.end(), area.begin());
            producer.commit(p.size());
          }
        } else {
          s = producer.try_write(static_cast<std::uint32_t>(next & 0xffff), p);
        }
        ASSERT_NE(s, WriteStatus::kTooLarge);
        if (s == WriteStatus::kOk) {
          pending.push_back(std::move(p));
          ++next;
        }
        break;
      }
      case 2:
        producer.publish();
        for (auto& p : pending) published.push_back(std::move(p));
        pending.clear();
        break;
      case 3:
        consumer.read(
            [&](const Record& r) {
              ASSERT_FALSE(published.empty());
              EXPECT_EQ(r.type, delivered & 0xffff);
              EXPECT_TRUE(std::equal(r.payload.begin(), r.payload.end(), published.front().begin(),
                                     published.front().end()));
              published.pop_front();
              ++delivered;
            },
            rng() % 8);
        break;
    }
  }
  EXPECT_GT(delivered, 10'000u);
  EXPECT_GT(producer.position(), 100 * kSmall) << "the test must wrap the ring many times";
}

}  // namespace
}  // namespace gatehouse::shm
