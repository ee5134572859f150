// A sequence lock over two copies of a plain struct in shared memory, with
// one writer process and any number of readers.
//
// The generation is even when no publish is running, and 2 x the publishes
// so far; the current copy is copies[generation / 2 % 2]. A publish makes the
// generation odd, writes the other copy, then makes it even again, so the
// copy a reader takes is rewritten only by the publish after next: the read
// is whole if the generation has not gone past that publish's start when it
// is done. A writer killed in the middle of a publish leaves the generation
// odd and the current copy untouched: readers, and the writer's successor,
// go on reading the last value published whole (a single copy would be torn
// for good).
//
// The copies are read and written a word at a time with atomics (no fences:
// GCC's TSan has none): the reader's acquire loads keep its second look at
// the generation after them, the writer's release stores keep its odd
// generation before them. A read that overlaps a publish is discarded, never
// a data race. Generation 0: never published (copies[0] is as the segment
// made it).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace gatehouse {

template <class T>
struct Seqlocked {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % 8 == 0 && alignof(T) == 8,
                "a seqlocked struct is whole 8-byte words");
  static constexpr std::size_t kWords = sizeof(T) / 8;

  std::atomic<std::uint64_t> generation;
  T copies[2];

  /// The one writer: makes `value` the published one.
  void publish(const T& value) noexcept {
    const std::uint64_t g = generation.load(std::memory_order_relaxed) & ~std::uint64_t{1};
    generation.store(g + 1, std::memory_order_relaxed);
    const auto* from = reinterpret_cast<const std::uint64_t*>(&value);
    auto* to = reinterpret_cast<std::uint64_t*>(&copies[(g / 2 + 1) % 2]);
    for (std::size_t i = 0; i < kWords; ++i) {
      std::atomic_ref<std::uint64_t>(to[i]).store(from[i], std::memory_order_release);
    }
    generation.store(g + 2, std::memory_order_release);
  }

  /// A reader: `out` = the value as last published whole (copies[0] if never
  /// published). False if `attempts` reads in a row overlapped publishes.
  bool read(T& out, std::uint32_t attempts = 100) const noexcept {
    for (std::uint32_t attempt = 0; attempt < attempts; ++attempt) {
      const std::uint64_t seen = generation.load(std::memory_order_acquire) & ~std::uint64_t{1};
      const auto* from = reinterpret_cast<const std::uint64_t*>(&copies[seen / 2 % 2]);
      auto* to = reinterpret_cast<std::uint64_t*>(&out);
      for (std::size_t i = 0; i < kWords; ++i) {
        to[i] = std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(from[i]))
                    .load(std::memory_order_acquire);
      }
      // A difference, not seen + 2: a generation near 2^64 (a corrupt one)
      // would make the sum wrap and the read never succeed.
      if (generation.load(std::memory_order_relaxed) - seen <= 2) return true;
    }
    return false;
  }

  bool published() const noexcept { return generation.load(std::memory_order_acquire) != 0; }
};

}  // namespace gatehouse
