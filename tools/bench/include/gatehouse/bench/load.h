// The load generator behind gatehouse-bench: N client connections to a
// gateway on one (or a few) Boost.Asio event loops, non-blocking sockets, no
// thread per connection.
//
// Each connection: TCP connect (then, with kTls, kWs or kWss, the TLS
// handshake and/or the WebSocket upgrade; with Transport::kKcp, a KCP
// conversation over a connected UDP socket, updated on a timer instead), an
// optional key exchange (legacy: protocol.md
// section 3; modern: docs/protocol-modern.md), login (proto 10, open_udid
// "<udid_prefix><index>", expects 11), then echo traffic through the demo
// game service: 1001 with a body whose first 8 bytes are | connection index
// u32 | message number u32 | and the rest a pattern derived from both,
// answered by 1002 with the same body. Every reply is checked byte for byte
// and for order, and its round trip recorded.
//
// Phases (all connections together, so the measured interval sees the full
// load): ramp (connect + log in at connect_rate per second) -> go (traffic,
// timed from here) -> stop (no new messages; wait for those in flight) ->
// memory sample with every connection still open -> close.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/bench/latency_histogram.h"
#include "gatehouse/bench/process_memory.h"

namespace gatehouse::bench {

/// How a connection protects its traffic.
enum class Crypto : std::uint8_t {
  kClear,   ///< no key exchange
  kLegacy,  ///< get_seed_req, 31-bit DH, RC4 both ways (protocol.md section 3)
  kModern,  ///< key_exchange2_req (version 2, a pinned gateway key), X25519, an AEAD both
            ///< ways (protocol-modern.md)
};
/// "clear", "legacy" or "modern".
const char* crypto_name(Crypto crypto) noexcept;
/// The inverse of crypto_name(); nullopt for any other name.
std::optional<Crypto> parse_crypto(std::string_view name) noexcept;

/// How a connection reaches the gateway.
enum class Transport : std::uint8_t {
  kTcp,  ///< the client protocol over TCP
  kKcp,  ///< the same byte stream over KCP over UDP, gonet2's settings (docs/kcp.md)
  kTls,  ///< the same byte stream inside TLS (docs/websocket.md)
  kWs,   ///< one WebSocket binary message per frame payload
  kWss,  ///< WebSocket over TLS
};
/// "tcp", "kcp", "tls", "ws" or "wss".
const char* transport_name(Transport transport) noexcept;
/// The inverse of transport_name(); nullopt for any other name.
std::optional<Transport> parse_transport(std::string_view name) noexcept;

struct LoadOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint32_t connections = 100;
  Transport transport = Transport::kTcp;
  /// tls, wss: the CA certificates (PEM) the gateway's certificate must
  /// chain to (empty: the system's), the name it must be valid for (empty:
  /// host), or no check at all.
  std::string tls_ca_file;
  std::string tls_name;
  bool tls_insecure = false;
  Crypto crypto = Crypto::kClear;
  std::uint8_t aead = 0;  ///< modern: the AEAD asked for (modern::Aead on the wire)
  std::array<std::byte, 32> gateway_key{};  ///< modern: the pinned gateway public key
  std::uint32_t window = 1;                 ///< echo messages in flight per connection
  std::uint32_t body_bytes = 64;            ///< >= kMinBodyBytes
  std::uint64_t messages = 0;               ///< per connection; 0 = until the duration ends
  double duration_s = 10;      ///< traffic (or idle hold) time; 0 = none (needs messages)
  double connect_rate = 2000;  ///< new connections per second during the ramp
  double timeout_s = 5;        ///< connect, login and each reply
  double heartbeat_s = 5;      ///< a heartbeat after this long without sending
  bool idle = false;           ///< log in and hold, no echo traffic
  std::uint32_t threads = 1;   ///< event loops; connection i runs on loop i % threads
  std::vector<std::string> source_addresses;  ///< bind round-robin (more than ~28k ports)
  std::string udid_prefix = "bench-";
  /// Connection i's login token (client_certificate), e.g. signed tokens
  /// minted for user i + 1; empty: the connection's udid.
  std::vector<std::string> tokens;
  bool progress = true;  ///< a line on `progress_out` every second
};

inline constexpr std::uint32_t kMinBodyBytes = 8;  ///< | index u32 | message number u32 |
/// 65535 payload bytes minus the | seq u32 | proto i16 | header.
inline constexpr std::uint32_t kMaxBodyBytes = 65535 - 6;
/// A modern session's payloads carry a 16-byte tag within the same 65535.
inline constexpr std::uint32_t kMaxModernBodyBytes = kMaxBodyBytes - 16;
constexpr std::uint32_t max_body_bytes(Crypto crypto) noexcept {
  return crypto == Crypto::kModern ? kMaxModernBodyBytes : kMaxBodyBytes;
}

struct ErrorCounts {
  std::uint64_t connect = 0;    ///< TCP connect failed or timed out
  std::uint64_t login = 0;      ///< key exchange or login refused, closed, malformed or late
  std::uint64_t closed = 0;     ///< the gateway closed (EOF/reset) a logged-in connection
  std::uint64_t bad_reply = 0;  ///< wrong content, out of order, unexpected, malformed, tampered
  std::uint64_t timeout = 0;    ///< an echo or heartbeat reply later than timeout_s
  std::uint64_t total() const noexcept { return connect + login + closed + bad_reply + timeout; }
};

struct LoadResult {
  std::uint32_t connections_up = 0;  ///< most connections logged in at once
  double ramp_s = 0;                 ///< start -> every connection logged in (or failed)
  /// CPU time the gateway's processes spent over the ramp: connects,
  /// handshakes, key exchanges, logins.
  std::optional<std::uint64_t> ramp_gateway_cpu_us;
  double seconds = 0;          ///< go -> the last reply (the measured interval)
  std::uint64_t messages = 0;  ///< verified echo round trips
  ErrorCounts errors;
  LatencyHistogram latency_us;
  std::vector<std::string> error_samples;       ///< the first few errors, for humans
  std::optional<MemorySample> memory_baseline;  ///< before connecting
  std::optional<MemorySample> memory_held;      ///< with every connection still open
  std::uint32_t connections_held = 0;           ///< logged in when memory_held was sampled
  /// CPU time spent over the measured interval (go -> every connection done).
  std::optional<std::uint64_t> gateway_cpu_us;  ///< by the gateway's processes
  std::uint64_t bench_cpu_us = 0;               ///< by this process
};

/// What the bench can read of the gateway's processes; an empty function =
/// not measured.
struct GatewayProbe {
  /// Called before connecting and again once traffic is over while every
  /// connection is still open.
  std::function<std::optional<MemorySample>()> memory;
  /// CPU time the gateway's processes have used so far, in microseconds;
  /// called when traffic starts and when it is over.
  std::function<std::uint64_t()> cpu_us;
};

/// Runs the whole load; throws std::runtime_error when it cannot start (the
/// address does not resolve, not enough file descriptors). Connection-level
/// failures are counted in the result, never thrown.
LoadResult run_load(const LoadOptions& options, const GatewayProbe& probe,
                    std::ostream& progress_out);

/// The one-line JSON summary gatehouse-bench prints.
std::string to_json(const LoadOptions& options, const LoadResult& result);

/// Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit.
std::uint64_t raise_fd_limit();

}  // namespace gatehouse::bench
