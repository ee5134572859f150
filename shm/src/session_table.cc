#include "gatehouse/shm/session_table.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

namespace gatehouse::shm {
namespace {

constexpr std::uint64_t kTableMagic = 0x4748'5354'4142'4c45ull;  // "GHSTABLE"
constexpr std::size_t kSlotAlignment = 64;  // a cache line: two values never share one
constexpr std::size_t kPage = 4096;

struct TableDescriptor {
  std::uint64_t magic;
  std::uint32_t slots;
  std::uint32_t reserved;
  std::uint64_t slot_bytes;
  std::uint64_t value_bytes;
};
constexpr std::size_t kDescriptorBytes = 128;
static_assert(sizeof(TableDescriptor) <= kDescriptorBytes);
static_assert(sizeof(SlotHeader) == 8);

/// Headers, from the end of the descriptor to a page boundary, so the values
/// start on a page of their own.
std::size_t headers_bytes(std::uint32_t slots) noexcept {
  const std::size_t end = kDescriptorBytes + std::size_t{slots} * sizeof(SlotHeader);
  return (end + kPage - 1) / kPage * kPage - kDescriptorBytes;
}

}  // namespace

std::size_t SlotTable::slot_bytes(std::size_t value_bytes) noexcept {
  return (value_bytes + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment;
}

std::size_t SlotTable::region_bytes(std::uint32_t slots, std::size_t value_bytes) noexcept {
  return kDescriptorBytes + headers_bytes(slots) + std::size_t{slots} * slot_bytes(value_bytes);
}

SlotTable SlotTable::initialise(std::span<std::byte> region, std::uint32_t slots,
                                std::size_t value_bytes) {
  if (slots == 0) throw std::invalid_argument("session table needs at least one slot");
  if (region.size() < region_bytes(slots, value_bytes)) {
    throw std::invalid_argument("session table region too small for " + std::to_string(slots) +
                                " slots");
  }
  const std::size_t sb = slot_bytes(value_bytes);
  // Only the descriptor and the headers are written: the values of a fresh
  // segment are zero pages already, and each tenant's owner initialises its
  // value, so a table sized for 1M connections costs memory only for the
  // slots in use.
  std::memset(region.data(), 0, kDescriptorBytes + headers_bytes(slots));
  new (region.data()) TableDescriptor{kTableMagic, slots, 0, sb, value_bytes};
  for (std::uint32_t i = 0; i < slots; ++i) {
    new (region.data() + kDescriptorBytes + std::size_t{i} * sizeof(SlotHeader)) SlotHeader{};
  }
  return SlotTable(region.data(), slots, sb);
}

SlotTable SlotTable::attach(std::span<std::byte> region, std::size_t value_bytes) {
  if (region.size() < kDescriptorBytes) throw std::runtime_error("session table region too small");
  TableDescriptor d;
  std::memcpy(&d, region.data(), sizeof d);
  if (d.magic != kTableMagic) throw std::runtime_error("region does not hold a session table");
  if (d.slots == 0) throw std::runtime_error("session table has no slot");
  if (d.value_bytes != value_bytes || d.slot_bytes != slot_bytes(value_bytes)) {
    throw std::runtime_error("session table holds " + std::to_string(d.value_bytes) +
                             "-byte sessions; this binary's are " + std::to_string(value_bytes));
  }
  if (region.size() < region_bytes(d.slots, value_bytes)) {
    throw std::runtime_error("session table region shorter than its slot count");
  }
  return SlotTable(region.data(), d.slots, d.slot_bytes);
}

SlotTable SlotTable::attach_untyped(std::span<std::byte> region) {
  if (region.size() < kDescriptorBytes) throw std::runtime_error("session table region too small");
  TableDescriptor d;
  std::memcpy(&d, region.data(), sizeof d);
  // Bounded before slot_bytes() rounds it up (which a huge value would wrap).
  if (d.value_bytes > region.size()) {
    throw std::runtime_error("session table claims " + std::to_string(d.value_bytes) +
                             "-byte values in a region of " + std::to_string(region.size()));
  }
  return attach(region, d.value_bytes);
}

SlotTable::SlotTable(std::byte* base, std::uint32_t slots, std::size_t slot_bytes)
    : headers_(std::launder(reinterpret_cast<SlotHeader*>(base + kDescriptorBytes))),
      values_(base + kDescriptorBytes + headers_bytes(slots)),
      slots_(slots),
      slot_bytes_(slot_bytes) {}

SlotHeader& SlotTable::header(std::uint32_t slot) const noexcept {
  return headers_[slot];
}

std::byte* SlotTable::value(std::uint32_t slot) const noexcept {
  return values_ + std::size_t{slot} * slot_bytes_;
}

void SlotTable::set_partitions(std::uint32_t count) {
  if (count == 0 || count > slots_) throw std::invalid_argument("bad partition count");
  partitions_ = count;
  free_list_built_ = false;
}

void SlotTable::rebuild_free_list() {
  partition_slots_ = partition_slots(slots_, partitions_);
  free_.assign(partitions_, FreeList{});
  for (std::uint32_t p = 0; p < partitions_; ++p) {
    const std::uint32_t first = p * partition_slots_;
    const std::uint32_t end = std::min(slots_, first + partition_slots_);
    FreeList& list = free_[p];
    list.ring.assign(end - first, 0);
    for (std::uint32_t i = first; i < end; ++i) {
      if (header(i).live.load(std::memory_order_acquire) == 0) list.ring[list.count++] = i;
    }
  }
  free_list_built_ = true;
}

std::optional<ConnectionId> SlotTable::allocate(std::uint32_t partition) {
  if (!free_list_built_) rebuild_free_list();
  if (partition >= partitions_) return std::nullopt;
  FreeList& list = free_[partition];
  if (list.count == 0) return std::nullopt;
  const std::uint32_t slot = list.ring[list.head];
  list.head = (list.head + 1) % list.ring.size();
  --list.count;

  SlotHeader& h = header(slot);
  std::uint32_t generation = h.generation.load(std::memory_order_relaxed) + 1;
  if (generation == 0) generation = 1;  // 0 is never live
  h.generation.store(generation, std::memory_order_relaxed);
  h.live.store(1, std::memory_order_release);
  return ConnectionId(generation, slot);
}

bool SlotTable::release(ConnectionId id) {
  if (!free_list_built_) rebuild_free_list();
  if (id.slot() >= slots_ || find(id) == nullptr) return false;
  header(id.slot()).live.store(0, std::memory_order_release);
  FreeList& list = free_[id.slot() / partition_slots_];
  list.ring[(list.head + list.count) % list.ring.size()] = id.slot();
  ++list.count;
  return true;
}

std::byte* SlotTable::find(ConnectionId id) const noexcept {
  if (!id || id.slot() >= slots_) return nullptr;
  SlotHeader& h = header(id.slot());
  if (h.live.load(std::memory_order_acquire) == 0 ||
      h.generation.load(std::memory_order_acquire) != id.generation()) {
    return nullptr;
  }
  return value(id.slot());
}

ConnectionId SlotTable::live_id(std::uint32_t slot) const noexcept {
  if (slot >= slots_) return {};
  SlotHeader& h = header(slot);
  if (h.live.load(std::memory_order_acquire) == 0) return {};
  return ConnectionId(h.generation.load(std::memory_order_acquire), slot);
}

std::uint32_t SlotTable::live_count() const noexcept {
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < slots_; ++i) {
    n += header(i).live.load(std::memory_order_relaxed) != 0 ? 1 : 0;  // a flag, whatever is there
  }
  return n;
}

}  // namespace gatehouse::shm
