// A sequence lock over a plain struct in shared memory with one writer
// process and any number of readers: the writer makes `generation` odd,
// stores the words, makes it even again; a reader copies the words and keeps
// the copy when `generation` was even and did not move meanwhile. Every word
// is stored and loaded as an atomic (relaxed, ordered by the fences), so a
// reader never tears one and nothing waits on a writer that died.
// Generation 0: never published (the struct is as the segment was made).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace gatehouse {

namespace detail {
template <class T>
constexpr std::size_t words_in() noexcept {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % 8 == 0 && alignof(T) == 8,
                "a seqlocked struct is whole 8-byte words");
  return sizeof(T) / 8;
}
}  // namespace detail

/// The one writer: makes `from` the published value of `to`.
template <class T>
void seqlock_publish(std::atomic<std::uint64_t>& generation, T& to, const T& from) noexcept {
  const std::uint64_t g = generation.load(std::memory_order_relaxed);
  generation.store(g + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const auto* in = reinterpret_cast<const std::uint64_t*>(&from);
  auto* out = reinterpret_cast<std::uint64_t*>(&to);
  for (std::size_t i = 0; i < detail::words_in<T>(); ++i) {
    std::atomic_ref<std::uint64_t>(out[i]).store(in[i], std::memory_order_relaxed);
  }
  generation.store(g + 2, std::memory_order_release);
}

/// A reader: `out` = the value as last published whole (retried while the
/// writer writes; false if it never stood still, or was never published).
template <class T>
bool seqlock_read(const std::atomic<std::uint64_t>& generation, T& from, T& out) noexcept {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::uint64_t before = generation.load(std::memory_order_acquire);
    if (before == 0) return false;
    if (before % 2 != 0) continue;
    auto* in = reinterpret_cast<std::uint64_t*>(&from);
    auto* copy = reinterpret_cast<std::uint64_t*>(&out);
    for (std::size_t i = 0; i < detail::words_in<T>(); ++i) {
      copy[i] = std::atomic_ref<std::uint64_t>(in[i]).load(std::memory_order_relaxed);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (generation.load(std::memory_order_relaxed) == before) return true;
  }
  return false;
}

}  // namespace gatehouse
