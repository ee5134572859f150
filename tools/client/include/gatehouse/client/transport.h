// How a Client's frames reach the gateway: one transport per connection,
// behind a small interface so that the session logic (seq, ciphers,
// heartbeat, login, inbox) in Client is written once.
//
//   tcp   | size u16 | payload | ... over a TCP stream (shared/protocol.md)
//   kcp   the same byte stream over KCP over UDP (docs/kcp.md, gonet2's settings)
//   tls   the same byte stream inside TLS
//   ws    one WebSocket binary message per payload (docs/websocket.md)
//   wss   ws over TLS
//
// A transport carries payloads already encrypted by the Client; the size
// header (or the message boundary) is the transport's business.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace gatehouse::client {

using Duration = std::chrono::milliseconds;

enum class TransportKind : std::uint8_t { kTcp, kKcp, kTls, kWs, kWss };

std::string_view name_of(TransportKind kind) noexcept;
/// "tcp", "kcp", "tls", "ws" or "wss"; nullopt for anything else.
std::optional<TransportKind> parse_transport(std::string_view name) noexcept;

struct TransportOptions {
  TransportKind kind = TransportKind::kTcp;
  /// tcp: the local address to connect from (e.g. 127.0.0.2: loopback
  /// clients that look like several hosts); empty: the kernel's choice.
  std::string source_address = {};
  /// KCP: the update period (gonet2's server uses 20 ms; a client may poll faster).
  std::uint32_t kcp_interval_ms = 10;
  /// KCP: windows in segments (gonet2's 32/32 are the floor).
  std::uint32_t kcp_window = 128;
  /// tls, wss: the CA certificates (PEM) the gateway's certificate must chain
  /// to; empty: the system's. The name checked (and sent as SNI): tls_name,
  /// else the host connected to.
  std::string tls_ca_file = {};
  std::string tls_name = {};
  /// tls, wss: no certificate check at all (a test gateway's own certificate).
  bool tls_insecure = false;
  /// ws, wss: the upgrade's target and Origin header (empty: none, as a
  /// native client).
  std::string ws_path = "/";
  std::string ws_origin = {};
};

/// One connection's frames. Blocking, with deadlines; see Client for the
/// error policy (ClientError for a broken host or peer, false/kClosed for
/// a peer that has gone).
class Transport {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Fill : std::uint8_t { kData, kTimeout, kClosed };

  Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  virtual ~Transport() = default;

  virtual TransportKind kind() const noexcept = 0;
  /// Sends `payload` as one frame. False when the peer has gone; throws
  /// ClientError when the peer has not taken any of it within `stall`.
  virtual bool send_frame(std::span<const std::byte> payload, Duration stall) = 0;
  /// Writes `bytes` below the framing, as they are (malformed-input tests).
  virtual bool send_raw(std::span<const std::byte> bytes, Duration stall) = 0;
  /// A payload already received whole, without waiting; nullopt if none.
  virtual std::optional<std::vector<std::byte>> next_payload() = 0;
  /// Waits until `deadline` for more input. kClosed once the peer has gone
  /// (close_error() says how; empty for a clean end of stream).
  virtual Fill fill(Clock::time_point deadline) = 0;
  /// The peer sees the end of the stream; receiving goes on.
  virtual void shutdown_send() = 0;
  virtual std::uint16_t local_port() const noexcept = 0;
  /// The socket (TCP, or the UDP socket of a KCP session; TLS and WebSocket
  /// are over its TCP socket).
  virtual int native_handle() const noexcept = 0;

  std::error_code close_error() const noexcept { return close_error_; }

 protected:
  std::error_code close_error_;
};

/// Connects to `host:port` within `timeout`. Throws ClientError on failure.
std::unique_ptr<Transport> connect_transport(const TransportOptions& options,
                                             const std::string& host, std::uint16_t port,
                                             Duration timeout);

}  // namespace gatehouse::client
