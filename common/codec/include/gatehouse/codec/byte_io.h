// Big-endian readers and writers for the gonet2 wire formats
// (shared/protocol.md): u16/u32/i16/i32 and `string = | len u16 | bytes |`.
//
// ByteReader never throws and never reads past its span: the first short read
// sets ok() to false and every later read returns zero/empty, so a parser
// reads all its fields and checks ok() once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse {

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}

  std::uint16_t u16() noexcept { return static_cast<std::uint16_t>(take(2)); }
  std::uint32_t u32() noexcept { return static_cast<std::uint32_t>(take(4)); }
  std::int16_t i16() noexcept { return static_cast<std::int16_t>(u16()); }
  std::int32_t i32() noexcept { return static_cast<std::int32_t>(u32()); }
  /// `| len u16 | bytes |`; a view into the input.
  std::string_view string() noexcept {
    const std::size_t n = u16();
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return {};
    }
    const auto* p = reinterpret_cast<const char*>(bytes_.data() + pos_);
    pos_ += n;
    return {p, n};
  }

  bool ok() const noexcept { return ok_; }
  std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
  std::span<const std::byte> rest() const noexcept { return bytes_.subspan(pos_); }

 private:
  std::uint64_t take(std::size_t n) noexcept {
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i)
      v = (v << 8) | std::to_integer<std::uint64_t>(bytes_[pos_ + i]);
    pos_ += n;
    return v;
  }

  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

/// Appends big-endian fields to a byte vector.
class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::byte>& out) noexcept : out_(out) {}

  ByteWriter& u16(std::uint16_t v) { return put(v, 2); }
  ByteWriter& u32(std::uint32_t v) { return put(v, 4); }
  ByteWriter& i16(std::int16_t v) { return u16(static_cast<std::uint16_t>(v)); }
  ByteWriter& i32(std::int32_t v) { return u32(static_cast<std::uint32_t>(v)); }
  /// `| len u16 | bytes |`; the caller keeps strings under 65536 bytes.
  ByteWriter& string(std::string_view s) {
    u16(static_cast<std::uint16_t>(s.size()));
    return bytes({reinterpret_cast<const std::byte*>(s.data()), s.size()});
  }
  ByteWriter& bytes(std::span<const std::byte> b) {
    out_.insert(out_.end(), b.begin(), b.end());
    return *this;
  }

 private:
  ByteWriter& put(std::uint32_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
    return *this;
  }
  std::vector<std::byte>& out_;
};

/// Stores big-endian values at a fixed place (frame headers).
inline void store_u16(std::byte* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::byte>(v >> 8);
  p[1] = static_cast<std::byte>(v & 0xff);
}
inline std::uint16_t load_u16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) |
                                    std::to_integer<unsigned>(p[1]));
}
inline void store_i16(std::byte* p, std::int16_t v) noexcept {
  store_u16(p, static_cast<std::uint16_t>(v));
}

}  // namespace gatehouse
