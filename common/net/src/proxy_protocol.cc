#include "gatehouse/net/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace gatehouse::net::proxy {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
// The longest address text of a v1 line (a full IPv6 one with an IPv4 tail
// is 45), and a port's digits.
constexpr std::size_t kMaxAddressText = 45;
constexpr std::size_t kMaxPortDigits = 5;

Result fail(Error error) {
  Result r;
  r.status = Status::kError;
  r.error = error;
  return r;
}

std::uint8_t at(std::span<const std::byte> bytes, std::size_t i) {
  return static_cast<std::uint8_t>(bytes[i]);
}

/// Whether `bytes` (as many as there are, up to the prefix's size) begin
/// like `prefix`.
bool starts_like(std::span<const std::byte> bytes, std::span<const std::uint8_t> prefix) {
  const std::size_t n = std::min(bytes.size(), prefix.size());
  return std::memcmp(bytes.data(), prefix.data(), n) == 0;
}

void map_v4(const std::uint8_t* v4, std::array<std::uint8_t, 16>& out) {
  out = {};
  out[10] = 0xFF;
  out[11] = 0xFF;
  std::memcpy(out.data() + 12, v4, 4);
}

/// A v1 address of the line's family into `out` (IPv4-mapped for TCP4).
bool v1_address(std::string_view text, bool v6, std::array<std::uint8_t, 16>& out) {
  if (text.empty() || text.size() > kMaxAddressText) return false;
  char terminated[kMaxAddressText + 1] = {};
  std::memcpy(terminated, text.data(), text.size());
  if (v6) return ::inet_pton(AF_INET6, terminated, out.data()) == 1;
  std::uint8_t v4[4];
  if (::inet_pton(AF_INET, terminated, v4) != 1) return false;
  map_v4(v4, out);
  return true;
}

/// 0..65535 in decimal, without a sign or leading zeros.
bool v1_port(std::string_view text, std::uint16_t& out) {
  if (text.empty() || text.size() > kMaxPortDigits || (text.size() > 1 && text[0] == '0')) {
    return false;
  }
  std::uint32_t value = 0;
  for (const char ch : text) {
    if (ch < '0' || ch > '9') return false;
    value = value * 10 + static_cast<std::uint32_t>(ch - '0');
  }
  if (value > 0xFFFF) return false;
  out = static_cast<std::uint16_t>(value);
  return true;
}

/// Splits off the text up to the next space (or the end): false when the
/// field is empty, which a double space or a trailing space makes.
bool next_field(std::string_view& rest, std::string_view& field) {
  const std::size_t space = rest.find(' ');
  field = rest.substr(0, space);
  rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  return !field.empty() && (space == std::string_view::npos || !rest.empty());
}

Result parse_v1(std::span<const std::byte> bytes) {
  // The line ends at the first LF, which must follow a CR; every byte
  // before the CR is printable ASCII. A byte that breaks this fails at once,
  // without waiting for the rest of the line.
  const std::size_t limit = std::min(bytes.size(), kV1MaxBytes);
  std::size_t end = 0;  // the CR's index
  bool complete = false;
  for (std::size_t i = 0; i < limit; ++i) {
    const std::uint8_t ch = at(bytes, i);
    if (ch == '\r') {
      if (i + 1 == bytes.size()) break;  // its LF is still to come
      if (i + 1 >= kV1MaxBytes) return fail(Error::kV1TooLong);
      if (at(bytes, i + 1) != '\n') return fail(Error::kV1Syntax);
      end = i;
      complete = true;
      break;
    }
    if (ch < 0x20 || ch > 0x7E) return fail(Error::kV1Syntax);
  }
  if (!complete) {
    return bytes.size() >= kV1MaxBytes ? fail(Error::kV1TooLong) : Result{};
  }
  const std::string_view line(reinterpret_cast<const char*>(bytes.data()), end);
  std::string_view rest = line.substr(kV1Prefix.size());
  Result r;
  r.header.version = 1;
  r.header.bytes = end + 2;
  const std::string_view protocol = rest.substr(0, rest.find(' '));
  if (protocol == "UNKNOWN") {
    // The rest of the line, whatever it says, is to be ignored.
    r.status = Status::kHeader;
    return r;
  }
  std::string_view field;
  if (!next_field(rest, field)) return fail(Error::kV1Syntax);
  if (field != "TCP4" && field != "TCP6") return fail(Error::kV1Protocol);
  Header& h = r.header;
  h.has_address = true;
  h.v6 = field == "TCP6";
  std::string_view source, destination, source_port, destination_port;
  if (!next_field(rest, source) || !next_field(rest, destination) ||
      !next_field(rest, source_port) || !next_field(rest, destination_port) || !rest.empty()) {
    return fail(Error::kV1Syntax);
  }
  if (!v1_address(source, h.v6, h.source) || !v1_address(destination, h.v6, h.destination)) {
    return fail(Error::kV1Address);
  }
  if (!v1_port(source_port, h.source_port) || !v1_port(destination_port, h.destination_port)) {
    return fail(Error::kV1Port);
  }
  r.status = Status::kHeader;
  return r;
}

// v2's family and transport byte: the values the specification defines.
constexpr std::uint8_t kUnspec = 0x00;
constexpr std::uint8_t kTcp4 = 0x11, kUdp4 = 0x12;
constexpr std::uint8_t kTcp6 = 0x21, kUdp6 = 0x22;
constexpr std::uint8_t kUnixStream = 0x31, kUnixDgram = 0x32;
constexpr std::size_t kInetBytes = 12;      // 2 x 4 address bytes, 2 x 2 port bytes
constexpr std::size_t kInet6Bytes = 36;     // 2 x 16, 2 x 2
constexpr std::size_t kUnixBytes = 216;     // 2 x 108 path bytes
constexpr std::size_t kTlvHeaderBytes = 3;  // type u8, length u16 BE

Result parse_v2(std::span<const std::byte> bytes) {
  const std::uint8_t version_command = at(bytes, 12);
  if ((version_command >> 4) != 2) return fail(Error::kV2Version);
  const std::uint8_t command = version_command & 0x0F;
  if (command > 1) return fail(Error::kV2Command);
  const std::uint8_t family = at(bytes, 13);
  const std::size_t length = std::size_t{at(bytes, 14)} << 8 | at(bytes, 15);
  std::size_t addresses = 0;
  if (command == 1) {  // PROXY (LOCAL ignores the family)
    switch (family) {
      case kUnspec:
        addresses = 0;
        break;
      case kTcp4:
      case kUdp4:
        addresses = kInetBytes;
        break;
      case kTcp6:
      case kUdp6:
        addresses = kInet6Bytes;
        break;
      case kUnixStream:
      case kUnixDgram:
        addresses = kUnixBytes;
        break;
      default:
        return fail(Error::kV2Family);
    }
    if (length < addresses) return fail(Error::kV2Length);
  }
  const std::size_t total = kV2FixedBytes + length;
  if (bytes.size() < total) return Result{};
  Result r;
  Header& h = r.header;
  h.version = 2;
  h.bytes = total;
  r.status = Status::kHeader;
  if (command == 0) return r;  // LOCAL: the block is discarded, TLVs and all
  const std::byte* const a = bytes.data() + kV2FixedBytes;
  const auto port = [](const std::byte* p) {
    return static_cast<std::uint16_t>(static_cast<std::uint8_t>(p[0]) << 8 |
                                      static_cast<std::uint8_t>(p[1]));
  };
  if (addresses == kInetBytes) {
    h.has_address = true;
    map_v4(reinterpret_cast<const std::uint8_t*>(a), h.source);
    map_v4(reinterpret_cast<const std::uint8_t*>(a + 4), h.destination);
    h.source_port = port(a + 8);
    h.destination_port = port(a + 10);
  } else if (addresses == kInet6Bytes) {
    h.has_address = true;
    h.v6 = true;
    std::memcpy(h.source.data(), a, 16);
    std::memcpy(h.destination.data(), a + 16, 16);
    h.source_port = port(a + 32);
    h.destination_port = port(a + 34);
  }
  // TLVs fill the rest of the length exactly; they are skipped.
  std::size_t offset = kV2FixedBytes + addresses;
  while (offset < total) {
    if (total - offset < kTlvHeaderBytes) return fail(Error::kV2Tlv);
    const std::size_t value = std::size_t{at(bytes, offset + 1)} << 8 | at(bytes, offset + 2);
    if (total - offset - kTlvHeaderBytes < value) return fail(Error::kV2Tlv);
    offset += kTlvHeaderBytes + value;
  }
  return r;
}

}  // namespace

Result parse(std::span<const std::byte> bytes) noexcept {
  if (bytes.empty()) return Result{};
  const auto v1 =
      std::span(reinterpret_cast<const std::uint8_t*>(kV1Prefix.data()), kV1Prefix.size());
  if (starts_like(bytes, kV2Signature)) {
    return bytes.size() < kV2FixedBytes ? Result{} : parse_v2(bytes);
  }
  if (starts_like(bytes, v1)) {
    return bytes.size() <= kV1Prefix.size() ? Result{} : parse_v1(bytes);
  }
  Result r;
  r.status = Status::kNotProxy;
  return r;
}

std::string_view to_string(Error error) noexcept {
  switch (error) {
    case Error::kNone:
      return "none";
    case Error::kV1TooLong:
      return "v1_too_long";
    case Error::kV1Syntax:
      return "v1_syntax";
    case Error::kV1Protocol:
      return "v1_protocol";
    case Error::kV1Address:
      return "v1_address";
    case Error::kV1Port:
      return "v1_port";
    case Error::kV2Version:
      return "v2_version";
    case Error::kV2Command:
      return "v2_command";
    case Error::kV2Family:
      return "v2_family";
    case Error::kV2Length:
      return "v2_length";
    case Error::kV2Tlv:
      return "v2_tlv";
  }
  return "unknown";
}

}  // namespace gatehouse::net::proxy
