// The metrics endpoint's HTTP server alone, over real loopback sockets:
// methods, keep-alive, and every bound a peer could otherwise push on
// (time, size, connections at once).
#include "gatehouse/supervisor/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "gatehouse/supervisor/listen_socket.h"
#include "patience.h"

namespace gatehouse::supervisor {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::kPatience;

/// A client socket to 127.0.0.1:`port`, closed with it.
class Peer {
 public:
  explicit Peer(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect failed");
    }
  }
  ~Peer() { close(); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  void send(const std::string& bytes) const {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  /// False when the server has closed already.
  bool try_send(const std::string& bytes) const {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /// One whole response (headers, and the body its Content-Length says),
  /// or what came before the server closed or `timeout` passed.
  std::string response(std::chrono::milliseconds timeout = kPatience) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto end = buffer_.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::size_t length = 0;
        const auto at = buffer_.find("Content-Length: ");
        if (at != std::string::npos && at < end) length = std::stoul(buffer_.substr(at + 16));
        if (!head_ && buffer_.size() >= end + 4 + length) {
          std::string out = buffer_.substr(0, end + 4 + length);
          buffer_.erase(0, out.size());
          return out;
        }
        if (head_) {
          std::string out = buffer_.substr(0, end + 4);
          buffer_.erase(0, out.size());
          return out;
        }
      }
      if (!read_some(deadline)) return std::exchange(buffer_, {});
    }
  }
  /// The next response is to a HEAD: it has no body.
  void expect_head(bool head) { head_ = head; }

  /// Whether the server closes the connection within `timeout` (reading and
  /// dropping whatever it sends first).
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (read_some(deadline)) {
    }
    return eof_;
  }

 private:
  /// Reads what is there; false at the end of the stream or the deadline.
  bool read_some(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_;
  std::string buffer_;
  bool head_ = false;
  bool eof_ = false;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpServer::Limits limits) {
    std::string bound;
    const int fd = bind_socket("test", "127.0.0.1:0", SOCK_STREAM, false, 0, bound);
    server_.emplace(
        fd,
        [this](std::string_view path) -> HttpServer::Response {
          ++requests_;
          if (path == "/throw") throw std::runtime_error("boom");
          if (path == "/down") return {.status = 503, .body = "not ready: down\n"};
          return {.body = "you asked for " + std::string(path) + "\n"};
        },
        limits);
  }
  std::uint16_t port() const { return server_->port(); }

  std::atomic<int> requests_{0};
  std::optional<HttpServer> server_;
};

HttpServer::Limits quick() {
  return {.max_connections = 4,
          .request_timeout = 300ms,
          .write_timeout = 300ms,
          .header_bytes = 1024,
          .body_bytes = 64};
}

TEST_F(HttpServerTest, AnswersGetAndHead) {
  start(quick());
  Peer peer(port());
  peer.send("GET /ready?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string get = peer.response();
  EXPECT_TRUE(get.starts_with("HTTP/1.1 200 OK\r\n")) << get;
  EXPECT_NE(get.find("Content-Length: 21\r\n"), std::string::npos) << get;
  EXPECT_TRUE(get.ends_with("\r\n\r\nyou asked for /ready\n")) << get;

  peer.send("HEAD /down HTTP/1.1\r\nHost: x\r\n\r\n");
  peer.expect_head(true);
  const std::string head = peer.response();
  EXPECT_TRUE(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n")) << head;
  EXPECT_NE(head.find("Content-Length: 16\r\n"), std::string::npos) << head;
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head;
  // Nothing follows a HEAD's headers: the next response comes whole.
  peer.expect_head(false);
  peer.send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(peer.response().ends_with("you asked for /again\n"));
}

TEST_F(HttpServerTest, OtherMethodsAre405) {
  start(quick());
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    Peer peer(port());
    peer.send(std::string(method) + " /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    const std::string r = peer.response();
    EXPECT_TRUE(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")) << method << ": " << r;
    EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos) << r;
  }
  EXPECT_EQ(requests_, 0);  // the handler never sees them
}

TEST_F(HttpServerTest, KeepsAliveAsAsked) {
  start(quick());
  Peer peer(port());
  // Two requests in one write (pipelined), then a third: one connection.
  peer.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(peer.response().ends_with("/a\n"));
  EXPECT_TRUE(peer.response().ends_with("/b\n"));
  peer.send("GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(peer.response().ends_with("/c\n"));
  EXPECT_TRUE(peer.closed_within(kPatience));

  Peer old(port());  // HTTP/1.0 closes unless it asks for keep-alive
  old.send("GET /d HTTP/1.0\r\n\r\n");
  const std::string r = old.response();
  EXPECT_TRUE(r.starts_with("HTTP/1.0 200 OK\r\n")) << r;
  EXPECT_TRUE(old.closed_within(kPatience));
}

TEST_F(HttpServerTest, ClosesASilentConnectionAfterTheBound) {
  start(quick());
  const auto opened = Clock::now();
  Peer silent(port());
  EXPECT_TRUE(silent.closed_within(kPatience));
  EXPECT_GE(Clock::now() - opened, 300ms);  // not before the bound

  // Keep-alive does not stretch it: idle after an answer is the same.
  Peer idle(port());
  idle.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(idle.response().ends_with("/x\n"));
  EXPECT_TRUE(idle.closed_within(kPatience));
}

TEST_F(HttpServerTest, ClosesASlowSenderAtTheBoundOfItsWholeRequest) {
  start(quick());
  Peer slow(port());
  const auto started = Clock::now();
  slow.send("GET /slow HTTP/1.1\r\n");
  // A header line every 50 ms, each well within the 300 ms bound of the
  // last: the bound is the whole request's, so it is closed all the same
  // (silently: far below the header limit, nothing to answer).
  bool closed = false;
  while (!closed && Clock::now() - started < kPatience) {
    closed = !slow.try_send("X-Trickle: a\r\n") || slow.closed_within(50ms);
  }
  EXPECT_TRUE(closed);
  EXPECT_GE(Clock::now() - started, 300ms);
  EXPECT_EQ(slow.response(0ms), "");
  EXPECT_EQ(requests_, 0);
}

TEST_F(HttpServerTest, RefusesOversizedRequests) {
  start(quick());
  Peer big_header(port());
  big_header.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
  const std::string r = big_header.response();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 431 ")) << r;
  EXPECT_TRUE(big_header.closed_within(kPatience));

  Peer big_body(port());
  big_body.send("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                std::string(100, 'b'));
  const std::string b = big_body.response();
  EXPECT_TRUE(b.starts_with("HTTP/1.1 413 ")) << b;
  EXPECT_TRUE(big_body.closed_within(kPatience));

  Peer garbage(port());
  garbage.send("\x16\x03\x01 not http at all\r\n\r\n");
  const std::string g = garbage.response();
  EXPECT_TRUE(g.starts_with("HTTP/1.1 400 ")) << g;
  EXPECT_EQ(requests_, 0);
}

TEST_F(HttpServerTest, AHandlerThatThrowsIs500) {
  start(quick());
  Peer peer(port());
  peer.send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(peer.response().starts_with("HTTP/1.1 500 "));
  peer.send("GET /fine HTTP/1.1\r\nHost: x\r\n\r\n");  // and serves on
  EXPECT_TRUE(peer.response().ends_with("/fine\n"));
}

TEST_F(HttpServerTest, ConnectionsOverTheCapWaitForAPlace) {
  auto limits = quick();
  limits.max_connections = 2;
  limits.request_timeout = kPatience;  // only closing frees a place here
  start(limits);
  Peer a(port()), b(port());
  for (Peer* p : {&a, &b}) {  // answered: surely accepted, now idle
    p->send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(p->response().ends_with("/hold\n"));
  }
  Peer third(port());  // the kernel queues it; the server does not take it
  third.send("GET /third HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(third.response(300ms), "");  // a short, stated wait: nothing may come
  a.close();
  EXPECT_TRUE(third.response().ends_with("/third\n"));
}

TEST_F(HttpServerTest, StopsWithConnectionsOpen) {
  auto limits = quick();
  limits.request_timeout = kPatience;
  start(limits);
  Peer idle(port());
  idle.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(idle.response().ends_with("/x\n"));
  const auto before = Clock::now();
  server_.reset();  // does not wait for the idle peer's bound
  EXPECT_LT(Clock::now() - before, kPatience / 2);
  EXPECT_TRUE(idle.closed_within(kPatience));
}

}  // namespace
}  // namespace gatehouse::supervisor
