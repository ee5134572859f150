// Single-producer single-consumer ring of variable-length records in shared
// memory. One process writes, one process reads; nothing is ever locked, so a
// process killed at any instruction leaves the ring usable by its successor.
//
// Region layout (the region is handed in by the caller, usually a Segment):
//
//   +--------------------------+ 0
//   | RingDescriptor           |  constants, then one 128-byte block per
//   |  (kDescriptorBytes)      |  writer so the two sides never share a line
//   +--------------------------+ kDescriptorBytes
//   | data: capacity bytes     |  capacity is a power of two
//   +--------------------------+
//
// Record layout. Every record starts at an 8-byte aligned offset and never
// wraps; a record that does not fit before the end of the buffer is preceded
// by a padding record that fills the rest, and goes to offset 0.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +---------------------------------------------------------------+
//   |                    payload length (u32)                       |
//   +---------------------------------------------------------------+
//   |                      record type (u32)                        |
//   +---------------------------------------------------------------+
//   |                   payload (length bytes)                     ...
//   +---------------------------------------------------------------+
//   |            0..7 bytes of padding to the next record           |
//   +---------------------------------------------------------------+
//
// Commit protocol. Cursors are byte positions that only grow (2^64 bytes is
// 58 years at 10 GB/s); the buffer index is position & (capacity - 1).
//   - The producer writes records past the published `tail` in its own time
//     and makes a whole batch visible with one release store of `tail`
//     (publish()). The consumer only ever reads [head, tail), so it can never
//     see a half-written record, and a producer killed mid-batch just loses
//     the unpublished part: its successor resumes at the published tail and
//     overwrites it. No unblock()/zeroing step is needed.
//   - The consumer reads records in [head, tail) and makes its progress
//     durable with one release store of `head` (commit()). A consumer killed
//     before committing has its successor re-read from the committed head
//     (at-least-once; callers that need exactly-once de-duplicate, e.g. on
//     the client's sequence number).
//   - A consumer that hands records on to someone who acknowledges them later
//     may keep them in the ring until then: it commits only up to the first
//     unacknowledged record (commit(position)) and notes, in `taken`, how far
//     it has handled records. Its successor re-reads [head, tail) and can
//     tell, by taken_before_attach(), which of those its predecessor had
//     handled already.
//
// Wakeups. An idle consumer parks: it raises `consumer_parked`, re-checks the
// ring, then sleeps on its Doorbell (an eventfd, so an Asio loop can wait on
// it). The producer looks at the flag once per publish(), not per record.
// Each side's store-then-load is a seq_cst pair (a Dekker handshake), so
// either the consumer sees the new tail or the producer sees the flag: no
// lost wakeup.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "gatehouse/shm/doorbell.h"

namespace gatehouse::shm {

/// Distance that keeps two writers' fields from sharing a cache line or an
/// adjacent-line prefetch pair.
inline constexpr std::size_t kFalseSharingRange = 128;
inline constexpr std::size_t kRecordAlignment = 8;

struct RecordHeader {
  std::uint32_t length;  ///< payload bytes, header and padding excluded
  std::uint32_t type;    ///< caller-defined; kPaddingType is reserved
};
static_assert(sizeof(RecordHeader) == 8);

inline constexpr std::uint32_t kPaddingType = 0xFFFF'FFFFu;
inline constexpr std::uint64_t kRingMagic = 0x474857'52494e47ull;  // "GHWRING"

constexpr std::size_t align_record(std::size_t n) noexcept {
  return (n + kRecordAlignment - 1) & ~(kRecordAlignment - 1);
}

/// Control block at the start of a ring region. Only fixed-width PODs and
/// always-lock-free atomics: it is shared between processes.
struct RingDescriptor {
  // Written once by the creator before anyone attaches.
  std::uint64_t magic;
  std::uint64_t capacity;     ///< data bytes, a power of two
  std::uint64_t max_payload;  ///< largest payload try_write/claim accept

  // Producer's block.
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> tail;  ///< published
  std::atomic<std::int32_t> producer_pid;
  std::atomic<std::uint64_t> full_events;  ///< writes refused as "full"
  std::atomic<std::uint64_t> records_written;

  // Consumer's block, written on every commit.
  alignas(kFalseSharingRange) std::atomic<std::uint64_t> head;  ///< committed
  std::atomic<std::int32_t> consumer_pid;
  std::atomic<std::int64_t> consumer_heartbeat_ns;  ///< CLOCK_MONOTONIC
  std::atomic<std::uint64_t> taken;                 ///< handled up to here (>= head when used)

  // Consumer's parking flag: written only when parking, read by the producer
  // on every publish, so it has its own block.
  alignas(kFalseSharingRange) std::atomic<std::uint32_t> consumer_parked;
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);

inline constexpr std::size_t kDescriptorBytes =
    (sizeof(RingDescriptor) + kFalseSharingRange - 1) & ~(kFalseSharingRange - 1);

/// A view of one ring region, cheap to copy. The constants (capacity, largest
/// payload) are checked once at attach and kept here: a writer that changes
/// them in the descriptor later cannot widen what this process reads.
class SpscRing {
 public:
  static constexpr std::size_t kMinCapacity = 1024;

  /// Bytes a region must have for a ring of `capacity` data bytes.
  static constexpr std::size_t region_bytes(std::size_t capacity) noexcept {
    return kDescriptorBytes + capacity;
  }
  /// Largest payload a ring of `capacity` accepts: an eighth of it, so a
  /// record plus the padding before it always fits in an empty ring with room
  /// to spare for pipelining.
  static constexpr std::size_t max_payload_for(std::size_t capacity) noexcept {
    return capacity / 8 - sizeof(RecordHeader);
  }

  /// Formats `region` as an empty ring. `capacity` must be a power of two of
  /// at least kMinCapacity and region.size() >= region_bytes(capacity).
  /// Throws std::invalid_argument otherwise.
  static SpscRing initialise(std::span<std::byte> region, std::size_t capacity,
                             std::string_view name = "ring");
  /// Validates a region formatted by initialise(); throws std::runtime_error
  /// when it is not a ring. `name` (the region's) is what violations name.
  static SpscRing attach(std::span<std::byte> region, std::string_view name = "ring");

  RingDescriptor& descriptor() const noexcept { return *descriptor_; }
  std::byte* data() const noexcept { return data_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t max_payload() const noexcept { return max_payload_; }
  const char* name() const noexcept { return name_; }

  /// Published bytes not yet committed by the consumer (a snapshot).
  std::uint64_t occupancy() const noexcept {
    return descriptor_->tail.load(std::memory_order_acquire) -
           descriptor_->head.load(std::memory_order_acquire);
  }

  /// Checks that `tail` and `head` (cursors read from the descriptor) are
  /// 8-byte aligned and at most a capacity apart, tail not behind head;
  /// anything else is a violation (violation.h) naming the ring.
  void check_cursors(std::uint64_t head, std::uint64_t tail) const;

 private:
  SpscRing(RingDescriptor* d, std::byte* data, std::string_view name);
  RingDescriptor* descriptor_;
  std::byte* data_;
  std::size_t capacity_;
  std::size_t max_payload_;
  char name_[48];  // the region's name, for violations
};

enum class WriteStatus : std::uint8_t { kOk, kFull, kTooLarge };

/// The one writer of a ring. Construct it in the producer process; it resumes
/// at the published tail (a predecessor's unpublished records are dropped).
class RingProducer {
 public:
  /// `consumer_doorbell` is rung on publish() when the consumer is parked;
  /// null when the consumer never parks (busy-spinning benchmarks).
  /// Checks the published tail and the committed head (check_cursors).
  explicit RingProducer(SpscRing ring, const Doorbell* consumer_doorbell = nullptr);

  /// Copies one record into the ring (unpublished). Never blocks.
  WriteStatus try_write(std::uint32_t type, std::span<const std::byte> payload) noexcept;

  /// Zero-copy path: reserves room for a record of up to `max_length` payload
  /// bytes and returns the payload area; `status` says whether it worked (a
  /// zero-length claim also returns an empty span). Finish with
  /// commit(length) before the next claim or publish().
  std::span<std::byte> claim(std::uint32_t type, std::size_t max_length,
                             WriteStatus* status = nullptr) noexcept;
  /// Finishes the claimed record with `length` <= the claimed max_length.
  void commit(std::size_t length) noexcept;

  /// Makes everything written since the last publish visible to the consumer
  /// and wakes it if it is parked. One release store + one flag check.
  void publish() noexcept;

  /// True when a record of `length` payload bytes fits now (refreshes the head).
  bool can_write(std::size_t length) noexcept;
  std::uint64_t position() const noexcept { return tail_; }
  std::uint64_t published_position() const noexcept { return published_; }
  SpscRing ring() const noexcept { return ring_; }

 private:
  std::byte* reserve(std::size_t length, WriteStatus* status) noexcept;
  /// Refreshes cached_head_ from the descriptor, checked (check_cursors).
  void load_head() noexcept;

  SpscRing ring_;
  const Doorbell* doorbell_;
  std::uint64_t mask_;
  std::uint64_t tail_;         // next write position (private until publish)
  std::uint64_t published_;    // last value stored to descriptor.tail
  std::uint64_t cached_head_;  // consumer's head as last seen
  std::uint64_t records_since_publish_ = 0;
  RecordHeader* claimed_ = nullptr;
};

/// What a record handler passed to RingConsumer::poll sees.
struct Record {
  std::uint32_t type;
  std::span<const std::byte> payload;
  std::uint64_t position;  ///< where the record starts in the ring's byte stream
  std::uint64_t end;       ///< where the next one starts
};

/// The one reader of a ring. Construct it in the consumer process; it resumes
/// at the committed head.
class RingConsumer {
 public:
  /// Checks the committed head and the published tail (check_cursors).
  explicit RingConsumer(SpscRing ring);

  /// Hands up to `limit` records to `handler(const Record&)` without
  /// committing. A handler returning bool may return false to leave that
  /// record unconsumed and stop (backpressure). Returns records consumed.
  template <class Handler>
  std::size_t poll(Handler&& handler, std::size_t limit);

  /// poll() then commit().
  template <class Handler>
  std::size_t read(Handler&& handler, std::size_t limit) {
    const std::size_t n = poll(handler, limit);
    if (n != 0) commit();
    return n;
  }

  /// Makes the consumer's progress durable (one release store).
  void commit() noexcept { ring_.descriptor().head.store(head_, std::memory_order_release); }
  /// Releases the records before `position` (a record's start, or position())
  /// and keeps the rest for a successor to re-read.
  void commit(std::uint64_t position) noexcept {
    ring_.descriptor().head.store(position, std::memory_order_release);
  }
  /// Notes that records before `position` were handled (see the header).
  void note_taken(std::uint64_t position) noexcept {
    ring_.descriptor().taken.store(position, std::memory_order_relaxed);
  }
  /// How far the previous consumer had handled records when this one attached.
  std::uint64_t taken_before_attach() const noexcept { return taken_before_; }

  /// True when nothing published is left to read (refreshes the tail).
  bool empty() {
    load_tail();
    return head_ == cached_tail_;
  }

  /// Liveness for whoever watches this consumer; call from the duty cycle.
  void heartbeat(std::int64_t monotonic_ns) noexcept {
    ring_.descriptor().consumer_heartbeat_ns.store(monotonic_ns, std::memory_order_relaxed);
  }

  /// Raises the parked flag; returns false (flag lowered again) when records
  /// arrived meanwhile, true when the caller may now sleep on its Doorbell.
  bool prepare_park();
  /// Lowers the parked flag after waking.
  void unpark() noexcept { ring_.descriptor().consumer_parked.store(0, std::memory_order_relaxed); }

  std::uint64_t position() const noexcept { return head_; }
  SpscRing ring() const noexcept { return ring_; }

 private:
  /// Refreshes cached_tail_ from the descriptor, checked (check_cursors).
  void load_tail(std::memory_order order = std::memory_order_acquire);
  [[noreturn]] void corrupt(std::uint64_t position, const RecordHeader& h) const;

  SpscRing ring_;
  std::uint64_t mask_;
  std::uint64_t head_;          // next read position (private until commit)
  std::uint64_t cached_tail_;   // producer's tail as last seen
  std::uint64_t taken_before_;  // descriptor.taken at attach
};

template <class Handler>
std::size_t RingConsumer::poll(Handler&& handler, std::size_t limit) {
  if (head_ == cached_tail_) {
    load_tail();
    if (head_ == cached_tail_) return 0;
  }
  std::byte* const data = ring_.data();
  std::size_t count = 0;
  while (count < limit && head_ != cached_tail_) {
    const std::uint64_t index = head_ & mask_;
    RecordHeader h;
    std::memcpy(&h, data + index, sizeof h);
    const std::uint64_t bytes = align_record(sizeof h + std::uint64_t{h.length});
    // Published records are whole by construction, no larger than the
    // largest payload, and a padding record ends the buffer; anything else is
    // memory corruption or a foreign writer, and there is no safe way to go on.
    if (bytes > cached_tail_ - head_ || index + bytes > ring_.capacity() ||
        (h.type == kPaddingType ? index + bytes != ring_.capacity()
                                : h.length > ring_.max_payload())) {
      corrupt(head_, h);
    }
    if (h.type == kPaddingType) {
      head_ += bytes;
      continue;
    }
    const Record record{h.type, {data + index + sizeof h, h.length}, head_, head_ + bytes};
    if constexpr (std::is_same_v<std::invoke_result_t<Handler&, const Record&>, bool>) {
      if (!handler(record)) break;
    } else {
      handler(record);
    }
    head_ += bytes;
    ++count;
    if (head_ == cached_tail_) load_tail();
  }
  return count;
}

}  // namespace gatehouse::shm
