#include "raw_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace gatehouse::testing {

RawSession::RawSession(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("RawSession: connect failed");
  }
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawSession::~RawSession() {
  if (fd_ >= 0) ::close(fd_);
}

void RawSession::write(const Wire& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the gateway closed: the test's reads will say so
    done += static_cast<std::size_t>(n);
  }
}

Wire RawSession::frame(std::uint32_t seq, std::int16_t proto, const Wire& body) {
  Wire payload = cat({u32(seq), u16(static_cast<std::uint16_t>(proto)), body});
  if (send_rc4_) send_rc4_->apply(std::as_writable_bytes(std::span(payload)));
  if (send_aead_) payload = send_aead_->seal(payload);
  return cat({u16(static_cast<std::uint16_t>(payload.size())), payload});
}

void RawSession::send(std::uint32_t seq, std::int16_t proto, const Wire& body) {
  write(frame(seq, proto, body));
}

bool RawSession::read_exact(std::uint8_t* out, std::size_t n,
                            std::chrono::steady_clock::time_point deadline) {
  std::size_t got = 0;
  while (got < n) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t r = ::recv(fd_, out + got, n - got, 0);
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

std::optional<Wire> RawSession::read_raw_payload(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::uint8_t size[2];
  if (!read_exact(size, 2, deadline)) return std::nullopt;
  Wire payload(static_cast<std::size_t>(size[0]) << 8 | size[1]);
  if (!read_exact(payload.data(), payload.size(), deadline)) return std::nullopt;
  return payload;
}

std::optional<Wire> RawSession::read_payload(std::chrono::milliseconds timeout) {
  auto payload = read_raw_payload(timeout);
  if (!payload) return std::nullopt;
  if (receive_rc4_) receive_rc4_->apply(std::as_writable_bytes(std::span(*payload)));
  if (receive_aead_) {
    auto opened = receive_aead_->open(*payload);
    if (!opened) throw std::runtime_error("RawSession: a gateway payload failed to open");
    return opened;
  }
  return payload;
}

bool RawSession::wait_closed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::uint8_t sink[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    if (::recv(fd_, sink, sizeof sink, 0) <= 0) return true;
  }
}

Wire RawSession::key_exchange(std::uint32_t seq, std::uint64_t a, std::uint64_t b) {
  using namespace client::testing;
  const auto client_send =
      static_cast<std::uint32_t>(reference_power(kReferenceGenerator, a, kReferencePrime));
  const auto client_receive =
      static_cast<std::uint32_t>(reference_power(kReferenceGenerator, b, kReferencePrime));
  send(seq, 30, cat({u32(client_send), u32(client_receive)}));
  const auto ack = read_payload();
  if (!ack || ack->size() != 10) throw std::runtime_error("RawSession: no get_seed_ack");
  const std::uint32_t e1 = get_u32(*ack, 2);
  const std::uint32_t e2 = get_u32(*ack, 6);
  send_rc4_.emplace(
      reference_key_string(static_cast<std::uint32_t>(reference_power(e1, a, kReferencePrime))));
  receive_rc4_.emplace(
      reference_key_string(static_cast<std::uint32_t>(reference_power(e2, b, kReferencePrime))));
  return *ack;
}

Wire RawSession::modern1_key_exchange(std::uint32_t seq, const std::array<std::uint8_t, 32>& secret,
                                      std::optional<std::uint8_t> aead) {
  using namespace client::testing;
  if (sodium_init() < 0) throw std::runtime_error("sodium_init");
  std::array<std::uint8_t, 32> client_public{};
  crypto_scalarmult_base(client_public.data(), secret.data());
  Wire body(client_public.begin(), client_public.end());
  if (aead) body.push_back(*aead);
  send(seq, 32, body);
  const auto ack = read_payload();
  if (!ack || ack->size() != 35) throw std::runtime_error("RawSession: no key_exchange_ack");
  std::array<std::uint8_t, 32> gateway_public{};
  std::copy(ack->begin() + 2, ack->begin() + 34, gateway_public.begin());
  const auto keys = reference_modern_keys(secret, gateway_public, client_public, gateway_public);
  send_aead_.emplace(keys.to_gateway, (*ack)[34]);
  receive_aead_.emplace(keys.to_client, (*ack)[34]);
  return *ack;
}

Wire RawSession::modern_key_exchange(std::uint32_t seq, const std::array<std::uint8_t, 32>& secret,
                                     const std::array<std::uint8_t, 32>& gateway_key,
                                     std::uint8_t aead) {
  using namespace client::testing;
  if (sodium_init() < 0) throw std::runtime_error("sodium_init");
  std::array<std::uint8_t, 32> client_public{};
  crypto_scalarmult_base(client_public.data(), secret.data());
  const auto id = reference_key_id(gateway_key);
  Wire body(client_public.begin(), client_public.end());
  body.insert(body.end(), id.begin(), id.end());
  body.push_back(aead);
  send(seq, 34, body);
  const auto ack = read_payload();
  if (!ack || ack->size() != 67) throw std::runtime_error("RawSession: no key_exchange2_ack");
  std::array<std::uint8_t, 32> gateway_ephemeral{};
  std::copy(ack->begin() + 2, ack->begin() + 34, gateway_ephemeral.begin());
  const std::uint8_t granted = (*ack)[34];
  const auto keys = reference_v2(secret, gateway_key, gateway_ephemeral, aead, granted);
  if (!std::equal(keys.confirm.begin(), keys.confirm.end(), ack->begin() + 35)) {
    throw std::runtime_error("RawSession: gateway key mismatch");
  }
  send_aead_.emplace(keys.to_gateway, granted);
  receive_aead_.emplace(keys.to_client, granted);
  return *ack;
}

Wire RawSession::str(std::string_view s) {
  Wire out = u16(static_cast<std::uint16_t>(s.size()));
  for (const char ch : s) out.push_back(static_cast<std::uint8_t>(ch));
  return out;
}

Wire RawSession::cat(std::initializer_list<Wire> parts) {
  Wire out;
  for (const Wire& p : parts) {
    for (const std::uint8_t b : p) out.push_back(b);
  }
  return out;
}

}  // namespace gatehouse::testing
