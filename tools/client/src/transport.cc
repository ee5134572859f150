#include "gatehouse/client/transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "gatehouse/client/client.h"
#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"
#include "stream.h"

namespace gatehouse::client {

std::string_view name_of(TransportKind kind) noexcept {
  switch (kind) {
    case TransportKind::kTcp:
      return "tcp";
    case TransportKind::kKcp:
      return "kcp";
    case TransportKind::kTls:
      return "tls";
    case TransportKind::kWs:
      return "ws";
    case TransportKind::kWss:
      return "wss";
  }
  return "unknown";
}

std::optional<TransportKind> parse_transport(std::string_view name) noexcept {
  for (const TransportKind kind : {TransportKind::kTcp, TransportKind::kKcp, TransportKind::kTls,
                                   TransportKind::kWs, TransportKind::kWss}) {
    if (name == name_of(kind)) return kind;
  }
  return std::nullopt;
}

std::unique_ptr<Transport> connect_transport(const TransportOptions& options,
                                             const std::string& host, std::uint16_t port,
                                             Duration timeout) {
  switch (options.kind) {
    case TransportKind::kTcp:
      return detail::connect_tcp(host, port, options.source_address, timeout);
    case TransportKind::kKcp:
      return detail::connect_kcp(options, host, port);
    case TransportKind::kTls:
    case TransportKind::kWs:
    case TransportKind::kWss:
      return detail::connect_layered(options, host, port, timeout);
  }
  throw std::logic_error("gatehouse client: unknown transport");
}

namespace detail {

namespace {

constexpr std::size_t kReadChunk = std::size_t{64} * 1024;

/// Milliseconds left until `deadline`, rounded up, for poll().
int poll_timeout(Clock::time_point deadline) {
  const auto now = Clock::now();
  if (deadline <= now) return 0;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::min<decltype(left)>(left, INT_MAX));
}

}  // namespace

std::error_code errno_code(int e) {
  return {e, std::system_category()};
}

std::string errno_message(std::string_view what, int e) {
  return std::string(what) + ": " + std::strerror(e);
}

bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, poll_timeout(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) throw ClientError(errno_message("poll", errno));
  }
}

bool is_disconnect(int e) {
  return e == ECONNRESET || e == EPIPE || e == ECONNABORTED || e == ETIMEDOUT || e == ENOTCONN ||
         e == ECONNREFUSED;
}

std::unique_ptr<addrinfo, void (*)(addrinfo*)> resolve(const std::string& host, std::uint16_t port,
                                                       int socktype) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    throw ClientError("resolve " + host + ": " + ::gai_strerror(rc));
  }
  return {found, &::freeaddrinfo};
}

std::uint16_t local_port_of(int fd) noexcept {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

// ---------------------------------------------------------------- framing

bool FramedStream::send_frame(std::span<const std::byte> payload, Duration stall) {
  std::vector<std::byte> frame(protocol::kSizeBytes + payload.size());
  store_u16(frame.data(), static_cast<std::uint16_t>(payload.size()));
  std::copy(payload.begin(), payload.end(), frame.begin() + protocol::kSizeBytes);
  return write(frame, stall);
}

bool FramedStream::send_raw(std::span<const std::byte> bytes, Duration stall) {
  return write(bytes, stall);
}

std::optional<std::vector<std::byte>> FramedStream::next_payload() {
  const std::span<const std::byte> buffered(rx_.data() + rx_start_, rx_.size() - rx_start_);
  const protocol::FrameScan scan = protocol::scan_frame(buffered, protocol::kMaxPayload);
  if (scan.kind != protocol::FrameScan::kFrame) return std::nullopt;  // kTooLarge: not with u16
  const auto first = buffered.begin() + protocol::kSizeBytes;
  std::vector<std::byte> payload(first, first + static_cast<std::ptrdiff_t>(scan.payload_bytes));
  rx_start_ += protocol::kSizeBytes + scan.payload_bytes;
  if (rx_start_ == rx_.size()) {
    rx_.clear();
    rx_start_ = 0;
  }
  return payload;
}

Transport::Fill FramedStream::fill(Clock::time_point deadline) {
  if (rx_start_ >= kReadChunk) {  // keep the buffer from creeping
    rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(rx_start_));
    rx_start_ = 0;
  }
  return read(rx_, deadline);
}

// ---------------------------------------------------------------- tcp

namespace {

class TcpStream final : public FramedStream {
 public:
  explicit TcpStream(int fd) : fd_(fd) {}
  ~TcpStream() override { ::close(fd_); }
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  TransportKind kind() const noexcept override { return TransportKind::kTcp; }
  void shutdown_send() override {
    if (::shutdown(fd_, SHUT_WR) != 0 && !is_disconnect(errno)) {
      throw ClientError(errno_message("shutdown", errno));
    }
  }
  std::uint16_t local_port() const noexcept override { return local_port_of(fd_); }
  int native_handle() const noexcept override { return fd_; }

 private:
  bool write(std::span<const std::byte> bytes, Duration stall) override;
  Fill read(std::vector<std::byte>& rx, Clock::time_point deadline) override;

  int fd_;
};

bool TcpStream::write(std::span<const std::byte> bytes, Duration stall) {
  std::size_t done = 0;
  auto deadline = Clock::now() + stall;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      deadline = Clock::now() + stall;
      continue;
    }
    const int e = errno;
    if (n < 0 && e == EINTR) continue;
    if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
      if (!wait_for(fd_, POLLOUT, deadline)) {
        throw ClientError("send stalled: the gateway has not read for " +
                          std::to_string(stall.count()) + " ms");
      }
      continue;
    }
    if (n < 0 && is_disconnect(e)) return false;
    throw ClientError(errno_message("send", e));
  }
  return true;
}

Transport::Fill TcpStream::read(std::vector<std::byte>& rx, Clock::time_point deadline) {
  thread_local std::array<std::byte, kReadChunk> chunk;
  for (;;) {
    if (!wait_for(fd_, POLLIN, deadline)) return Fill::kTimeout;
    const ssize_t n = ::recv(fd_, chunk.data(), chunk.size(), 0);
    const int e = errno;
    if (n > 0) {
      rx.insert(rx.end(), chunk.begin(), chunk.begin() + n);
      return Fill::kData;
    }
    if (n == 0) {
      close_error_.clear();
      return Fill::kClosed;
    }
    if (e == EINTR || e == EAGAIN || e == EWOULDBLOCK) continue;
    if (is_disconnect(e)) {
      close_error_ = errno_code(e);
      return Fill::kClosed;
    }
    throw ClientError(errno_message("recv", e));
  }
}

}  // namespace

std::unique_ptr<Transport> connect_tcp(const std::string& host, std::uint16_t port,
                                       const std::string& source, Duration timeout) {
  return std::make_unique<TcpStream>(connect_socket(host, port, timeout, source));
}

int connect_socket(const std::string& host, std::uint16_t port, Duration timeout,
                   const std::string& source) {
  const auto deadline = Clock::now() + timeout;
  const auto list = resolve(host, port, SOCK_STREAM);
  std::string last_error = "no address";
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    if (!source.empty()) {
      const auto local = resolve(source, 0, SOCK_STREAM);
      if (::bind(fd, local->ai_addr, local->ai_addrlen) != 0) {
        last_error = errno_message("bind " + source, errno);
        ::close(fd);
        continue;
      }
    }
    int err = 0;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        err = ETIMEDOUT;
        if (wait_for(fd, POLLOUT, deadline)) {
          socklen_t len = sizeof err;
          if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
      }
    }
    if (err != 0) {
      last_error = std::strerror(err);
      ::close(fd);
      continue;
    }
    const int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      last_error = errno_message("TCP_NODELAY", errno);
      ::close(fd);
      continue;
    }
    return fd;
  }
  throw ClientError("connect to " + host + ":" + std::to_string(port) + ": " + last_error);
}

}  // namespace detail
}  // namespace gatehouse::client
