// A tiny fake gateway for the client tests: a plain listening socket on
// 127.0.0.1:0 and the accepted connection, with byte-level reads and writes
// and an optional legacy RC4 layer built on the test's own ReferenceRc4, or
// the modern one on ReferenceAead.
// Nothing here uses the client library or gw::crypto, so the tests check
// the client against an independent reading of shared/protocol.md.
//
// Helpers throw std::runtime_error on timeouts and short reads; server code
// that runs on its own thread goes through ServerThread, which reports the
// exception text instead of terminating.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "crypto/reference_crypto.h"

namespace gatehouse::client::testing {

using Bytes = std::vector<std::byte>;
using std::chrono::milliseconds;
inline constexpr milliseconds kIoTimeout{5000};

// ---------------------------------------------------------------- bytes

inline Bytes bytes(std::initializer_list<unsigned> values) {
  Bytes out;
  for (const unsigned v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}
inline Bytes text_bytes(std::string_view s) {
  Bytes out;
  for (const char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}
inline void put_u16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::byte>(v >> 8));
  out.push_back(static_cast<std::byte>(v & 0xffu));
}
inline void put_u32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::byte>(v >> shift));
}
inline void put_i32(Bytes& out, std::int32_t v) {
  put_u32(out, static_cast<std::uint32_t>(v));
}
inline void put_string(Bytes& out, std::string_view s) {
  put_u16(out, static_cast<std::uint16_t>(s.size()));
  const Bytes b = text_bytes(s);
  out.insert(out.end(), b.begin(), b.end());
}
inline std::uint32_t get_u32(std::span<const std::byte> b, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t k = 0; k < 4; ++k) v = (v << 8) | std::to_integer<std::uint32_t>(b[at + k]);
  return v;
}
inline std::uint16_t get_u16(std::span<const std::byte> b, std::size_t at) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(b[at]) << 8) |
                                    std::to_integer<unsigned>(b[at + 1]));
}

// ---------------------------------------------------------------- sockets

/// A client frame as the fake gateway reads it (payload decrypted).
struct ClientFrame {
  std::uint16_t size = 0;  ///< the size header as sent
  std::uint32_t seq = 0;
  std::int16_t proto = 0;
  Bytes body;
  Bytes wire_payload;  ///< the payload as it was on the wire (encrypted or not)
};

class FakeConnection {
 public:
  explicit FakeConnection(int fd) : fd_(fd) {}
  FakeConnection(FakeConnection&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)),
        decrypt_(o.decrypt_),
        encrypt_(o.encrypt_),
        open_(o.open_),
        seal_(o.seal_) {}
  FakeConnection& operator=(FakeConnection&&) = delete;
  ~FakeConnection() { close(); }

  int fd() const { return fd_; }

  /// Exactly `n` bytes; throws on timeout or EOF.
  Bytes read_exact(std::size_t n, milliseconds timeout = kIoTimeout) {
    Bytes out(n);
    std::size_t done = 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (done < n) {
      wait_readable(deadline);
      const ssize_t r = ::recv(fd_, out.data() + done, n - done, 0);
      if (r == 0)
        throw std::runtime_error("fake gateway: EOF after " + std::to_string(done) + "/" +
                                 std::to_string(n) + " bytes");
      if (r < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        throw std::runtime_error(std::string("fake gateway: recv: ") + std::strerror(errno));
      }
      done += static_cast<std::size_t>(r);
    }
    return out;
  }

  /// True if the client closed its side (EOF) within `timeout`; false if
  /// data arrived or the time ran out.
  bool eof(milliseconds timeout = kIoTimeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    try {
      wait_readable(deadline);
    } catch (const std::runtime_error&) {
      return false;
    }
    std::byte b{};
    return ::recv(fd_, &b, 1, MSG_PEEK) == 0;
  }

  /// Reads `| size | payload |`, decrypts the payload when decrypting, and
  /// splits it into seq / proto / body.
  ClientFrame read_frame(milliseconds timeout = kIoTimeout) {
    ClientFrame f;
    f.size = get_u16(read_exact(2, timeout), 0);
    f.wire_payload = read_exact(f.size, timeout);
    Bytes payload = f.wire_payload;
    if (decrypt_) decrypt_->apply(payload);
    if (open_) {
      const auto opened = open_->open(as_u8(payload));
      if (!opened) throw std::runtime_error("fake gateway: a payload failed to open");
      payload = as_bytes(*opened);
    }
    if (payload.size() < 6) throw std::runtime_error("fake gateway: payload under 6 bytes");
    f.seq = get_u32(payload, 0);
    f.proto = static_cast<std::int16_t>(get_u16(payload, 4));
    f.body.assign(payload.begin() + 6, payload.end());
    return f;
  }

  void write_raw(std::span<const std::byte> data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t r = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (r < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(std::string("fake gateway: send: ") + std::strerror(errno));
      }
      done += static_cast<std::size_t>(r);
    }
  }

  /// `| size | proto | body |` with the payload encrypted when encrypting.
  Bytes frame(std::int16_t proto, std::span<const std::byte> body) {
    // One buffer sized up front (vector::insert into a small vector trips
    // GCC 12's -Warray-bounds false positive).
    const std::size_t size = 2 + body.size();
    Bytes out(2 + size);
    out[0] = static_cast<std::byte>(size >> 8);
    out[1] = static_cast<std::byte>(size & 0xffu);
    out[2] = static_cast<std::byte>(static_cast<std::uint16_t>(proto) >> 8);
    out[3] = static_cast<std::byte>(static_cast<std::uint16_t>(proto) & 0xffu);
    std::copy(body.begin(), body.end(), out.begin() + 4);
    if (encrypt_) encrypt_->apply(std::span(out).subspan(2));
    if (seal_) {
      const Bytes sealed = as_bytes(seal_->seal(as_u8(Bytes(out.begin() + 2, out.end()))));
      out.resize(2);
      out[0] = static_cast<std::byte>(sealed.size() >> 8);
      out[1] = static_cast<std::byte>(sealed.size() & 0xffu);
      out.insert(out.end(), sealed.begin(), sealed.end());
    }
    return out;
  }
  void write_packet(std::int16_t proto, std::span<const std::byte> body = {}) {
    write_raw(frame(proto, body));
  }
  void write_int32_packet(std::int16_t proto, std::int32_t value) {
    Bytes body;
    put_i32(body, value);
    write_packet(proto, body);
  }

  void decrypt_with(std::uint32_t key) { decrypt_.emplace(reference_key_string(key)); }
  void encrypt_with(std::uint32_t key) { encrypt_.emplace(reference_key_string(key)); }
  /// The modern mode (docs/protocol-modern.md) from here on.
  void open_with(const std::array<std::uint8_t, 32>& key, std::uint8_t aead) {
    open_.emplace(key, aead);
  }
  void seal_with(const std::array<std::uint8_t, 32>& key, std::uint8_t aead) {
    seal_.emplace(key, aead);
  }

  /// Closes with an RST instead of a FIN.
  void reset() {
    const linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  void wait_readable(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0)));
      if (r > 0) return;
      if (r == 0) throw std::runtime_error("fake gateway: read timed out");
      if (errno != EINTR) throw std::runtime_error("fake gateway: poll failed");
    }
  }

  int fd_;
  std::optional<ReferenceRc4> decrypt_;
  std::optional<ReferenceRc4> encrypt_;
  std::optional<ReferenceAead> open_;
  std::optional<ReferenceAead> seal_;

  static std::vector<std::uint8_t> as_u8(const Bytes& b) {
    std::vector<std::uint8_t> out;
    for (const std::byte x : b) out.push_back(std::to_integer<std::uint8_t>(x));
    return out;
  }
  static Bytes as_bytes(const std::vector<std::uint8_t>& b) {
    Bytes out;
    for (const std::uint8_t x : b) out.push_back(std::byte{x});
    return out;
  }
};

class FakeListener {
 public:
  FakeListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("fake gateway: socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error(std::string("fake gateway: bind/listen: ") + std::strerror(errno));
    }
    port_ = ntohs(addr.sin_port);
  }
  FakeListener(const FakeListener&) = delete;
  FakeListener& operator=(const FakeListener&) = delete;
  ~FakeListener() { close(); }

  std::uint16_t port() const { return port_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  FakeConnection accept(milliseconds timeout = kIoTimeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      throw std::runtime_error("fake gateway: no connection to accept");
    }
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      throw std::runtime_error(std::string("fake gateway: accept: ") + std::strerror(errno));
    return FakeConnection(fd);
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// Runs the server side of a test on its own thread; join() returns the
/// text of the exception it ended with, or "" if it ended normally.
class ServerThread {
 public:
  explicit ServerThread(std::function<void()> body)
      : thread_([this, body = std::move(body)] {
          try {
            body();
          } catch (const std::exception& e) {
            error_ = e.what();
          }
        }) {}
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;
  ~ServerThread() {
    if (thread_.joinable()) thread_.join();
  }
  std::string join() {
    if (thread_.joinable()) thread_.join();
    return error_;
  }

 private:
  std::string error_;
  std::thread thread_;  // last: starts after error_ exists
};

/// The server side of the legacy key exchange: reads get_seed_req (in
/// clear), answers get_seed_ack (in clear) with g^x1, g^x2 and switches the
/// connection to RC4 with key1 = client_send_seed^x1 (decrypt) and
/// key2 = client_receive_seed^x2 (encrypt). Returns {key1, key2}.
struct ServerKeys {
  std::uint32_t key1 = 0;
  std::uint32_t key2 = 0;
  std::int32_t client_send_seed = 0;
  std::int32_t client_receive_seed = 0;
};
inline ServerKeys serve_key_exchange(FakeConnection& conn, std::uint64_t x1, std::uint64_t x2,
                                     std::uint32_t expected_seq = 1) {
  const ClientFrame req = conn.read_frame();
  if (req.proto != 30 || req.body.size() != 8 || req.seq != expected_seq) {
    throw std::runtime_error("fake gateway: expected get_seed_req seq " +
                             std::to_string(expected_seq) + ", got proto " +
                             std::to_string(req.proto) + " seq " + std::to_string(req.seq));
  }
  ServerKeys k;
  k.client_send_seed = static_cast<std::int32_t>(get_u32(req.body, 0));
  k.client_receive_seed = static_cast<std::int32_t>(get_u32(req.body, 4));
  k.key1 = reference_dh(k.client_send_seed, x1);
  k.key2 = reference_dh(k.client_receive_seed, x2);
  Bytes ack;
  put_u32(ack,
          static_cast<std::uint32_t>(reference_power(kReferenceGenerator, x1, kReferencePrime)));
  put_u32(ack,
          static_cast<std::uint32_t>(reference_power(kReferenceGenerator, x2, kReferencePrime)));
  conn.write_packet(31, ack);
  conn.decrypt_with(k.key1);
  conn.encrypt_with(k.key2);
  return k;
}

}  // namespace gatehouse::client::testing
