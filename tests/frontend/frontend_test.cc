// The frontend driven one duty-cycle pass at a time (Frontend::do_work) on a
// real segment and a real listening socket: the test is the client on one
// side and the worker at the other end of the frontend's rings.
#include "gatehouse/frontend/frontend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/records.h"

namespace gatehouse::frontend {
namespace {

using namespace std::chrono_literals;

Settings test_settings() {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = 1;
  s.max_connections = 8;
  s.max_frame = 65535;
  s.read_timeout_ms = 15000;
  s.txqueuelen = 128;
  s.ring_bytes = 1 << 20;
  s.linger_ms = 1000;
  s.txqueue_bytes = 1 << 20;
  s.write_timeout_ms = 10000;
  s.login_timeout_ms = 10000;
  s.prelogin_frames = 8;
  s.prelogin_bytes = 16384;
  s.log_level = 6;  // off
  s.listener_count = 1;
  s.listener_crypto[0] = kCryptoAny;
  return s;
}

/// A listening TCP socket on 127.0.0.1 and a free port, as the supervisor
/// hands it over.
int listen_socket(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

class FrontendStep : public ::testing::Test {
 protected:
  FrontendStep()
      : segment_(GatewaySegment::create(
            "gatehouse-test-frontend-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name(),
            test_settings())),
        from_frontend_(segment_.ring(RingKind::kFrontendToWorker, 0)) {
    std::vector<shm::Doorbell> workers;
    workers.push_back(shm::Doorbell::create());
    frontend_.emplace(segment_, 0, std::vector<int>{listen_socket(port_)}, shm::Doorbell::create(),
                      std::move(workers));
    frontend_->start();
  }
  ~FrontendStep() override {
    if (client_ >= 0) ::close(client_);
  }

  /// Runs passes until the worker ring holds a record of `type` (a socket
  /// event takes a moment to reach epoll: bounded generously, in passes and
  /// in time); returns its payload.
  std::optional<std::vector<std::byte>> pass_until(std::uint32_t type) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      frontend_->do_work();
      std::optional<std::vector<std::byte>> found;
      from_frontend_.read(
          [&](const shm::Record& r) {
            if (r.type == type && !found) found.emplace(r.payload.begin(), r.payload.end());
            return true;
          },
          100);
      if (found) return found;
      std::this_thread::sleep_for(1ms);
    }
    return std::nullopt;
  }

  GatewaySegment segment_;
  shm::RingConsumer from_frontend_;
  std::uint16_t port_ = 0;
  std::optional<Frontend> frontend_;
  int client_ = -1;
};

TEST_F(FrontendStep, AnAcceptedConnectionIsAnnouncedToItsWorker) {
  client_ = connect_to(port_);
  const auto opened = pass_until(ipc::kConnOpened);
  ASSERT_TRUE(opened.has_value());
  const auto record = ipc::parse_record<ipc::ConnOpened>(*opened);
  ASSERT_TRUE(record.has_value());
  EXPECT_NE(record->header.conn, 0u);
  EXPECT_EQ(record->header.listener, 0u);
  EXPECT_EQ(segment_.session_slots().live_count(), 1u);
}

TEST_F(FrontendStep, AFrameReachesTheWorkerAsReceived) {
  client_ = connect_to(port_);
  ASSERT_TRUE(pass_until(ipc::kConnOpened).has_value());
  // | size = 7 | seq 1 | proto 0 | 1 body byte |
  const unsigned char frame[] = {0, 7, 0, 0, 0, 1, 0, 0, 0x2a};
  ASSERT_EQ(::send(client_, frame, sizeof frame, 0), static_cast<ssize_t>(sizeof frame));
  const auto payload = pass_until(ipc::kClientFrame);
  ASSERT_TRUE(payload.has_value());
  const auto record = ipc::parse_record<ipc::ClientFrame>(*payload);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->header.frame_no, 1u);
  ASSERT_EQ(record->tail.size(), 7u);
  EXPECT_EQ(record->tail[6], std::byte{0x2a});
}

TEST_F(FrontendStep, AFrameOverTheLimitClosesTheConnectionWithFrameTooLarge) {
  Settings s = segment_.settings();
  s.max_frame = 16;
  segment_.publish_settings(s);
  client_ = connect_to(port_);
  ASSERT_TRUE(pass_until(ipc::kConnOpened).has_value());
  const unsigned char header[] = {0, 17};
  ASSERT_EQ(::send(client_, header, sizeof header, 0), 2);
  const auto closed = pass_until(ipc::kConnClosed);
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(static_cast<CloseReason>(ipc::parse_record<ipc::ConnClosed>(*closed)->header.reason),
            CloseReason::kFrameTooLarge);
}

}  // namespace
}  // namespace gatehouse::frontend
