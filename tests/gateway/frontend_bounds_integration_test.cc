// The frontend's per-connection bounds (issue 20) against the real gateway
// over real sockets: each test plays one hostile client (or hundreds) and
// asserts who is closed, with which reason, and within what time, while a
// well-behaved player on the same worker goes on being served.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// A plain non-blocking TCP connection to the gateway, for clients that
/// misbehave below the level of the client library.
class RawConn {
 public:
  explicit RawConn(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConn() { ::close(fd_); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  /// Writes what the socket takes now; false once the gateway is gone.
  bool send(const std::vector<std::uint8_t>& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0 ||
           errno == EAGAIN;
  }
  /// True once the gateway has closed the connection (whatever it sent
  /// before is read and discarded).
  bool closed() {
    if (closed_) return true;
    std::uint8_t buffer[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) continue;
      closed_ = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
      return closed_;
    }
  }

 private:
  int fd_;
  bool connected_ = false;
  bool closed_ = false;
};

std::vector<std::uint8_t> u16(std::uint16_t v) {
  return {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

class FrontendBoundsTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra) {
    gateway_.emplace(GatewayOptions{game_.port(), 1, std::move(extra), {}});
  }
  std::unique_ptr<client::Client> player(std::string_view name) {
    return logged_in_client(gateway_->port(), name, name, /*encrypt=*/true);
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

// 300 connections each declare a 100-byte frame and send it a byte every
// 200 ms: the read deadline covers the whole frame (gonet2's did), so every
// one is closed read_timeout about a read-timeout after its last whole frame
// (here: after accept), however steadily it trickles.
TEST_F(FrontendBoundsTest, TrickledFramesAreClosedByTheReadDeadline) {
  constexpr int kConns = 300;
  start({"--read-timeout", "1", "--rpm-limit", "0"});
  auto bystander = player("bystander");
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < kConns; ++i) {
    conns.push_back(std::make_unique<RawConn>(gateway_->port()));
    ASSERT_TRUE(conns.back()->connected());
    conns.back()->send(u16(100));
  }
  const auto t0 = Clock::now();
  int open = kConns;
  auto next_byte = t0;
  for (int pass = 0; open > 0 && Clock::now() - t0 < kPatience; ++pass) {
    open = 0;
    const bool trickle = Clock::now() >= next_byte;
    if (trickle) next_byte += 200ms;
    for (auto& c : conns) {
      if (c->closed()) continue;
      ++open;
      if (trickle) c->send({0x5a});
    }
    if (pass % 10 == 0) {
      ASSERT_TRUE(echo_works(*bystander, "alive")) << "whole frames keep the deadline moving";
    }
    std::this_thread::sleep_for(20ms);
  }
  const auto took = Clock::now() - t0;
  EXPECT_EQ(open, 0) << "every trickling connection must be closed";
  // 1 s deadline + 100 ms sweep; the rest is slack for a busy machine.
  EXPECT_LT(took, 6s) << "closed " << std::chrono::duration<double>(took).count() << " s in";
  EXPECT_TRUE(gateway_->wait_log_count("reason=read_timeout", kConns)) << gateway_->log();
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), static_cast<std::size_t>(kConns))
      << "the bystander was not kicked";
}

}  // namespace
}  // namespace gatehouse::testing
