// RawSession: a client written from protocol.md (and docs/protocol-modern.md)
// alone, byte by byte, with the tests' own reference DH and RC4 and modern
// construction (tests/client/reference_crypto.h).
// The byte-exact protocol tests use it instead of the client library so that
// neither the gateway's nor the client's code checks itself.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "crypto/reference_crypto.h"
#include "patience.h"

namespace gatehouse::testing {

using Wire = std::vector<std::uint8_t>;

class RawSession {
 public:
  explicit RawSession(std::uint16_t port);
  ~RawSession();
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;

  /// Writes bytes as they are.
  void write(const Wire& bytes);
  /// `| size | seq | proto | body |`, payload encrypted (RC4) or sealed
  /// (modern) once keys are set.
  void send(std::uint32_t seq, std::int16_t proto, const Wire& body);
  /// The bytes send() would write (the RC4 stream moves on), for a test that
  /// writes them its own way: many frames at once, or a byte at a time.
  Wire frame(std::uint32_t seq, std::int16_t proto, const Wire& body);
  /// The next frame's payload, decrypted once keys are set; nullopt on
  /// timeout or close.
  std::optional<Wire> read_payload(std::chrono::milliseconds timeout = kPatience);
  /// True if the gateway closes the connection within `timeout` (frames
  /// received meanwhile are discarded).
  bool wait_closed(std::chrono::milliseconds timeout = kPatience);

  /// Runs get_seed with secrets a, b (seq given) and switches RC4 on. Returns
  /// the get_seed_ack payload as received (in clear).
  Wire key_exchange(std::uint32_t seq, std::uint64_t a, std::uint64_t b);
  /// Runs the modern exchange's version 1 with X25519 secret `secret` (seq
  /// given), asking for AEAD `aead` (none: the request has no AEAD byte),
  /// and switches sealing on with the AEAD the ack names. Returns the
  /// key_exchange_ack payload (in clear); throws when there is none.
  Wire modern1_key_exchange(std::uint32_t seq, const std::array<std::uint8_t, 32>& secret,
                            std::optional<std::uint8_t> aead = std::nullopt);
  /// Version 2 against the pinned `gateway_key`: key_exchange2_req, then
  /// the ack's tag checked (throws "gateway key mismatch" when it does not
  /// match, std::runtime_error when there is no ack) and sealing switched
  /// on. Returns the key_exchange2_ack payload (in clear).
  Wire modern_key_exchange(std::uint32_t seq, const std::array<std::uint8_t, 32>& secret,
                           const std::array<std::uint8_t, 32>& gateway_key, std::uint8_t aead = 0);
  /// The raw payload of the next frame, as on the wire (nothing opened).
  std::optional<Wire> read_raw_payload(std::chrono::milliseconds timeout = kPatience);

  static Wire u16(std::uint16_t v) { return {std::uint8_t(v >> 8), std::uint8_t(v)}; }
  static Wire u32(std::uint32_t v) {
    return {std::uint8_t(v >> 24), std::uint8_t(v >> 16), std::uint8_t(v >> 8), std::uint8_t(v)};
  }
  static Wire str(std::string_view s);
  static Wire cat(std::initializer_list<Wire> parts);
  static std::uint32_t get_u32(const Wire& b, std::size_t at) {
    return std::uint32_t(b[at]) << 24 | std::uint32_t(b[at + 1]) << 16 |
           std::uint32_t(b[at + 2]) << 8 | b[at + 3];
  }

 private:
  bool read_exact(std::uint8_t* out, std::size_t n, std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::optional<client::testing::ReferenceRc4> send_rc4_;
  std::optional<client::testing::ReferenceRc4> receive_rc4_;
  std::optional<client::testing::ReferenceAead> send_aead_;
  std::optional<client::testing::ReferenceAead> receive_aead_;
};

}  // namespace gatehouse::testing
