// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the
// header an L4 load balancer puts in front of a connection's bytes to say
// whom it relays, parsed from the first bytes of a connection. Pure: no
// sockets, no allocation; it looks only at the bytes it is given, so the
// caller feeds it what it has read so far and reads on while it needs more.
//
//   v1: "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n" (TCP6 with IPv6 text,
//       or "PROXY UNKNOWN ...\r\n"); at most 107 bytes with its CRLF.
//   v2: | signature \r\n\r\n\0\r\nQUIT\n (12) | ver 2, cmd u8 | fam, proto u8 |
//       | length u16 BE | addresses | TLVs | (length counts what follows it;
//       TLVs are checked to fit in it and skipped).
//
// What the caller does with a header (trust, which versions a listener
// takes) is not decided here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace gatehouse::net::proxy {

/// A v1 line's bytes at most, "\r\n" included.
inline constexpr std::size_t kV1MaxBytes = 107;
/// A v2 header's fixed part (signature, version and command, family, length).
inline constexpr std::size_t kV2FixedBytes = 16;
/// The largest v2 header: its length field is 16 bits.
inline constexpr std::size_t kV2MaxBytes = kV2FixedBytes + 0xFFFF;
inline constexpr std::array<std::uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                              0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum class Status : std::uint8_t {
  kNeedMore,  ///< a header's beginning (or nothing yet): read on
  kNotProxy,  ///< the bytes are no PROXY header (they diverge from both signatures)
  kHeader,    ///< a whole, well-formed header: Result::header
  kError,     ///< a header that is malformed: Result::error
};

enum class Error : std::uint8_t {
  kNone,
  kV1TooLong,   ///< no CRLF within 107 bytes
  kV1Syntax,    ///< not "PROXY" SP proto SP src SP dst SP sport SP dport CRLF, or a
                ///< control or non-ASCII byte in the line
  kV1Protocol,  ///< protocol not TCP4, TCP6 or UNKNOWN
  kV1Address,   ///< an address that is not one of its protocol's family
  kV1Port,      ///< a port that is not 0..65535 in decimal without leading zeros
  kV2Version,   ///< the version nibble is not 2
  kV2Command,   ///< the command nibble is neither LOCAL (0) nor PROXY (1)
  kV2Family,    ///< a family/transport byte the specification does not define
  kV2Length,    ///< the length is shorter than the family's addresses
  kV2Tlv,       ///< a TLV that does not fit in the length
};

struct Header {
  std::uint8_t version = 0;  ///< 1 or 2
  /// Whether the header names the client: false for v2 LOCAL (the proxy's
  /// own connection, a health check), v1 UNKNOWN and v2 UNSPEC or UNIX
  /// addresses; the connection's real peer stands then.
  bool has_address = false;
  bool v6 = false;                             ///< TCP6 / AF_INET6 (else IPv4, given IPv4-mapped)
  std::array<std::uint8_t, 16> source{};       ///< IPv6, or IPv4-mapped IPv6
  std::array<std::uint8_t, 16> destination{};  ///< same
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  std::size_t bytes = 0;  ///< the header's size on the wire: what to strip
};

struct Result {
  Status status = Status::kNeedMore;
  Error error = Error::kNone;  ///< kError's reason
  Header header;               ///< kHeader's header
};

/// Parses the header at the start of `bytes` (everything read from the
/// connection so far). Reads no byte past `bytes`; kNeedMore says the bytes
/// are a header's beginning (or too few to tell).
Result parse(std::span<const std::byte> bytes) noexcept;

/// "v1_too_long", "v2_tlv", ...: for logs.
std::string_view to_string(Error error) noexcept;

}  // namespace gatehouse::net::proxy
