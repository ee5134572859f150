// The transports' shared parts (private to gw_client): socket helpers and
// FramedStream, the `| size u16 | payload |` framing over any byte stream
// (TCP, KCP, TLS).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "gatehouse/client/transport.h"

struct addrinfo;

namespace gatehouse::client::detail {

using Clock = std::chrono::steady_clock;

std::error_code errno_code(int e);
std::string errno_message(std::string_view what, int e);
/// Waits for `events` on `fd` until `deadline`; false on timeout. Throws on poll failure.
bool wait_for(int fd, short events, Clock::time_point deadline);
/// Errors that mean "the peer is gone" rather than "something is broken".
bool is_disconnect(int e);
/// getaddrinfo for `socktype`; throws ClientError.
std::unique_ptr<addrinfo, void (*)(addrinfo*)> resolve(const std::string& host, std::uint16_t port,
                                                       int socktype);
std::uint16_t local_port_of(int fd) noexcept;

/// The size-prefixed framing over a byte stream.
class FramedStream : public Transport {
 public:
  bool send_frame(std::span<const std::byte> payload, Duration stall) final;
  bool send_raw(std::span<const std::byte> bytes, Duration stall) final;
  std::optional<std::vector<std::byte>> next_payload() final;
  Fill fill(Clock::time_point deadline) final;

 protected:
  /// Writes all of `bytes`; false when the peer has gone.
  virtual bool write(std::span<const std::byte> bytes, Duration stall) = 0;
  /// Appends what has arrived to `rx`, waiting until `deadline`.
  virtual Fill read(std::vector<std::byte>& rx, Clock::time_point deadline) = 0;

 private:
  std::vector<std::byte> rx_;  ///< bytes received, unframed from rx_start_
  std::size_t rx_start_ = 0;
};

/// A connected TCP socket (non-blocking, TCP_NODELAY); throws ClientError.
/// `source`: the local address to connect from ("" for the kernel's choice).
int connect_socket(const std::string& host, std::uint16_t port, Duration timeout,
                   const std::string& source = {});
std::unique_ptr<Transport> connect_tcp(const std::string& host, std::uint16_t port,
                                       const std::string& source, Duration timeout);
/// tls, ws, wss (layered_transport.cc).
std::unique_ptr<Transport> connect_layered(const TransportOptions& options, const std::string& host,
                                           std::uint16_t port, Duration timeout);
std::unique_ptr<Transport> connect_kcp(const TransportOptions& options, const std::string& host,
                                       std::uint16_t port);

}  // namespace gatehouse::client::detail
