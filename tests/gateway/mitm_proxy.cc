#include "mitm_proxy.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>

#include "gatehouse/client/client.h"
#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/crypto/gateway_identity.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

int connect_local(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("mitm: cannot connect to the gateway");
  }
  return fd;
}

bool wait_readable(int fd, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0))) > 0;
}

bool read_exact(int fd, std::byte* out, std::size_t n, Clock::time_point deadline) {
  for (std::size_t got = 0; got < n;) {
    if (!wait_readable(fd, deadline)) return false;
    const ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

/// One whole frame, size header included; nullopt on close or timeout.
std::optional<Bytes> read_frame(int fd) {
  const auto deadline = Clock::now() + kPatience;
  Bytes frame(2);
  if (!read_exact(fd, frame.data(), 2, deadline)) return std::nullopt;
  const std::size_t size = load_u16(frame.data());
  frame.resize(2 + size);
  if (!read_exact(fd, frame.data() + 2, size, deadline)) return std::nullopt;
  return frame;
}

void write_all(int fd, const Bytes& bytes) {
  for (std::size_t sent = 0; sent < bytes.size();) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

/// Forwards bytes both ways until one side closes or nothing moves for
/// kPatience; says on stderr which, for the test's output.
void relay(int a, int b) {
  std::byte buffer[65536];
  for (;;) {
    pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    const int ready = ::poll(p, 2, static_cast<int>(std::chrono::milliseconds(kPatience).count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      std::fprintf(stderr, "mitm relay: %s\n", ready == 0 ? "idle, ending" : std::strerror(errno));
      return;
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents == 0) continue;
      const ssize_t n = ::recv(p[i].fd, buffer, sizeof buffer, 0);
      if (n <= 0) {
        std::fprintf(stderr, "mitm relay: the %s side %s\n", i == 0 ? "client" : "gateway",
                     n == 0 ? "closed" : std::strerror(errno));
        return;
      }
      write_all(p[1 - i].fd, Bytes(buffer, buffer + n));
    }
  }
}

/// Waits for the client to go away (it should, at the forged ack).
void drain_until_closed(int fd) {
  const auto deadline = Clock::now() + kPatience;
  std::byte buffer[4096];
  while (wait_readable(fd, deadline) && ::recv(fd, buffer, sizeof buffer, 0) > 0) {
  }
}

}  // namespace

MitmProxy::MitmProxy(std::uint16_t gateway_port, const modern::PublicKey& gateway_key, Mode mode)
    : gateway_port_(gateway_port),
      gateway_key_(gateway_key),
      mode_(mode),
      own_static_(modern::generate_key_pair()) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("mitm: cannot listen");
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { serve(); });
}

MitmProxy::~MitmProxy() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
}

void MitmProxy::serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    try {
      handle(fd);
    } catch (const std::exception&) {
      // the connection's test sees it fail
    }
    ::close(fd);
  }
}

void MitmProxy::handle(int client_fd) {
  if (mode_ == Mode::kRelay) {
    const int up = connect_local(gateway_port_);
    relay(client_fd, up);
    ::close(up);
    return;
  }
  const auto request = read_frame(client_fd);
  if (!request) return;
  if (mode_ == Mode::kSubstituteEphemeral) {
    const int up = connect_local(gateway_port_);
    write_all(up, *request);
    auto ack = read_frame(up);
    if (ack && ack->size() >= 2 + 2 + modern::kPublicKeyBytes) {
      const modern::KeyPair own = modern::generate_key_pair();
      std::memcpy(ack->data() + 4, own.public_key.data(), modern::kPublicKeyBytes);
      ++forged_acks_;  // before the client can see it
      write_all(client_fd, *ack);
      relay(client_fd, up);
    }
    ::close(up);
    return;
  }
  // kOwnExchanges: the gateway sees an ordinary client...
  client::Client upstream;
  upstream.connect("127.0.0.1", gateway_port_, kPatience);
  if (upstream.modern_key_exchange(gateway_key_, kPatience)) ++upstream_exchanges_;
  // ...and the client a gateway that answers with its own static key.
  const auto packet =
      protocol::parse_client_payload(std::span<const std::byte>(*request).subspan(2));
  if (!packet || packet->proto != protocol::kKeyExchange2Req) return;
  const auto req = protocol::parse_key_exchange2_req(packet->body);
  if (!req) return;
  const auto reply = modern::gateway_reply(own_static_, req->key, req->aead);
  if (!reply) return;
  Bytes payload;
  ByteWriter(payload).i16(protocol::kKeyExchange2Ack);
  protocol::encode_key_exchange2_ack(
      {reply->gateway_ephemeral, static_cast<std::uint8_t>(reply->aead), reply->confirm}, payload);
  Bytes frame;
  ByteWriter(frame).u16(static_cast<std::uint16_t>(payload.size()));
  frame.insert(frame.end(), payload.begin(), payload.end());
  ++forged_acks_;  // before the client can see it
  write_all(client_fd, frame);
  drain_until_closed(client_fd);
}

}  // namespace gatehouse::testing
