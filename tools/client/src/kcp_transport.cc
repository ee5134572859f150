// The kcp transport: the client protocol's byte stream over one KCP
// conversation on a connected UDP socket, as kcp-go's Dial does for
// gonet2's clients (docs/kcp.md): a random non-zero conv, stream mode,
// nodelay, fast resend 1, no congestion window, mtu 1280, and the client's
// own update period (the gateway's is its `interval` setting).
//
// KCP has no close: a session the gateway forgets (a kick, a timeout) just
// stops answering. The client sees it closed when a segment goes
// unacknowledged dead_link times (dead()), at once when the host answers
// with ICMP port unreachable (ECONNREFUSED on the connected socket), or,
// while it waits for input and hears nothing, when kProbesUnanswered window
// probes in a row, kProbeEvery apart, get no answer (a live KCP peer,
// kcp-go too, answers each with its window; a gateway's forgotten session
// does not).
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <random>

#include "gatehouse/client/client.h"
#include "gatehouse/kcp/connection.h"
#include "stream.h"

namespace gatehouse::client::detail {
namespace {

/// kcp-go's largest datagram is 1500 bytes; one more tells truncation apart.
constexpr std::size_t kDatagramBuffer = 1501;
constexpr auto kProbeEvery = std::chrono::seconds(1);
constexpr int kProbesUnanswered = 3;

kcp::Millis now_ms() {
  return static_cast<kcp::Millis>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
          .count());
}

std::uint32_t random_conv() {
  std::random_device random;
  std::uint32_t conv = 0;
  while (conv == 0) conv = random();
  return conv;
}

kcp::Options kcp_options(const TransportOptions& options) {
  kcp::Options o;  // gonet2's defaults: nodelay, resend 1, mtu 1280
  o.interval = options.kcp_interval_ms;
  o.send_window = std::max<std::uint32_t>(options.kcp_window, 32);
  o.receive_window = o.send_window;
  return o;
}

class KcpStream final : public FramedStream {
 public:
  KcpStream(int fd, const TransportOptions& options)
      : fd_(fd), kcp_(random_conv(), kcp_options(options), [this](std::span<const std::byte> d) {
          output(d);
        }) {}
  ~KcpStream() override { ::close(fd_); }
  KcpStream(const KcpStream&) = delete;
  KcpStream& operator=(const KcpStream&) = delete;

  TransportKind kind() const noexcept override { return TransportKind::kKcp; }
  void shutdown_send() override {
    throw std::logic_error("gatehouse client: kcp has no half-close");
  }
  std::uint16_t local_port() const noexcept override { return local_port_of(fd_); }
  int native_handle() const noexcept override { return fd_; }

 private:
  bool write(std::span<const std::byte> bytes, Duration stall) override;
  Fill read(std::vector<std::byte>& rx, Clock::time_point deadline) override;

  void output(std::span<const std::byte> datagram);
  /// Feeds what the socket holds to the connection and runs its timers;
  /// then waits for a datagram until `wake` if nothing came.
  void pump(Clock::time_point wake);
  /// Takes every datagram queued on the socket, without waiting.
  void drain();
  /// When silent for kProbeEvery since the last datagram or probe: a window
  /// probe, or, after kProbesUnanswered of them, the end.
  void probe_if_silent();
  Clock::time_point next_probe() const noexcept {
    return std::max(heard_at_, probed_at_) + kProbeEvery;
  }
  bool gone() const noexcept { return gone_ || kcp_.dead(); }

  int fd_;
  kcp::Connection kcp_;
  bool gone_ = false;                          ///< ECONNREFUSED or another disconnect on the socket
  Clock::time_point heard_at_ = Clock::now();  ///< the last datagram the connection accepted
  Clock::time_point probed_at_;
  int unanswered_ = 0;  ///< probes sent since heard_at_
};

void KcpStream::output(std::span<const std::byte> datagram) {
  const ssize_t n = ::send(fd_, datagram.data(), datagram.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) return;
  const int e = errno;
  if (is_disconnect(e)) {
    gone_ = true;
    close_error_ = errno_code(e);
  }
  // EAGAIN/ENOBUFS: a lost datagram, which KCP resends.
}

void KcpStream::drain() {
  std::array<std::byte, kDatagramBuffer> buffer;
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n >= 0) {
      // A refused datagram (malformed, another conv) changes nothing: UDP noise.
      if (kcp_.input({buffer.data(), static_cast<std::size_t>(n)}, now_ms()) ==
          kcp::InputStatus::kAccepted) {
        heard_at_ = Clock::now();
        unanswered_ = 0;
      }
      continue;
    }
    const int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) return;
    if (is_disconnect(e)) {
      gone_ = true;
      close_error_ = errno_code(e);
      return;
    }
    throw ClientError(errno_message("recv", e));
  }
}

void KcpStream::pump(Clock::time_point wake) {
  drain();
  kcp_.update(now_ms());
  if (kcp_.readable() > 0 || gone()) return;
  const kcp::Millis now = now_ms();
  const auto due = static_cast<std::int32_t>(kcp_.check(now) - now);  // wrapping clock
  const auto timer = Clock::now() + std::chrono::milliseconds(std::max(due, 0));
  if (wait_for(fd_, POLLIN, std::min(wake, timer))) drain();
  kcp_.update(now_ms());
}

bool KcpStream::write(std::span<const std::byte> bytes, Duration stall) {
  auto deadline = Clock::now() + stall;
  while (!bytes.empty()) {
    if (gone()) return false;
    const std::size_t n = std::min(bytes.size(), kcp_.send_capacity());
    if (n > 0) {
      kcp_.send(bytes.first(n));
      // As kcp-go, send at once rather than at the next interval.
      kcp_.flush(now_ms());
      bytes = bytes.subspan(n);
      deadline = Clock::now() + stall;
      continue;
    }
    if (Clock::now() >= deadline) {
      throw ClientError("send stalled: the gateway has not acknowledged for " +
                        std::to_string(stall.count()) + " ms");
    }
    pump(deadline);  // acks free the send buffer
  }
  return !gone();
}

void KcpStream::probe_if_silent() {
  const auto now = Clock::now();
  if (now < next_probe()) return;
  if (unanswered_ == kProbesUnanswered) {
    gone_ = true;
    close_error_ = errno_code(ETIMEDOUT);
    return;
  }
  ++unanswered_;
  probed_at_ = now;
  kcp_.ask_window();
  kcp_.flush(now_ms());
}

Transport::Fill KcpStream::read(std::vector<std::byte>& rx, Clock::time_point deadline) {
  for (;;) {
    if (const std::size_t n = kcp_.readable(); n > 0) {
      const std::size_t at = rx.size();
      rx.resize(at + n);
      rx.resize(at + kcp_.receive({rx.data() + at, n}));
      return Fill::kData;
    }
    if (gone()) {
      if (!close_error_) close_error_ = errno_code(ETIMEDOUT);  // dead link
      return Fill::kClosed;
    }
    if (Clock::now() >= deadline) return Fill::kTimeout;
    probe_if_silent();
    if (gone()) continue;
    pump(std::min(deadline, next_probe()));
  }
}

}  // namespace

std::unique_ptr<Transport> connect_kcp(const TransportOptions& options, const std::string& host,
                                       std::uint16_t port) {
  const auto list = resolve(host, port, SOCK_DGRAM);
  std::string last_error = "no address";
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    // connect() on UDP only fixes the peer: nothing is sent before the
    // first write, as with kcp-go.
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    return std::make_unique<KcpStream>(fd, options);
  }
  throw ClientError("kcp connect to " + host + ":" + std::to_string(port) + ": " + last_error);
}

}  // namespace gatehouse::client::detail
