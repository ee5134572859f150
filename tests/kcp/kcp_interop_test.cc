// gw::kcp against the real kcp-go (Debian's golang-github-xtaci-kcp-dev),
// over real UDP sockets on loopback: kcp-go clients, set up as gonet2's
// agent expected them (tests/kcp/kcp_go_peer), against a small echo server
// built on the library here; our connection as a client against kcp-go's
// listener; and junk that must open no session. The Go peer is built by
// CMake (go build); without `go` this test fails (tools/setup.sh installs it).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "child_process.h"
#include "gatehouse/kcp/connection.h"
#include "gatehouse/kcp/segment.h"
#include "patience.h"

namespace gatehouse::kcp {
namespace {

using Bytes = std::vector<std::byte>;
using gatehouse::testing::ChildProcess;
using gatehouse::testing::describe_status;
using gatehouse::testing::kPatience;

const std::string kGoPeer = GATEHOUSE_KCP_GO_PEER;

Millis clock_ms() {
  return static_cast<Millis>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count());
}

/// Milliseconds from now until `at` (0 when due), at most `cap`.
int wait_ms(Millis at, Millis now, int cap) {
  const auto d = static_cast<std::int32_t>(at - now);
  return d <= 0 ? 0 : std::min(d, cap);
}

int udp_socket() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  return fd;
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          (name + "-" + std::to_string(::getpid()) + ".log"))
      .string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A UDP echo server on gw::kcp: sessions by (address, conv), opened only by
/// is_session_opener() datagrams, each echoing what it reads as fast as its
/// send buffer takes it (so a slow reader closes the window, not memory).
/// With `loss`, it drops that share of the datagrams it receives and sends
/// (seeded), so both sides' retransmissions take part.
class EchoServer {
 public:
  explicit EchoServer(double loss = 0) : fd_(udp_socket()), loss_(loss) {
    sockaddr_in a = loopback(0);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::atomic<int> sessions{0};
  std::atomic<int> refused_openers{0};
  std::atomic<int> refused_datagrams{0};
  std::atomic<std::uint64_t> echoed{0};

 private:
  struct Session {
    sockaddr_in peer{};
    std::unique_ptr<Connection> conn;
  };
  using Key = std::tuple<std::uint32_t, std::uint16_t, std::uint32_t>;

  void run() {
    std::array<std::byte, 2048> buf{};
    Bytes chunk(std::size_t{64} * 1024);
    while (!stop_) {
      Millis now = clock_ms();
      int timeout = 10;  // also how soon stop_ is seen
      for (auto& [key, s] : sessions_) timeout = wait_ms(s.conn->check(now), now, timeout);
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, timeout);
      now = clock_ms();
      for (;;) {
        sockaddr_in from{};
        socklen_t len = sizeof from;
        const ssize_t n =
            ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n < 0) break;
        if (drop()) continue;
        const std::span<const std::byte> d(buf.data(), static_cast<std::size_t>(n));
        const auto conv = peek_conv(d);
        if (!conv) {
          ++refused_openers;
          continue;
        }
        const Key key{from.sin_addr.s_addr, from.sin_port, *conv};
        auto it = sessions_.find(key);
        if (it == sessions_.end()) {
          if (!is_session_opener(d)) {
            ++refused_openers;
            continue;
          }
          Session s;
          s.peer = from;
          s.conn = std::make_unique<Connection>(
              *conv, Options{}, [this, peer = from](std::span<const std::byte> out) {
                if (drop()) return;
                ::sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<const sockaddr*>(&peer),
                         sizeof peer);
              });
          it = sessions_.emplace(key, std::move(s)).first;
          ++sessions;
        }
        if (it->second.conn->input(d, now) != InputStatus::kAccepted) ++refused_datagrams;
        echo(*it->second.conn, chunk, now);
      }
      for (auto& [key, s] : sessions_) {
        if (static_cast<std::int32_t>(s.conn->check(now) - now) <= 0) s.conn->update(now);
        echo(*s.conn, chunk, now);
      }
    }
  }

  bool drop() { return loss_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < loss_; }

  void echo(Connection& c, Bytes& chunk, Millis now) {
    bool sent = false;
    for (;;) {
      const std::size_t n = std::min({c.readable(), c.send_capacity(), chunk.size()});
      if (n == 0) break;
      const std::size_t got = c.receive(std::span(chunk).first(n));
      EXPECT_EQ(c.send(std::span(chunk).first(got)), Connection::SendStatus::kQueued);
      echoed += got;
      sent = true;
    }
    if (sent) c.flush(now);
  }

  const int fd_;
  const double loss_;
  std::mt19937 rng_{2024};  // the server thread's
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::map<Key, Session> sessions_;
  std::thread thread_;
};

/// The share of datagrams lost (each way) on the path under test.
class KcpInterop : public ::testing::TestWithParam<double> {};

TEST_P(KcpInterop, KcpGoClientsThroughOurEchoServer) {
  ASSERT_TRUE(std::filesystem::exists(kGoPeer))
      << kGoPeer << " was not built: install golang-go and golang-github-xtaci-kcp-dev "
      << "(tools/setup.sh) and reconfigure";
  EchoServer server(GetParam());
  const std::string addr = "127.0.0.1:" + std::to_string(server.port());
  // Three at once: sessions are told apart by address and conv.
  std::vector<ChildProcess> clients;
  std::vector<std::string> logs;
  for (int i = 0; i < 3; ++i) {
    logs.push_back(temp_path("kcp-go-client-" + std::to_string(i)));
    std::filesystem::remove(logs.back());
    clients.emplace_back(
        std::vector<std::string>{kGoPeer, "client", addr, "300", std::to_string(100 + i)},
        logs.back());
  }
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    const auto status = clients[i].wait(kPatience * 3);
    const std::string log = slurp(logs[i]);
    ASSERT_TRUE(status.has_value()) << "kcp-go client " << i << " still running:\n" << log;
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "kcp-go client " << i << " " << describe_status(*status) << ":\n"
        << log;
    unsigned long long bytes = 0;
    const auto at = log.find("messages, ");
    ASSERT_NE(at, std::string::npos) << log;
    ASSERT_EQ(std::sscanf(log.c_str() + at, "messages, %llu bytes", &bytes), 1) << log;
    total += bytes;
    std::filesystem::remove(logs[i]);
  }
  EXPECT_EQ(server.sessions.load(), 3);
  EXPECT_EQ(server.refused_datagrams.load(), 0);
  if (GetParam() == 0) {
    EXPECT_EQ(server.refused_openers.load(), 0);
  }
  EXPECT_EQ(server.echoed.load(), total) << "every byte echoed once";
}

/// Our connection as the client, against kcp-go's listener echoing.
TEST_P(KcpInterop, OurClientThroughAKcpGoEchoServer) {
  ASSERT_TRUE(std::filesystem::exists(kGoPeer))
      << kGoPeer << " was not built: install golang-go and golang-github-xtaci-kcp-dev "
      << "(tools/setup.sh) and reconfigure";
  const std::string log = temp_path("kcp-go-server");
  std::filesystem::remove(log);
  ChildProcess server({kGoPeer, "server"}, log);
  unsigned port = 0;
  const auto start = std::chrono::steady_clock::now();
  while (port == 0 && std::chrono::steady_clock::now() - start < kPatience) {
    const std::string out = slurp(log);
    if (const auto at = out.find("listening 127.0.0.1:"); at != std::string::npos) {
      std::sscanf(out.c_str() + at, "listening 127.0.0.1:%u", &port);
    }
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(port, 0u) << "kcp-go server did not start:\n" << slurp(log);

  const int fd = udp_socket();
  const sockaddr_in to = loopback(static_cast<std::uint16_t>(port));
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  std::mt19937 rng(42);
  std::mt19937 path_rng(43);
  auto drop = [&] {
    return GetParam() > 0 && std::uniform_real_distribution<double>(0, 1)(path_rng) < GetParam();
  };
  Connection c(0x5EED0001, Options{}, [fd, &drop](std::span<const std::byte> d) {
    if (!drop()) ::send(fd, d.data(), d.size(), 0);
  });

  Bytes data(1 << 20);
  for (std::byte& b : data) b = static_cast<std::byte>(rng());
  Bytes got;
  got.reserve(data.size());
  std::size_t sent = 0;
  std::array<std::byte, 2048> buf{};
  Bytes chunk(std::size_t{64} * 1024);
  while (got.size() < data.size() && std::chrono::steady_clock::now() - start < kPatience * 2) {
    Millis now = clock_ms();
    // Writes of 1..4000 bytes, as far as the send buffer takes them.
    bool wrote = false;
    while (sent < data.size()) {
      const std::size_t n = std::min<std::size_t>(data.size() - sent, 1 + rng() % 4000);
      if (c.send(std::span(data).subspan(sent, n)) != Connection::SendStatus::kQueued) break;
      sent += n;
      wrote = true;
    }
    if (wrote) c.flush(now);
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, wait_ms(c.check(now), now, 10));
    now = clock_ms();
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n < 0) break;
      if (drop()) continue;
      EXPECT_EQ(c.input(std::span(buf.data(), static_cast<std::size_t>(n)), now),
                InputStatus::kAccepted);
    }
    while (c.readable() > 0) {
      const std::size_t n = c.receive(chunk);
      got.insert(got.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
    }
    if (static_cast<std::int32_t>(c.check(now) - now) <= 0) c.update(now);
  }
  ::close(fd);
  ASSERT_EQ(got.size(), data.size()) << "kcp-go server log:\n" << slurp(log);
  EXPECT_TRUE(got == data) << "the echo differs";
  EXPECT_EQ(c.stats().datagrams_refused, 0u);
  EXPECT_FALSE(c.dead());
  if (GetParam() > 0) {
    EXPECT_GT(c.stats().timeout_resends + c.stats().fast_resends, 0u);
  }
  server.kill(SIGTERM);
  EXPECT_TRUE(server.wait(kPatience).has_value());
  std::filesystem::remove(log);
}

/// Random bytes and forged segments from the middle of a conversation, with
/// any conv, open no session; a client's first push does.
INSTANTIATE_TEST_SUITE_P(Loss, KcpInterop, ::testing::Values(0.0, 0.1));

TEST(KcpInteropJunk, OnlyAFirstPushOpensASession) {
  EchoServer server;
  const int fd = udp_socket();
  const sockaddr_in to = loopback(server.port());
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  std::mt19937 rng(9);
  constexpr int kJunk = 500;
  for (int i = 0; i < kJunk; ++i) {
    Bytes d(1 + rng() % 200);
    for (std::byte& b : d) b = static_cast<std::byte>(rng());
    if (i % 2 == 0 && d.size() >= kHeaderBytes) {
      // A well-formed push from the middle of a conversation.
      SegmentHeader h;
      h.conv = static_cast<std::uint32_t>(rng());
      h.sn = 1 + static_cast<std::uint32_t>(rng() % 100);
      h.una = static_cast<std::uint32_t>(rng() % 3);
      h.wnd = 32;
      h.len = static_cast<std::uint32_t>(d.size() - kHeaderBytes);
      encode_header(h, std::span<std::byte, kHeaderBytes>(d.data(), kHeaderBytes));
    }
    ASSERT_EQ(::send(fd, d.data(), d.size(), 0), static_cast<ssize_t>(d.size()));
    // Paced by the server's count, not a clock: loopback UDP drops what
    // overflows the receive buffer of a server slowed by a busy machine.
    if (i % 50 == 49) {
      const auto batch_sent = std::chrono::steady_clock::now();
      while (server.refused_openers.load() < i + 1 &&
             std::chrono::steady_clock::now() - batch_sent < kPatience) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(server.refused_openers.load(), kJunk);
  EXPECT_EQ(server.sessions.load(), 0);

  // A real client's first datagram opens one, and the echo comes back.
  Connection c(77, Options{},
               [fd](std::span<const std::byte> d) { ::send(fd, d.data(), d.size(), 0); });
  const Bytes hello = {std::byte{'h'}, std::byte{'i'}};
  ASSERT_EQ(c.send(hello), Connection::SendStatus::kQueued);
  c.flush(clock_ms());
  Bytes got(2);
  std::array<std::byte, 2048> buf{};
  while (c.readable() < 2 && std::chrono::steady_clock::now() - start < kPatience * 2) {
    pollfd p{fd, POLLIN, 0};
    const Millis now = clock_ms();
    ::poll(&p, 1, wait_ms(c.check(now), now, 10));
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n < 0) break;
      c.input(std::span(buf.data(), static_cast<std::size_t>(n)), clock_ms());
    }
    c.update(clock_ms());
  }
  ASSERT_EQ(c.receive(got), 2u);
  EXPECT_EQ(got, hello);
  EXPECT_EQ(server.sessions.load(), 1);
  ::close(fd);
}

}  // namespace
}  // namespace gatehouse::kcp
