// KCP over UDP end to end (docs/kcp.md, issue 15): the real kcp-go
// (tests/kcp/kcp_go_peer, a gonet2 client over KCP) logs in to the real
// gateway and echoes through a game service, on a clean path and through a
// lossy one; forged datagrams open no session and forged openers only as
// many as the bounds allow.
//
// The lossy path is a UDP relay in this test (5% of the datagrams dropped
// each way, each delayed 0..20 ms, so they also reorder): this container's
// kernel has network namespaces but no netem qdisc (sch_netem), so `tc
// qdisc ... netem` is not available.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/kcp/connection.h"
#include "gatehouse/kcp/segment.h"
#include "gateway_process.h"
#include "http_get.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;

const std::string kGoPeer = GATEHOUSE_KCP_GO_PEER;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          (name + "-" + std::to_string(::getpid()) + ".log"))
      .string();
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

/// A UDP socket on 127.0.0.1, port chosen by the kernel.
int udp_socket() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    throw std::runtime_error("udp_socket: socket or bind failed");
  }
  return fd;
}

std::uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

/// A KCP datagram of one push: an opener when sn and una are 0. Its
/// payload starts a 100-byte frame and stops short of it (so a forged
/// session waits for the rest, as a slow client would).
std::vector<std::byte> push(std::uint32_t conv, std::uint32_t sn, std::uint32_t una,
                            std::size_t payload) {
  std::vector<std::byte> d(kcp::kHeaderBytes + payload, std::byte{0x42});
  d[kcp::kHeaderBytes] = std::byte{0};
  d[kcp::kHeaderBytes + 1] = std::byte{100};
  kcp::SegmentHeader h;
  h.conv = conv;
  h.cmd = kcp::Command::kPush;
  h.wnd = 32;
  h.sn = sn;
  h.una = una;
  h.len = static_cast<std::uint32_t>(payload);
  kcp::encode_header(h, std::span<std::byte, kcp::kHeaderBytes>(d.data(), kcp::kHeaderBytes));
  return d;
}

void send_to(int fd, std::uint16_t port, std::span<const std::byte> d) {
  const sockaddr_in to = loopback(port);
  ::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
}

/// Relays one client's datagrams to `upstream` and back, dropping `loss` of
/// them each way and delaying each by 0..jitter (so that they reorder).
class LossyUdpRelay {
 public:
  LossyUdpRelay(std::uint16_t upstream, double loss, std::chrono::milliseconds jitter,
                std::uint32_t seed)
      : client_side_(udp_socket()), upstream_side_(udp_socket()), rng_(seed) {
    const sockaddr_in to = loopback(upstream);
    if (::connect(upstream_side_, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
      throw std::runtime_error("LossyUdpRelay: connect failed");
    }
    thread_ = std::thread([this, loss, jitter] { run(loss, jitter); });
  }
  ~LossyUdpRelay() {
    stop_ = true;
    thread_.join();
    ::close(client_side_);
    ::close(upstream_side_);
  }
  std::uint16_t port() const { return port_of(client_side_); }
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> relayed{0};

 private:
  struct Held {
    std::chrono::steady_clock::time_point at;
    bool to_client;
    std::vector<char> bytes;
  };

  void run(double loss, std::chrono::milliseconds jitter) {
    std::uniform_real_distribution<double> chance(0, 1);
    std::uniform_int_distribution<int> delay_us(0, static_cast<int>(jitter.count() * 1000));
    std::vector<Held> held;
    sockaddr_in client{};
    bool have_client = false;
    char buffer[2048];
    while (!stop_) {
      const auto now = std::chrono::steady_clock::now();
      for (auto it = held.begin(); it != held.end();) {
        if (it->at > now) {
          ++it;
          continue;
        }
        if (it->to_client) {
          ::sendto(client_side_, it->bytes.data(), it->bytes.size(), 0,
                   reinterpret_cast<sockaddr*>(&client), sizeof client);
        } else {
          ::send(upstream_side_, it->bytes.data(), it->bytes.size(), 0);
        }
        ++relayed;
        it = held.erase(it);
      }
      pollfd p[2] = {{client_side_, POLLIN, 0}, {upstream_side_, POLLIN, 0}};
      ::poll(p, 2, 1);
      for (int side = 0; side < 2; ++side) {
        if ((p[side].revents & POLLIN) == 0) continue;
        sockaddr_in from{};
        socklen_t len = sizeof from;
        const ssize_t n = ::recvfrom(p[side].fd, buffer, sizeof buffer, MSG_DONTWAIT,
                                     reinterpret_cast<sockaddr*>(&from), &len);
        if (n <= 0) continue;
        if (side == 0) {
          client = from;
          have_client = true;
        }
        if (side == 1 && !have_client) continue;
        if (chance(rng_) < loss) {
          ++dropped;
          continue;
        }
        held.push_back(
            {std::chrono::steady_clock::now() + std::chrono::microseconds(delay_us(rng_)),
             side == 1, std::vector<char>(buffer, buffer + n)});
      }
    }
  }

  int client_side_;
  int upstream_side_;
  std::mt19937 rng_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// A KCP conversation the test drives by hand (gw::kcp on a connected UDP
/// socket): it decides when acks and data leave, which a real client never
/// lets it do.
class HandDrivenKcp {
 public:
  explicit HandDrivenKcp(std::uint16_t port)
      : fd_(udp_socket()), session_(0x7e57, {}, [this](std::span<const std::byte> d) {
          ::send(fd_, d.data(), d.size(), 0);
        }) {
    const sockaddr_in to = loopback(port);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
      throw std::runtime_error("HandDrivenKcp: connect failed");
    }
  }
  ~HandDrivenKcp() { ::close(fd_); }
  HandDrivenKcp(const HandDrivenKcp&) = delete;
  HandDrivenKcp& operator=(const HandDrivenKcp&) = delete;

  kcp::Connection& session() { return session_; }
  static kcp::Millis now() {
    return static_cast<kcp::Millis>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
  }

  /// Queues a client frame `| size | seq | proto | body |` and sends it now.
  void send_frame(std::int16_t proto, std::span<const std::byte> body) {
    std::vector<std::byte> frame;
    ByteWriter(frame)
        .u16(static_cast<std::uint16_t>(protocol::kClientHeaderBytes + body.size()))
        .u32(++seq_)
        .i16(proto)
        .bytes(body);
    session_.send(frame);
    session_.flush(now());
  }

  /// Takes the datagrams that arrive into the session until a gateway
  /// payload with `proto` is in the stream (or `timeout`); with `answer`
  /// false nothing goes back meanwhile, so the acks it owes stay owed.
  std::optional<client::Packet> wait_for(std::int16_t proto, bool answer,
                                         std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      poll_once(answer);
      std::vector<std::byte> chunk(session_.readable());
      stream_.insert(stream_.end(), chunk.begin(),
                     chunk.begin() + static_cast<std::ptrdiff_t>(session_.receive(chunk)));
      for (;;) {
        const auto scan = protocol::scan_frame(stream_, protocol::kMaxPayload);
        if (scan.kind != protocol::FrameScan::kFrame) break;
        const std::vector<std::byte> payload(
            stream_.begin() + protocol::kSizeBytes,
            stream_.begin() +
                static_cast<std::ptrdiff_t>(protocol::kSizeBytes + scan.payload_bytes));
        stream_.erase(stream_.begin(),
                      stream_.begin() +
                          static_cast<std::ptrdiff_t>(protocol::kSizeBytes + scan.payload_bytes));
        const auto packet = protocol::parse_server_payload(payload);
        if (packet && packet->proto == proto) {
          return client::Packet{packet->proto, {packet->body.begin(), packet->body.end()}};
        }
      }
    }
    return std::nullopt;
  }

  /// Runs the session until everything sent is acknowledged (or `timeout`).
  bool wait_acknowledged(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (session_.unacknowledged_bytes() != 0) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      poll_once(true);
    }
    return true;
  }

 private:
  void poll_once(bool answer) {
    pollfd p{fd_, POLLIN, 0};
    ::poll(&p, 1, 5);
    std::array<std::byte, 1501> datagram;
    for (;;) {
      const ssize_t n = ::recv(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT);
      if (n < 0) break;
      (void)session_.input({datagram.data(), static_cast<std::size_t>(n)}, now());
    }
    if (answer) session_.update(now());
  }

  int fd_;
  kcp::Connection session_;
  std::uint32_t seq_ = 0;
  std::vector<std::byte> stream_;
};

class KcpGateway : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) {
    ASSERT_TRUE(std::filesystem::exists(kGoPeer))
        << kGoPeer << " was not built: install golang-go and golang-github-xtaci-kcp-dev "
        << "(tools/setup.sh) and reconfigure";
    extra.insert(extra.end(), {"--rpm-limit", "0"});
    GatewayOptions options{game_.port(), 2, extra, {}};
    options.listen = "127.0.0.1:0,transport=tcp+kcp";
    gateway_.emplace(options);
  }
  double metric(const std::string& name) {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"), name);
  }
  bool eventually(const std::string& name, double value) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < deadline) {
      if (metric(name) == value) return true;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << name << " = " << metric(name) << ", expected " << value;
    return false;
  }
  /// Runs kcp-go gonet2 clients against `port` at once; each must log in and
  /// get every echo back once and in order.
  void run_clients(std::uint16_t port, int clients, int echoes) {
    std::vector<ChildProcess> running;
    std::vector<std::string> logs;
    for (int i = 0; i < clients; ++i) {
      logs.push_back(temp_path("kcp-gonet2-" + std::to_string(i)));
      std::filesystem::remove(logs.back());
      running.emplace_back(
          std::vector<std::string>{kGoPeer, "gonet2", "127.0.0.1:" + std::to_string(port),
                                   std::to_string(echoes), std::to_string(7 + i)},
          logs.back());
    }
    for (int i = 0; i < clients; ++i) {
      const auto status = running[static_cast<std::size_t>(i)].wait(kPatience * 6);
      const std::string log = slurp(logs[static_cast<std::size_t>(i)]);
      ASSERT_TRUE(status.has_value()) << "kcp-go client " << i << " still running:\n" << log;
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "kcp-go client " << i << " " << describe_status(*status) << ":\n"
          << log << "\ngateway log:\n"
          << gateway_->log();
      EXPECT_NE(log.find(std::to_string(echoes) + " echoes in order"), std::string::npos) << log;
      std::filesystem::remove(logs[static_cast<std::size_t>(i)]);
    }
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

// Three kcp-go clients at once on the TCP listener's port, beside TCP
// clients: each logs in (a game stream opens for it) and echoes 300 frames.
// A session the client leaves (KCP has no close) ends at the read timeout.
TEST_F(KcpGateway, KcpGoClientsLogInAndEcho) {
  start({"--read-timeout", "3"});
  client::Client tcp;
  tcp.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(tcp.login("tcp-beside-kcp", "", kPatience).ok());

  run_clients(gateway_->port(), 3, 300);
  EXPECT_TRUE(game_.wait_for_streams(4, kPatience));
  EXPECT_EQ(metric("gatehouse_kcp_sessions_accepted_total"), 3);
  EXPECT_EQ(metric("gatehouse_connections_accepted_total"), 4);
  EXPECT_EQ(metric("gatehouse_kcp_datagrams_dropped_total"), 0);
  EXPECT_TRUE(eventually("gatehouse_kcp_sessions_open", 0));
  EXPECT_GE(metric("gatehouse_connections_closed_total{reason=\"read_timeout\"}"), 3);
  client::Client again;  // (the first has met the read timeout by now)
  again.connect("127.0.0.1", gateway_->port());
  EXPECT_TRUE(again.login("tcp-after-kcp", "", kPatience).ok());
}

// 5% of the datagrams lost each way, 0..20 ms of jitter: every echo still
// arrives once and in order (the client checks both).
TEST_F(KcpGateway, LossAndJitterLoseNothing) {
  start();
  LossyUdpRelay relay(gateway_->port(), 0.05, 20ms, 1);
  run_clients(relay.port(), 1, 300);
  EXPECT_GT(relay.dropped.load(), 0u) << "the path did lose datagrams";
  EXPECT_EQ(metric("gatehouse_kcp_sessions_accepted_total"), 1);
}

// The same lossy path with gw::client's KCP transport (--transport kcp):
// pipelined echoes all arrive, once and in order.
TEST_F(KcpGateway, GwClientThroughLossAndJitterLosesNothing) {
  start();
  LossyUdpRelay relay(gateway_->port(), 0.05, 20ms, 2);
  client::Client c;
  c.connect("127.0.0.1", relay.port(), kPatience, {.kind = client::TransportKind::kKcp});
  ASSERT_TRUE(c.login("kcp-lossy", "", kPatience).ok()) << gateway_->log();
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 30; ++i) {
      ASSERT_TRUE(c.send(client::demo::kPingReq, client::to_bytes(std::to_string(round * 30 + i))));
    }
    for (int i = 0; i < 30; ++i) {
      const auto ack = c.receive_proto(client::demo::kPingAck, kPatience);
      ASSERT_TRUE(ack.has_value()) << "echo " << round * 30 + i;
      EXPECT_EQ(client::as_text(ack->body), std::to_string(round * 30 + i));
    }
  }
  EXPECT_GT(relay.dropped.load(), 0u) << "the path did lose datagrams";
}

// Random datagrams and forged mid-conversation segments open nothing; forged
// openers (anyone can forge one) open at most udp-pending-sessions sessions,
// which end at login-timeout; a redial from the same port replaces its
// session. A real client gets in once the forged ones are gone.
TEST_F(KcpGateway, ForgedDatagramsCostABoundedTable) {
  start({"--address-limits-exempt", "none", "--udp-pending-sessions", "8", "--udp-sessions-per-ip",
         "100", "--login-timeout", "2", "--connect-rate-per-ip", "0"});
  const std::uint16_t port = gateway_->port();
  std::mt19937 rng(5);
  const int junk = udp_socket();
  // In bursts of 200 that the gateway has counted before the next, so that
  // none is lost to a full socket buffer on a busy machine.
  for (int burst = 0; burst < 30; ++burst) {
    for (int i = 0; i < 100; ++i) {
      std::vector<std::byte> d(1 + rng() % 100);
      for (auto& b : d) b = static_cast<std::byte>(rng());
      send_to(junk, port, d);
      send_to(junk, port, push(static_cast<std::uint32_t>(rng()), 5, 3, 10));  // not sn 0
    }
    ASSERT_TRUE(eventually("gatehouse_kcp_datagrams_dropped_total", 200.0 * (burst + 1)));
  }
  EXPECT_EQ(metric("gatehouse_kcp_sessions_accepted_total"), 0);

  std::vector<int> forgers;
  for (int i = 0; i < 20; ++i) {
    forgers.push_back(udp_socket());
    send_to(forgers.back(), port, push(static_cast<std::uint32_t>(rng()), 0, 0, 8));
  }
  EXPECT_TRUE(eventually("gatehouse_kcp_sessions_refused_total{reason=\"pending_limit\"}", 12));
  EXPECT_EQ(metric("gatehouse_kcp_sessions_accepted_total"), 8);
  EXPECT_EQ(metric("gatehouse_kcp_sessions_open"), 8);
  EXPECT_TRUE(gateway_->wait_log("KCP session from 127.0.0.1 refused: udp-pending-sessions"));

  // A redial: the same port, a new conv, sn 0. Replaces; the table does not grow.
  send_to(forgers[0], port, push(0x5eed, 0, 0, 8));
  EXPECT_TRUE(eventually("gatehouse_kcp_sessions_accepted_total", 9));
  EXPECT_TRUE(eventually("gatehouse_kcp_sessions_open", 8)) << "once the worker let the old go";
  EXPECT_TRUE(gateway_->wait_log("reason=client_closed"));

  // They never log in: gone at login-timeout, and a real client gets in.
  EXPECT_TRUE(eventually("gatehouse_kcp_sessions_open", 0));
  run_clients(port, 1, 20);
  for (const int fd : forgers) ::close(fd);
  ::close(junk);
}

// A kicked session lingers until the client has acknowledged its last
// output. The datagram with that ack may carry the client's own data too
// (here a heartbeat): it is thrown away, but acknowledged before the
// session is forgotten, or the client resends it until its link dies.
TEST_F(KcpGateway, TheLastDatagramOfAKickedSessionIsAcknowledged) {
  start();
  HandDrivenKcp c(gateway_->port());
  std::vector<std::byte> login;
  protocol::encode_login(client::Client::make_login_request("kcp-last-acks", ""), login);
  c.send_frame(protocol::kUserLoginReq, login);
  const auto ack = c.wait_for(protocol::kUserLoginSucceedAck, true, kPatience);
  ASSERT_TRUE(ack.has_value() && ack->body.size() == 4) << gateway_->log();
  const std::int32_t uid = ByteReader(ack->body).i32();
  ASSERT_TRUE(c.wait_acknowledged(kPatience));

  ASSERT_TRUE(game_.wait_for_streams(1, kPatience));
  ASSERT_TRUE(game_.push(uid, client::to_bytes("\x03\xealast words")));
  ASSERT_TRUE(game_.kick(uid));
  // The last words arrive; their ack is held back until the session lingers.
  ASSERT_TRUE(c.wait_for(client::demo::kPingAck, false, kPatience).has_value()) << gateway_->log();
  ASSERT_TRUE(gateway_->wait_log("output flushed, lingering")) << gateway_->log();
  const std::array<std::byte, 4> heartbeat{};
  c.send_frame(protocol::kHeartBeatReq, heartbeat);  // one datagram: the ack, then this
  EXPECT_TRUE(c.wait_acknowledged(std::chrono::seconds(5)))
      << "the heartbeat sent with the last ack was never acknowledged\n"
      << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log("reason=kicked_by_game"));
}

// udp-sessions-per-ip: one address's sessions are bounded on their own.
TEST_F(KcpGateway, SessionsPerAddressAreBounded) {
  start({"--address-limits-exempt", "none", "--udp-sessions-per-ip", "3", "--connect-rate-per-ip",
         "0"});
  std::mt19937 rng(9);
  std::vector<int> forgers;
  for (int i = 0; i < 10; ++i) {
    forgers.push_back(udp_socket());
    send_to(forgers.back(), gateway_->port(), push(static_cast<std::uint32_t>(rng()), 0, 0, 8));
  }
  EXPECT_TRUE(eventually("gatehouse_kcp_sessions_refused_total{reason=\"connection_limit\"}", 7));
  EXPECT_EQ(metric("gatehouse_kcp_sessions_open"), 3);
  for (const int fd : forgers) ::close(fd);
}

}  // namespace
}  // namespace gatehouse::testing
