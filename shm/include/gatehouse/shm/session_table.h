// SessionTable: fixed slots in shared memory addressed by a 64-bit
// ConnectionId = (generation, slot). Every new tenant of a slot gets the next
// generation, so an id that outlived its connection (a late ring record, a push for
// a session that closed) never reaches the slot's next tenant.
//
// Region layout:
//
//   +---------------------------+ 0
//   | TableDescriptor (128 B)   |  magic, slot count, slot size
//   +---------------------------+ 128
//   | SlotHeader[slots] (8 B)   |  dense, so scans over every slot (a
//   |                           |  restarted process looking for live ones)
//   |                           |  touch 8 bytes per slot, not a page
//   +---------------------------+ page aligned
//   | T[slots]                  |  slot_bytes each, 64-byte aligned so two
//   |                           |  sessions never share a cache line
//   +---------------------------+
//
// Only the descriptor and headers are written when the table is formatted,
// and allocate() never writes a value: a slot's T is zero in a fresh segment
// and otherwise holds what its last tenant left, and the process that owns
// the value initialises it for the new tenant (the worker, on kConnOpened).
// So a value's pages are touched only by the processes that use it, and only
// as slots come into use: memory follows connections, not the table size.
//
// Ownership: one process allocates and releases (it keeps the free list in
// its own heap and rebuilds it from the slot states when it attaches);
// any process may look a live id up and use the slot's T according to the
// protocol that handed it the id.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

namespace gatehouse::shm {

/// | generation u32 | slot u32 |. Generation 0 is never live, so the value 0
/// means "no connection".
class ConnectionId {
 public:
  constexpr ConnectionId() = default;
  constexpr explicit ConnectionId(std::uint64_t value) : value_(value) {}
  constexpr ConnectionId(std::uint32_t generation, std::uint32_t slot)
      : value_((std::uint64_t{generation} << 32) | slot) {}

  constexpr std::uint64_t value() const { return value_; }
  constexpr std::uint32_t slot() const { return static_cast<std::uint32_t>(value_); }
  constexpr std::uint32_t generation() const { return static_cast<std::uint32_t>(value_ >> 32); }
  constexpr explicit operator bool() const { return generation() != 0; }
  friend constexpr bool operator==(ConnectionId, ConnectionId) = default;

 private:
  std::uint64_t value_ = 0;
};

struct SlotHeader {
  std::atomic<std::uint32_t> generation;  ///< of the current or last tenant
  std::atomic<std::uint32_t> live;        ///< 1 while allocated
};

/// The untyped table; SessionTable<T> below is what callers use.
class SlotTable {
 public:
  static std::size_t slot_bytes(std::size_t value_bytes) noexcept;
  static std::size_t region_bytes(std::uint32_t slots, std::size_t value_bytes) noexcept;
  /// Formats `region` as `slots` free slots. Throws std::invalid_argument.
  static SlotTable initialise(std::span<std::byte> region, std::uint32_t slots,
                              std::size_t value_bytes);
  /// Validates a formatted region holding values of `value_bytes`; throws
  /// std::runtime_error on a mismatch (another build's session layout).
  static SlotTable attach(std::span<std::byte> region, std::size_t value_bytes);
  /// Attaches whatever the value size, for a process that only allocates and
  /// releases ids and never touches the values (the frontend).
  static SlotTable attach_untyped(std::span<std::byte> region);

  /// Allocator side (one process). The free list is rebuilt from the slots on
  /// the first call, so a restarted allocator carries on.
  std::optional<ConnectionId> allocate(std::uint32_t partition = 0);
  /// Allocator side: splits the slots into `count` contiguous ranges of
  /// partition_slots(count) (the last may be shorter), each with its own free
  /// list, so that allocate(p) hands out slots of range p only. A process
  /// that owns one range's values then touches only its own pages. Call
  /// before the first allocate().
  void set_partitions(std::uint32_t count);
  /// Slots per range when the table is split `count` ways.
  static std::uint32_t partition_slots(std::uint32_t slots, std::uint32_t count) noexcept {
    return (slots + count - 1) / count;
  }
  /// Frees the slot if `id` is its live tenant; false for a stale id.
  bool release(ConnectionId id);

  /// The value of live tenant `id`, or null when the id is stale or free.
  std::byte* find(ConnectionId id) const noexcept;
  std::uint32_t slots() const noexcept { return slots_; }
  std::uint32_t live_count() const noexcept;
  /// The live id of `slot`, or an empty id when the slot is free.
  ConnectionId live_id(std::uint32_t slot) const noexcept;

 private:
  /// `base` is the descriptor; the headers follow it and the values start on
  /// the page after them.
  SlotTable(std::byte* base, std::uint32_t slots, std::size_t slot_bytes);
  SlotHeader& header(std::uint32_t slot) const noexcept;
  std::byte* value(std::uint32_t slot) const noexcept;
  void rebuild_free_list();

  SlotHeader* headers_;
  std::byte* values_;
  std::uint32_t slots_;
  std::size_t slot_bytes_;
  struct FreeList {  // FIFO ring of one range's free slots: oldest first
    std::vector<std::uint32_t> ring;
    std::size_t head = 0;
    std::size_t count = 0;
  };
  bool free_list_built_ = false;
  std::uint32_t partitions_ = 1;
  std::uint32_t partition_slots_ = 0;  // slots per range
  std::vector<FreeList> free_;
};

/// A table of T (trivially copyable: it is shared between processes and
/// survives the process that wrote it).
template <class T>
class SessionTable {
  static_assert(std::is_trivially_copyable_v<T>, "session state must be a POD");
  static_assert(alignof(T) <= 64, "session state alignment must be <= 64");

 public:
  static std::size_t region_bytes(std::uint32_t slots) noexcept {
    return SlotTable::region_bytes(slots, sizeof(T));
  }
  static SessionTable initialise(std::span<std::byte> region, std::uint32_t slots) {
    return SessionTable(SlotTable::initialise(region, slots, sizeof(T)));
  }
  static SessionTable attach(std::span<std::byte> region) {
    return SessionTable(SlotTable::attach(region, sizeof(T)));
  }

  /// A fresh slot; its value is left as the last tenant left it (zero in
  /// a fresh table): the owner initialises it.
  std::optional<ConnectionId> allocate(std::uint32_t partition = 0) {
    return table_.allocate(partition);
  }
  void set_partitions(std::uint32_t count) { table_.set_partitions(count); }
  bool release(ConnectionId id) { return table_.release(id); }
  T* find(ConnectionId id) const noexcept { return reinterpret_cast<T*>(table_.find(id)); }
  std::uint32_t slots() const noexcept { return table_.slots(); }
  ConnectionId live_id(std::uint32_t slot) const noexcept { return table_.live_id(slot); }
  std::uint32_t live_count() const noexcept { return table_.live_count(); }

 private:
  explicit SessionTable(SlotTable t) : table_(std::move(t)) {}
  SlotTable table_;
};

}  // namespace gatehouse::shm
