// GrpcMessageReader: gRPC's length-prefixed messages out of a stream's DATA
// (grpc/doc/PROTOCOL-HTTP2: | compressed u8 | length u32 BE | message |),
// whole messages delivered where they lie in a chunk, split ones gathered.
// The bytes come from a game service; its fuzz target (tests/fuzz) feeds it
// any bytes in any split. Header-only: the fuzz target needs nothing else.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace gatehouse::bridge {

class GrpcMessageReader {
 public:
  static constexpr std::size_t kPrefixBytes = 5;
  enum class Error {
    kNone,
    kCompressed,  ///< the compressed flag is set (no encoding was offered)
    kTooLarge,    ///< a length over the bound
  };

  struct Result {
    Error error = Error::kNone;
    std::size_t used = 0;  ///< bytes taken (all, unless on_message stopped it)
  };
  /// Calls `on_message(std::span<const std::byte>)` for each whole message
  /// in order; it returns false to stop after that message (its call ended,
  /// or holds its reads: the bytes after it are not taken). Stops at the
  /// first error (the call must end: the stream is unusable).
  template <class OnMessage>
  Result feed(const std::byte* data, std::size_t size, std::uint32_t max_bytes,
              OnMessage&& on_message) {
    const std::size_t given = size;
    const auto stop = [&](Error e) { return Result{e, given - size}; };
    while (size != 0) {
      if (in_.empty() && size >= kPrefixBytes) {
        if (const Error e = check(data, max_bytes); e != Error::kNone) return stop(e);
        const std::size_t length = length_of(data);
        if (size >= kPrefixBytes + length) {
          // Whole in this chunk (the common case): delivered from it.
          data += kPrefixBytes + length;
          size -= kPrefixBytes + length;
          if (!on_message(std::span(data - length, length))) return stop(Error::kNone);
          continue;
        }
      }
      // Split across chunks: gathered, first the prefix, then the rest.
      if (in_.size() < kPrefixBytes) {
        const std::size_t n = std::min(size, kPrefixBytes - in_.size());
        in_.append(reinterpret_cast<const char*>(data), n);
        data += n;
        size -= n;
        if (in_.size() < kPrefixBytes) return stop(Error::kNone);
        if (const Error e = check(gathered(), max_bytes); e != Error::kNone) return stop(e);
      }
      const std::size_t need = kPrefixBytes + length_of(gathered());
      const std::size_t n = std::min(size, need - in_.size());
      in_.append(reinterpret_cast<const char*>(data), n);
      data += n;
      size -= n;
      if (in_.size() < need) return stop(Error::kNone);
      std::string whole;
      whole.swap(in_);
      const auto* bytes = reinterpret_cast<const std::byte*>(whole.data());
      if (!on_message(std::span(bytes + kPrefixBytes, whole.size() - kPrefixBytes))) {
        return stop(Error::kNone);
      }
    }
    return stop(Error::kNone);
  }

  /// Part of a message is waiting for the rest.
  bool partial() const noexcept { return !in_.empty(); }
  void clear() noexcept { std::string().swap(in_); }

 private:
  static std::size_t length_of(const std::byte* prefix) noexcept {
    const auto b = [prefix](int i) {
      return std::size_t{std::to_integer<std::uint8_t>(prefix[i])};
    };
    return (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4);
  }
  static Error check(const std::byte* prefix, std::uint32_t max_bytes) noexcept {
    if (std::to_integer<std::uint8_t>(prefix[0]) != 0) return Error::kCompressed;
    if (length_of(prefix) > max_bytes) return Error::kTooLarge;
    return Error::kNone;
  }
  const std::byte* gathered() const noexcept {
    return reinterpret_cast<const std::byte*>(in_.data());
  }

  std::string in_;
};

}  // namespace gatehouse::bridge
