// The PROXY protocol parser against the specification's examples and its
// edges: every header byte by byte (kNeedMore until the last), the limits of
// v1's line and v2's length, and each malformation's reason.
#include "gatehouse/net/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gatehouse::net::proxy {
namespace {

using namespace std::string_literals;

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

Result parse_text(const std::string& s) {
  return parse(as_bytes(s));
}

std::array<std::uint8_t, 16> mapped(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                    std::uint8_t d) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, a, b, c, d};
}

const std::string kSignature = "\r\n\r\n\0\r\nQUIT\n"s;

/// A v2 header: signature, version/command, family, length, then `body`.
std::string v2(std::uint8_t version_command, std::uint8_t family, const std::string& body,
               int length = -1) {
  const std::size_t n = length < 0 ? body.size() : static_cast<std::size_t>(length);
  std::string out = kSignature;
  out += static_cast<char>(version_command);
  out += static_cast<char>(family);
  out += static_cast<char>(n >> 8);
  out += static_cast<char>(n & 0xFF);
  return out + body;
}

std::string tcp4_body(const std::string& tlvs = "") {
  // 192.0.2.1:51000 -> 10.0.0.5:4000
  return "\xC0\x00\x02\x01"s + "\x0A\x00\x00\x05"s + "\xC7\x38"s + "\x0F\xA0"s + tlvs;
}

/// Every proper prefix of `header` needs more; the whole is `expected`.
void expect_needs_more_until_whole(const std::string& header) {
  for (std::size_t n = 0; n < header.size(); ++n) {
    EXPECT_EQ(parse_text(header.substr(0, n)).status, Status::kNeedMore) << n << " bytes";
  }
}

TEST(ProxyV1, Tcp4WithTheBytesThatFollow) {
  const std::string header = "PROXY TCP4 192.0.2.1 10.0.0.5 51000 4000\r\n";
  expect_needs_more_until_whole(header);
  const Result r = parse_text(header + "\x00\x05hello"s);
  ASSERT_EQ(r.status, Status::kHeader) << to_string(r.error);
  EXPECT_EQ(r.header.version, 1);
  EXPECT_TRUE(r.header.has_address);
  EXPECT_FALSE(r.header.v6);
  EXPECT_EQ(r.header.source, mapped(192, 0, 2, 1));
  EXPECT_EQ(r.header.destination, mapped(10, 0, 0, 5));
  EXPECT_EQ(r.header.source_port, 51000);
  EXPECT_EQ(r.header.destination_port, 4000);
  EXPECT_EQ(r.header.bytes, header.size()) << "the frame after it is not the header's";
}

TEST(ProxyV1, Tcp6) {
  const Result r = parse_text("PROXY TCP6 2001:db8::7 ::1 65535 0\r\n");
  ASSERT_EQ(r.status, Status::kHeader) << to_string(r.error);
  EXPECT_TRUE(r.header.v6);
  const std::array<std::uint8_t, 16> source = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                               0,    0,    0,    0,    0, 0, 0, 7};
  EXPECT_EQ(r.header.source, source);
  EXPECT_EQ(r.header.source_port, 65535);
  EXPECT_EQ(r.header.destination_port, 0);
}

TEST(ProxyV1, UnknownKeepsTheRealPeer) {
  for (const std::string line : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN whatever it says 1 2\r\n"}) {
    const Result r = parse_text(line);
    ASSERT_EQ(r.status, Status::kHeader) << line;
    EXPECT_FALSE(r.header.has_address);
    EXPECT_EQ(r.header.bytes, line.size());
  }
}

TEST(ProxyV1, TheLongestLineIs107Bytes) {
  // The specification's worst case: two full IPv6 addresses, 5-digit ports.
  const std::string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string longest = "PROXY UNKNOWN " + full + " " + full + " 65535 65535\r\n";
  ASSERT_EQ(longest.size(), kV1MaxBytes);
  EXPECT_EQ(parse_text(longest).status, Status::kHeader);
  const std::string tcp6 = "PROXY TCP6 " + full + " " + full + " 65535 65535\r\n";
  EXPECT_EQ(parse_text(tcp6).status, Status::kHeader);
  // One byte more: too long, decided at 107 bytes without a CRLF.
  const std::string over = "PROXY UNKNOWN " + full + " " + full + " 65535 655355\r\n";
  EXPECT_EQ(parse_text(over).error, Error::kV1TooLong);
  EXPECT_EQ(parse_text(over.substr(0, kV1MaxBytes)).error, Error::kV1TooLong);
  EXPECT_EQ(parse_text(over.substr(0, kV1MaxBytes - 1)).status, Status::kNeedMore);
  EXPECT_EQ(parse_text("PROXY " + std::string(200, 'A')).error, Error::kV1TooLong);
}

TEST(ProxyV1, MalformedLinesSayWhy) {
  const std::pair<std::string, Error> cases[] = {
      {"PROXY TCP4 192.0.2.1 10.0.0.5 51000 4000\n", Error::kV1Syntax},     // LF without CR
      {"PROXY TCP4 192.0.2.1 10.0.0.5 51000 4000\rX", Error::kV1Syntax},    // CR without LF
      {"PROXY TCP4  192.0.2.1 10.0.0.5 51000 4000\r\n", Error::kV1Syntax},  // two spaces
      {"PROXY TCP4 192.0.2.1 10.0.0.5 51000 4000 \r\n", Error::kV1Syntax},  // trailing space
      {"PROXY TCP4 192.0.2.1 10.0.0.5 51000\r\n", Error::kV1Syntax},        // a field short
      {"PROXY TCP4 192.0.2.1 10.0.0.5 1 2 3\r\n", Error::kV1Syntax},        // a field over
      {"PROXY \r\n", Error::kV1Syntax},
      {"PROXY TCP4 192.0.2.1\t10.0.0.5 1 2\r\n", Error::kV1Syntax},  // a control byte
      {"PROXY TCP4 192.0.2.\xC3\xA9 10.0.0.5 1 2\r\n", Error::kV1Syntax},
      {"PROXY UDP4 192.0.2.1 10.0.0.5 1 2\r\n", Error::kV1Protocol},
      {"PROXY tcp4 192.0.2.1 10.0.0.5 1 2\r\n", Error::kV1Protocol},
      {"PROXY UNKNOWNX\r\n", Error::kV1Protocol},
      {"PROXY TCP4 2001:db8::1 10.0.0.5 1 2\r\n", Error::kV1Address},  // family mismatch
      {"PROXY TCP6 192.0.2.1 ::1 1 2\r\n", Error::kV1Address},
      {"PROXY TCP4 192.0.2.256 10.0.0.5 1 2\r\n", Error::kV1Address},
      {"PROXY TCP4 192.0.2 10.0.0.5 1 2\r\n", Error::kV1Address},
      {"PROXY TCP4 192.0.2.1 10.0.0.5 65536 2\r\n", Error::kV1Port},
      {"PROXY TCP4 192.0.2.1 10.0.0.5 080 2\r\n", Error::kV1Port},  // leading zero
      {"PROXY TCP4 192.0.2.1 10.0.0.5 -1 2\r\n", Error::kV1Port},
      {"PROXY TCP4 192.0.2.1 10.0.0.5 1 999999\r\n", Error::kV1Port},
  };
  for (const auto& [line, error] : cases) {
    const Result r = parse_text(line);
    EXPECT_EQ(r.status, Status::kError) << line;
    EXPECT_EQ(r.error, error) << line << ": " << to_string(r.error);
  }
}

TEST(ProxyV1, AByteThatCannotBeInALineFailsAtOnce) {
  EXPECT_EQ(parse_text("PROXY TCP4\n").error, Error::kV1Syntax) << "not waiting for 107 bytes";
  EXPECT_EQ(parse_text("PROXY TCP4 \x00"s).error, Error::kV1Syntax);
}

TEST(ProxyDetect, OtherBytesAreNoHeader) {
  EXPECT_EQ(parse_text("").status, Status::kNeedMore);
  EXPECT_EQ(parse_text("P").status, Status::kNeedMore);
  EXPECT_EQ(parse_text("PROX").status, Status::kNeedMore);
  EXPECT_EQ(parse_text("PROXY").status, Status::kNeedMore);
  EXPECT_EQ(parse_text("PROXY ").status, Status::kNeedMore);
  EXPECT_EQ(parse_text("PROXYX").status, Status::kNotProxy);
  EXPECT_EQ(parse_text("\x00\x05hello"s).status, Status::kNotProxy) << "a client's first frame";
  EXPECT_EQ(parse_text("Q").status, Status::kNotProxy);
  EXPECT_EQ(parse_text("\r\n\r\n\0\r\nQUI"s).status, Status::kNeedMore);
  EXPECT_EQ(parse_text("\r\n\r\n\0\r\nQUIX"s).status, Status::kNotProxy);
  EXPECT_EQ(parse_text("\r\n\r\n\0\r\nQUIT\n"s).status, Status::kNeedMore);
}

TEST(ProxyV2, Tcp4WithTlvsSkipped) {
  // PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP of 0 bytes.
  const std::string header = v2(0x21, 0x11, tcp4_body("\x01\x00\x02h2"s + "\x04\x00\x00"s));
  expect_needs_more_until_whole(header);
  const Result r = parse_text(header + "\x00\x02hi"s);
  ASSERT_EQ(r.status, Status::kHeader) << to_string(r.error);
  EXPECT_EQ(r.header.version, 2);
  EXPECT_TRUE(r.header.has_address);
  EXPECT_FALSE(r.header.v6);
  EXPECT_EQ(r.header.source, mapped(192, 0, 2, 1));
  EXPECT_EQ(r.header.destination, mapped(10, 0, 0, 5));
  EXPECT_EQ(r.header.source_port, 51000);
  EXPECT_EQ(r.header.destination_port, 4000);
  EXPECT_EQ(r.header.bytes, header.size());
}

TEST(ProxyV2, Tcp6AndUdp) {
  std::string body(36, '\0');
  body[0] = '\x20';
  body[1] = '\x01';
  body[15] = '\x09';
  body[31] = '\x01';
  body[32] = '\x12';
  body[33] = '\x34';
  const Result r = parse_text(v2(0x21, 0x21, body));
  ASSERT_EQ(r.status, Status::kHeader) << to_string(r.error);
  EXPECT_TRUE(r.header.v6);
  EXPECT_EQ(r.header.source[0], 0x20);
  EXPECT_EQ(r.header.source[15], 0x09);
  EXPECT_EQ(r.header.destination[15], 0x01);
  EXPECT_EQ(r.header.source_port, 0x1234);
  EXPECT_EQ(parse_text(v2(0x21, 0x12, tcp4_body())).status, Status::kHeader) << "UDP4";
  EXPECT_EQ(parse_text(v2(0x21, 0x22, body)).status, Status::kHeader) << "UDP6";
}

TEST(ProxyV2, LocalUnspecAndUnixKeepTheRealPeer) {
  // LOCAL: the family (even an undefined one) and the block are ignored.
  for (const std::string& header :
       {v2(0x20, 0x00, ""), v2(0x20, 0x11, tcp4_body()), v2(0x20, 0xFF, "xyz"), v2(0x21, 0x00, ""),
        v2(0x21, 0x31, std::string(216, 'p')), v2(0x21, 0x00, "\x04\x00\x01z"s)}) {
    const Result r = parse_text(header);
    ASSERT_EQ(r.status, Status::kHeader) << to_string(r.error);
    EXPECT_FALSE(r.header.has_address);
    EXPECT_EQ(r.header.bytes, header.size());
  }
}

TEST(ProxyV2, TheLongestHeader) {
  const std::string tlv = "\xE0\xFF\xED"s + std::string(0xFFED, 'x');  // PP2_TYPE_MIN_CUSTOM
  const std::string header = v2(0x21, 0x11, tcp4_body(tlv + "\x04\x00\x00"s));
  ASSERT_EQ(header.size(), kV2MaxBytes);
  EXPECT_EQ(parse_text(header).status, Status::kHeader);
  EXPECT_EQ(parse_text(header.substr(0, header.size() - 1)).status, Status::kNeedMore);
}

TEST(ProxyV2, MalformedHeadersSayWhy) {
  const std::pair<std::string, Error> cases[] = {
      {v2(0x11, 0x11, tcp4_body()), Error::kV2Version},
      {v2(0x31, 0x11, tcp4_body()), Error::kV2Version},
      {v2(0x22, 0x11, tcp4_body()), Error::kV2Command},
      {v2(0x2F, 0x11, tcp4_body()), Error::kV2Command},
      {v2(0x21, 0x10, tcp4_body()), Error::kV2Family},  // AF_INET, UNSPEC transport
      {v2(0x21, 0x13, tcp4_body()), Error::kV2Family},
      {v2(0x21, 0x41, tcp4_body()), Error::kV2Family},
      {v2(0x21, 0x11, tcp4_body().substr(0, 11)), Error::kV2Length},
      {v2(0x21, 0x21, tcp4_body()), Error::kV2Length},  // 12 bytes for TCP6's 36
      {v2(0x21, 0x31, std::string(215, 'p')), Error::kV2Length},
      {v2(0x21, 0x11, tcp4_body("\x01\x00"s)), Error::kV2Tlv},        // a TLV's header cut
      {v2(0x21, 0x11, tcp4_body("\x01\x00\x03h2"s)), Error::kV2Tlv},  // a value past the end
      {v2(0x21, 0x11, tcp4_body("\x01\xFF\xFFh2"s)), Error::kV2Tlv},
      {v2(0x21, 0x00, "\x04"s), Error::kV2Tlv},
  };
  for (const auto& [header, error] : cases) {
    const Result r = parse_text(header);
    EXPECT_EQ(r.status, Status::kError) << to_string(error);
    EXPECT_EQ(r.error, error) << to_string(error) << " expected, got " << to_string(r.error);
  }
}

TEST(ProxyV2, ABadVersionFailsBeforeItsLengthIsIn) {
  // Length 0xFFFF announced, 16 bytes sent: no wait for 64 KiB that may not come.
  EXPECT_EQ(parse_text(v2(0x11, 0x11, "", 0xFFFF)).error, Error::kV2Version);
  EXPECT_EQ(parse_text(v2(0x21, 0x77, "", 0xFFFF)).error, Error::kV2Family);
  EXPECT_EQ(parse_text(v2(0x21, 0x11, "", 0xFFFF)).status, Status::kNeedMore);
}

TEST(ProxyV2, NeverReadsPastTheBytesGiven) {
  // Each prefix of a header in a buffer of exactly its size (ASan sees an
  // overread); the TLV walk included.
  const std::string header = v2(0x21, 0x11, tcp4_body("\x01\x00\x02h2"s));
  for (std::size_t n = 0; n <= header.size(); ++n) {
    const std::vector<std::byte> exact(reinterpret_cast<const std::byte*>(header.data()),
                                       reinterpret_cast<const std::byte*>(header.data()) + n);
    (void)parse(exact);
  }
}

}  // namespace
}  // namespace gatehouse::net::proxy
