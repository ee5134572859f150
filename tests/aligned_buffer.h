// AlignedBuffer: page-aligned heap memory for tests that put shm structures
// (rings, session tables) in ordinary memory.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

namespace gatehouse::testing {

class AlignedBuffer {
 public:
  explicit AlignedBuffer(std::size_t bytes)
      : bytes_(bytes),
        memory_(static_cast<std::byte*>(std::aligned_alloc(kAlignment, rounded(bytes)))) {
    std::memset(memory_.get(), 0, rounded(bytes));
  }
  std::span<std::byte> span() const { return {memory_.get(), bytes_}; }
  std::byte* data() const { return memory_.get(); }

 private:
  static constexpr std::size_t kAlignment = 4096;
  static std::size_t rounded(std::size_t n) {
    return (n + kAlignment - 1) / kAlignment * kAlignment;
  }
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::size_t bytes_;
  std::unique_ptr<std::byte, Free> memory_;
};

}  // namespace gatehouse::testing
