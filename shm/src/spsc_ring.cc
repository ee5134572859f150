#include "gatehouse/shm/spsc_ring.h"

#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

namespace gatehouse::shm {

SpscRing SpscRing::initialise(std::span<std::byte> region, std::size_t capacity) {
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
  return SpscRing(d, region.data() + kDescriptorBytes);
}

SpscRing SpscRing::attach(std::span<std::byte> region) {
  if (region.size() < kDescriptorBytes) throw std::runtime_error("ring region too small");
  auto* d = std::launder(reinterpret_cast<RingDescriptor*>(region.data()));
  if (d->magic != kRingMagic) throw std::runtime_error("region does not hold a ring");
  if (!std::has_single_bit(d->capacity) || region.size() < region_bytes(d->capacity) ||
      d->max_payload != max_payload_for(d->capacity)) {
    throw std::runtime_error("ring descriptor is inconsistent with its region");
  }
  return SpscRing(d, region.data() + kDescriptorBytes);
}

// ---------------------------------------------------------------- producer

RingProducer::RingProducer(SpscRing ring, const Doorbell* consumer_doorbell) noexcept
    : ring_(ring),
      doorbell_(consumer_doorbell),
      mask_(ring.capacity() - 1),
      tail_(ring.descriptor().tail.load(std::memory_order_acquire)),
      published_(tail_),
      cached_head_(ring.descriptor().head.load(std::memory_order_acquire)) {
  ring.descriptor().producer_pid.store(::getpid(), std::memory_order_relaxed);
}

std::byte* RingProducer::reserve(std::size_t length, WriteStatus* status) noexcept {
  RingDescriptor& d = ring_.descriptor();
  if (length > d.max_payload) {
    if (status != nullptr) *status = WriteStatus::kTooLarge;
    return nullptr;
  }
  const std::uint64_t capacity = d.capacity;
  const std::uint64_t bytes = align_record(sizeof(RecordHeader) + length);
  const std::uint64_t index = tail_ & mask_;
  const std::uint64_t to_end = capacity - index;
  const std::uint64_t padding = bytes > to_end ? to_end : 0;
  const std::uint64_t needed = padding + bytes;

  if (tail_ + needed - cached_head_ > capacity) {
    cached_head_ = d.head.load(std::memory_order_acquire);
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
  cached_head_ = ring_.descriptor().head.load(std::memory_order_acquire);
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

RingConsumer::RingConsumer(SpscRing ring) noexcept
    : ring_(ring),
      mask_(ring.capacity() - 1),
      head_(ring.descriptor().head.load(std::memory_order_acquire)),
      cached_tail_(head_),
      taken_before_(ring.descriptor().taken.load(std::memory_order_relaxed)) {
  ring.descriptor().consumer_pid.store(::getpid(), std::memory_order_relaxed);
}

bool RingConsumer::prepare_park() noexcept {
  RingDescriptor& d = ring_.descriptor();
  d.consumer_parked.store(1, std::memory_order_seq_cst);
  cached_tail_ = d.tail.load(std::memory_order_seq_cst);
  if (head_ != cached_tail_) {
    d.consumer_parked.store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void RingConsumer::corrupt(std::uint64_t position, const RecordHeader& h) const {
  std::fprintf(stderr,
               "gatehouse: corrupt ring record at position %llu (length %u, type %u, "
               "head %llu, tail %llu, capacity %llu): aborting\n",
               static_cast<unsigned long long>(position), h.length, h.type,
               static_cast<unsigned long long>(position),
               static_cast<unsigned long long>(cached_tail_),
               static_cast<unsigned long long>(ring_.capacity()));
  std::abort();
}

}  // namespace gatehouse::shm
