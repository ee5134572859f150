// KCP's wire format (docs/kcp.md): a datagram is one or more segments back
// to back, each a 24-byte little-endian header and `len` payload bytes.
//
//    0               4       5       6               8
//   +---------------+-------+-------+---------------+
//   |   conv u32    | cmd u8| frg u8|    wnd u16    |
//   +---------------+-------+-------+---------------+
//   |    ts u32     |    sn u32     |    una u32    |
//   +---------------+---------------+---------------+
//   |    len u32    |  payload (len bytes) ...
//   +---------------+---------------
//
//   conv  the conversation id, chosen by the client (kcp-go: random)
//   cmd   81 push (data), 82 ack, 83 window ask, 84 window tell
//   frg   fragments that follow (message mode); 0 in stream mode
//   wnd   the sender's free receive window, in segments
//   ts    push: the sender's clock at transmission; ack: the ts it acks
//   sn    push: the segment's number; ack: the number it acks
//   una   every segment below this number has arrived (cumulative ack)
//
// Everything here reads untrusted bytes: it never throws and never reads out
// of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace gatehouse::kcp {

inline constexpr std::size_t kHeaderBytes = 24;
/// The largest datagram kcp-go sends (its mtuLimit), so the largest payload
/// one segment may carry; a longer segment is refused as malformed.
inline constexpr std::size_t kMaxDatagramBytes = 1500;
inline constexpr std::size_t kMaxSegmentPayload = kMaxDatagramBytes - kHeaderBytes;

enum class Command : std::uint8_t {
  kPush = 81,
  kAck = 82,
  kWindowAsk = 83,
  kWindowTell = 84,
};

struct SegmentHeader {
  std::uint32_t conv = 0;
  Command cmd = Command::kPush;
  std::uint8_t frg = 0;
  std::uint16_t wnd = 0;
  std::uint32_t ts = 0;
  std::uint32_t sn = 0;
  std::uint32_t una = 0;
  std::uint32_t len = 0;
};

/// Why a datagram was refused. Structural problems refuse the whole datagram
/// before any of it takes effect; so do the claims a correct peer never makes
/// (acknowledging what was never sent).
enum class InputStatus : std::uint8_t {
  kAccepted,
  kTruncated,         ///< fewer bytes than a header (at the start or after a segment)
  kWrongConv,         ///< a segment of another conversation
  kUnknownCommand,    ///< cmd not 81..84
  kLengthBeyondData,  ///< len runs past the end of the datagram
  kPayloadTooLarge,   ///< len > kMaxSegmentPayload
  kFragmented,        ///< frg != 0: message mode, which a stream never sends
  kPayloadOnControl,  ///< an ack or window command that carries bytes
  kAckBeyondSent,     ///< an ack of a segment number not sent yet
  kUnaBeyondSent,     ///< una past the next segment number to send
};
std::string_view name_of(InputStatus status) noexcept;

/// Encodes a header into exactly kHeaderBytes bytes.
void encode_header(const SegmentHeader& header, std::span<std::byte, kHeaderBytes> out) noexcept;
/// Decodes the header at the start of `bytes`; nullopt when shorter than a
/// header. Takes the fields as they are (cmd unchecked, len not bounded).
std::optional<SegmentHeader> decode_header(std::span<const std::byte> bytes) noexcept;

/// The conv of a datagram (its first four bytes), for demultiplexing by
/// (address, conv); nullopt when it is too short to hold a segment.
std::optional<std::uint32_t> peek_conv(std::span<const std::byte> datagram) noexcept;

/// Checks a datagram's structure: every segment complete, of `conv`, a known
/// command, stream mode (frg 0), a bounded payload, none on control
/// segments. Does not look at sn/una (that needs a connection's state).
InputStatus validate_datagram(std::span<const std::byte> datagram, std::uint32_t conv) noexcept;

/// Whether a datagram may open a session: it is well formed and its first
/// segment is what a new kcp-go client sends first, a push with data, sn 0
/// and una 0 (it has received nothing). kcp-go sends nothing before the
/// application writes, and its first flush leads with sn 0 (a retransmission
/// of it too), so a real client always gets through; a datagram from the
/// middle of an old conversation (after a listener dropped its session) or
/// random bytes do not. Anyone can still forge an opener: this filters junk,
/// the listener bounds sessions per address and in all.
bool is_session_opener(std::span<const std::byte> datagram) noexcept;

}  // namespace gatehouse::kcp
