#include "gatehouse/shm/spsc_ring.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <new>
#include <stdexcept>
#include <string>

#include "gatehouse/shm/violation.h"

namespace gatehouse::shm {

SpscRing::SpscRing(RingDescriptor* d, std::byte* data, std::string_view name)
    : descriptor_(d), data_(data), capacity_(d->capacity), max_payload_(d->max_payload) {
  const std::size_t n = std::min(name.size(), sizeof name_ - 1);
  std::memcpy(name_, name.data(), n);
  name_[n] = '\0';
}

SpscRing SpscRing::initialise(std::span<std::byte> region, std::size_t capacity,
                              std::string_view name) {
  if (capacity < kMinCapacity || !std::has_single_bit(capacity)) {
    throw std::invalid_argument("ring capacity must be a power of two >= " +
                                std::to_string(kMinCapacity) + ", got " + std::to_string(capacity));
  }
  if (region.size() < region_bytes(capacity)) {
    throw std::invalid_argument("ring region of " + std::to_string(region.size()) +
                                " bytes is too small for capacity " + std::to_string(capacity));
  }
  if (reinterpret_cast<std::uintptr_t>(region.data()) % kFalseSharingRange != 0) {
    throw std::invalid_argument("ring region must be 128-byte aligned");
  }
  auto* d = new (region.data()) RingDescriptor{};
  d->capacity = capacity;
  d->max_payload = max_payload_for(capacity);
  d->magic = kRingMagic;  // published to other processes by the segment's ready flag
  return SpscRing(d, region.data() + kDescriptorBytes, name);
}

SpscRing SpscRing::attach(std::span<std::byte> region, std::string_view name) {
  const std::string what(name);
  if (region.size() < kDescriptorBytes) throw std::runtime_error(what + ": ring region too small");
  auto* d = std::launder(reinterpret_cast<RingDescriptor*>(region.data()));
  if (d->magic != kRingMagic) throw std::runtime_error(what + ": region does not hold a ring");
  // Read once: what is checked is what the view keeps (the constructor copies
  // the same descriptor words, which only a foreign writer would change).
  const std::uint64_t capacity = d->capacity;
  const std::uint64_t max_payload = d->max_payload;
  if (capacity < kMinCapacity || !std::has_single_bit(capacity) ||
      capacity > region.size() - kDescriptorBytes || max_payload != max_payload_for(capacity)) {
    throw std::runtime_error(what + ": ring descriptor (capacity " + std::to_string(capacity) +
                             ", max_payload " + std::to_string(max_payload) +
                             ") is inconsistent with its region of " +
                             std::to_string(region.size()) + " bytes");
  }
  SpscRing ring(d, region.data() + kDescriptorBytes, name);
  if (ring.capacity_ != capacity || ring.max_payload_ != max_payload) {
    throw std::runtime_error(what + ": ring descriptor changed while attaching");
  }
  return ring;
}

void SpscRing::check_cursors(std::uint64_t head, std::uint64_t tail) const {
  if (head % kRecordAlignment != 0 || tail % kRecordAlignment != 0 || tail - head > capacity_) {
    violation(std::string(name_) + ": cursors head " + std::to_string(head) + " and tail " +
              std::to_string(tail) + " are not 8-byte aligned positions at most capacity " +
              std::to_string(capacity_) + " apart (tail >= head)");
  }
}

// ---------------------------------------------------------------- producer

RingProducer::RingProducer(SpscRing ring, const Doorbell* consumer_doorbell)
    : ring_(ring),
      doorbell_(consumer_doorbell),
      mask_(ring.capacity() - 1),
      tail_(ring.descriptor().tail.load(std::memory_order_acquire)),
      published_(tail_),
      cached_head_(ring.descriptor().head.load(std::memory_order_acquire)) {
  ring_.check_cursors(cached_head_, tail_);
  ring.descriptor().producer_pid.store(::getpid(), std::memory_order_relaxed);
}

// The consumer's head is never past what we published nor more than a
// capacity behind our tail; a head that is would make us overwrite records
// it has not read.
void RingProducer::load_head() noexcept {
  cached_head_ = ring_.descriptor().head.load(std::memory_order_acquire);
  ring_.check_cursors(cached_head_, published_);
}

std::byte* RingProducer::reserve(std::size_t length, WriteStatus* status) noexcept {
  RingDescriptor& d = ring_.descriptor();
  if (length > ring_.max_payload()) {
    if (status != nullptr) *status = WriteStatus::kTooLarge;
    return nullptr;
  }
  const std::uint64_t capacity = ring_.capacity();
  const std::uint64_t bytes = align_record(sizeof(RecordHeader) + length);
  const std::uint64_t index = tail_ & mask_;
  const std::uint64_t to_end = capacity - index;
  const std::uint64_t padding = bytes > to_end ? to_end : 0;
  const std::uint64_t needed = padding + bytes;

  if (tail_ + needed - cached_head_ > capacity) {
    load_head();
    if (tail_ + needed - cached_head_ > capacity) {
      d.full_events.fetch_add(1, std::memory_order_relaxed);
      if (status != nullptr) *status = WriteStatus::kFull;
      return nullptr;
    }
  }
  std::byte* const data = ring_.data();
  if (padding != 0) {
    const RecordHeader pad{static_cast<std::uint32_t>(padding - sizeof(RecordHeader)),
                           kPaddingType};
    std::memcpy(data + index, &pad, sizeof pad);
    tail_ += padding;
  }
  if (status != nullptr) *status = WriteStatus::kOk;
  return data + (tail_ & mask_);
}

WriteStatus RingProducer::try_write(std::uint32_t type,
                                    std::span<const std::byte> payload) noexcept {
  WriteStatus status;
  std::byte* const at = reserve(payload.size(), &status);
  if (at == nullptr) return status;
  const RecordHeader h{static_cast<std::uint32_t>(payload.size()), type};
  std::memcpy(at, &h, sizeof h);
  if (!payload.empty()) std::memcpy(at + sizeof h, payload.data(), payload.size());
  tail_ += align_record(sizeof h + payload.size());
  ++records_since_publish_;
  return WriteStatus::kOk;
}

std::span<std::byte> RingProducer::claim(std::uint32_t type, std::size_t max_length,
                                         WriteStatus* status) noexcept {
  std::byte* const at = reserve(max_length, status);
  if (at == nullptr) return {};
  claimed_ = reinterpret_cast<RecordHeader*>(at);
  claimed_->type = type;
  claimed_->length = static_cast<std::uint32_t>(max_length);
  return {at + sizeof(RecordHeader), max_length};
}

void RingProducer::commit(std::size_t length) noexcept {
  if (claimed_ == nullptr) return;
  if (length < claimed_->length) claimed_->length = static_cast<std::uint32_t>(length);
  tail_ += align_record(sizeof(RecordHeader) + claimed_->length);
  claimed_ = nullptr;
  ++records_since_publish_;
}

bool RingProducer::can_write(std::size_t length) noexcept {
  if (length > ring_.max_payload()) return false;
  const std::uint64_t bytes = align_record(sizeof(RecordHeader) + length);
  const std::uint64_t to_end = ring_.capacity() - (tail_ & mask_);
  const std::uint64_t needed = (bytes > to_end ? to_end : 0) + bytes;
  if (tail_ + needed - cached_head_ <= ring_.capacity()) return true;
  load_head();
  return tail_ + needed - cached_head_ <= ring_.capacity();
}

void RingProducer::publish() noexcept {
  claimed_ = nullptr;  // an uncommitted claim is abandoned, never published
  if (tail_ == published_) return;
  RingDescriptor& d = ring_.descriptor();
  d.records_written.store(
      d.records_written.load(std::memory_order_relaxed) + records_since_publish_,
      std::memory_order_relaxed);
  records_since_publish_ = 0;
  // seq_cst store then seq_cst load, paired with prepare_park()'s: either the
  // consumer sees this tail before it sleeps or we see its flag (Dekker). One
  // locked instruction per batch, not per record.
  d.tail.store(tail_, std::memory_order_seq_cst);
  published_ = tail_;
  if (doorbell_ != nullptr && d.consumer_parked.load(std::memory_order_seq_cst) != 0) {
    doorbell_->ring();
  }
}

// ---------------------------------------------------------------- consumer

RingConsumer::RingConsumer(SpscRing ring)
    : ring_(ring),
      mask_(ring.capacity() - 1),
      head_(ring.descriptor().head.load(std::memory_order_acquire)),
      cached_tail_(head_),
      taken_before_(ring.descriptor().taken.load(std::memory_order_relaxed)) {
  load_tail();
  // `taken` is at most the tail: records handled were published (below the
  // head it is merely unused: only a consumer that keeps records sets it).
  if (taken_before_ > cached_tail_) {
    violation(std::string(ring_.name()) + ": taken " + std::to_string(taken_before_) +
              " is past the tail " + std::to_string(cached_tail_));
  }
  ring.descriptor().consumer_pid.store(::getpid(), std::memory_order_relaxed);
}

void RingConsumer::load_tail(std::memory_order order) {
  cached_tail_ = ring_.descriptor().tail.load(order);
  ring_.check_cursors(head_, cached_tail_);
}

bool RingConsumer::prepare_park() {
  RingDescriptor& d = ring_.descriptor();
  d.consumer_parked.store(1, std::memory_order_seq_cst);
  load_tail(std::memory_order_seq_cst);
  if (head_ != cached_tail_) {
    d.consumer_parked.store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void RingConsumer::corrupt(std::uint64_t position, const RecordHeader& h) const {
  violation(std::string(ring_.name()) + ": corrupt ring record at position " +
            std::to_string(position) + " (length " + std::to_string(h.length) + ", type " +
            std::to_string(h.type) + ", tail " + std::to_string(cached_tail_) + ", capacity " +
            std::to_string(ring_.capacity()) + ", max payload " +
            std::to_string(ring_.max_payload()) + ")");
}

}  // namespace gatehouse::shm
