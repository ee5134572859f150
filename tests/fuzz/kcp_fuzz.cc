// Fuzz target: datagrams as anyone on the internet could send them to a KCP
// connection (common/kcp), interleaved with the owner's own calls. The input
// is a script:
//
//   | options u8 | op u8 | operand ... | op u8 | ... |
//   op % 4 == 0: a datagram:  | size u16 (little-endian) | bytes |
//   op % 4 == 1: send:        | size u16 | (that many pattern bytes) |
//   op % 4 == 2: time passes: | ms u16 |, then update() if check() says so
//   op % 4 == 3: receive:     | size u16 |
//
// Nothing may crash, read out of bounds or loop; every datagram the
// connection sends fits the mtu and is well formed; input() refuses every
// datagram validate_datagram() refuses, for the same reason; what it
// buffers stays within its bounds (send buffer, send window, receive
// window); send() and receive() account for every byte.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "gatehouse/kcp/connection.h"
#include "gatehouse/kcp/segment.h"

namespace kcp = gatehouse::kcp;

namespace {

constexpr std::uint32_t kConv = 0x04030201;

class Script {
 public:
  Script(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool done() const { return at_ >= size_; }
  std::uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
  std::uint16_t u16() {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | u8() << 8);
  }
  std::span<const std::byte> take(std::size_t n) {
    n = std::min(n, size_ - std::min(at_, size_));
    const auto out = std::span(reinterpret_cast<const std::byte*>(data_) + at_, n);
    at_ += n;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

}  // namespace

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Script script(data, size);
  const std::uint8_t choice = script.u8();
  kcp::Options options;
  if ((choice & 1U) != 0) {  // small everything, so the bounds are reached quickly
    options.send_window = 2;
    options.receive_window = 3;
    options.mtu = 60;
    options.send_buffer_bytes = 500;
    options.dead_link = 3;
  }
  options.nodelay = (choice & 2U) == 0;
  options.fast_resend = (choice >> 2) & 3U;

  kcp::Connection conn(kConv, options, [&](std::span<const std::byte> d) {
    if (d.size() > options.mtu) __builtin_trap();
    if (kcp::validate_datagram(d, kConv) != kcp::InputStatus::kAccepted) __builtin_trap();
    (void)kcp::is_session_opener(d);
  });

  // Made once: a fresh 64 KiB pair per run costs more than the run under ASan.
  static const std::vector<std::byte> pattern = [] {
    std::vector<std::byte> p(0xFFFF);
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::byte>(i * 7);
    return p;
  }();
  static std::vector<std::byte> buffer(0xFFFF);
  kcp::Millis now = 1000;

  while (!script.done()) {
    switch (script.u8() % 4) {
      case 0: {
        const auto datagram = script.take(script.u16());
        (void)kcp::peek_conv(datagram);
        (void)kcp::is_session_opener(datagram);
        const auto structure = kcp::validate_datagram(datagram, kConv);
        const auto status = conn.input(datagram, now);
        // Input refuses at least what the structure check refuses.
        if (structure != kcp::InputStatus::kAccepted && status != structure) __builtin_trap();
        break;
      }
      case 1: {
        const std::size_t n = script.u16();
        const std::size_t before = conn.unacknowledged_bytes();
        const auto result = conn.send(std::span(pattern).first(n));
        if (result == kcp::Connection::SendStatus::kQueued &&
            conn.unacknowledged_bytes() != before + n) {
          __builtin_trap();
        }
        break;
      }
      case 2: {
        now += script.u16();
        if (static_cast<std::int32_t>(conn.check(now) - now) <= 0) conn.update(now);
        break;
      }
      default: {
        const std::size_t want = std::min<std::size_t>(script.u16(), buffer.size());
        const std::size_t before = conn.readable();
        const std::size_t got = conn.receive(std::span(buffer).first(want));
        // Reading frees receive-window room, so in-order segments waiting in
        // the receive buffer may move up: readable() can grow back, never
        // end below what was left.
        if (got > want || got > before || conn.readable() < before - got) __builtin_trap();
        break;
      }
    }
    if (conn.in_flight() > options.send_window) __builtin_trap();
    if (conn.unacknowledged_bytes() > options.send_buffer_bytes) __builtin_trap();
    if (conn.readable() > options.receive_window * kcp::kMaxSegmentPayload) __builtin_trap();
  }
  return 0;
}
