// The frontend's per-connection bounds (issue 20) against the real gateway
// over real sockets: each test plays one hostile client (or hundreds) and
// asserts who is closed, with which reason, and within what time, while a
// well-behaved player on the same worker goes on being served.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// A plain non-blocking TCP connection to the gateway, for clients that
/// misbehave below the level of the client library.
class RawConn {
 public:
  /// `from`: the local address to connect from (127.x.y.z are all loopback:
  /// distinct client addresses for the per-address limits).
  explicit RawConn(std::uint16_t port, const char* from = nullptr)
      : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    if (from != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, from, &local.sin_addr);
      if (::bind(fd_, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) return;
    }
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

/// A clear heart_beat_req frame: `| size | seq | proto 0 | id |`.
std::vector<std::uint8_t> heartbeat(std::uint32_t seq) {
  return {0,
          10,
          static_cast<std::uint8_t>(seq >> 24),
          static_cast<std::uint8_t>(seq >> 16),
          static_cast<std::uint8_t>(seq >> 8),
          static_cast<std::uint8_t>(seq),
          0,
          0,
          0,
          0,
          0,
          7};
}

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

/// A game message for a client: `| proto i16 | body |` with a body of `n` bytes.
std::vector<std::byte> game_message(std::size_t n) {
  std::vector<std::byte> message{std::byte{0x04}, std::byte{0x01}};
  message.resize(2 + n, std::byte{0x5a});
  return message;
}

/// Makes the client's receive buffer small, so that what the gateway sends
/// it backs up in the gateway soon.
void shrink_receive_buffer(int fd) {
  const int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
}

class FrontendBoundsTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra) {
    gateway_.emplace(GatewayOptions{game_.port(),
                                    1,
                                    std::move(extra),
                                    {"tok-player 1001", "tok-sleeper 1002", "tok-later 1003"}});
  }
  /// Logged in as user 1001, or as whom `token` names (one session per
  /// user: a second login of 1001 would replace the first).
  std::unique_ptr<client::Client> player(std::string_view name,
                                         std::string_view token = "tok-player") {
    return logged_in_client(gateway_->port(), name, token, /*encrypt=*/true);
  }

  /// User 1002 ("tok-sleeper") with a small receive buffer, so that what
  /// the gateway sends it backs up soon; logged in, its game stream open
  /// (the bystander's is the other).
  std::unique_ptr<client::Client> slow_reader(std::string_view udid) {
    auto c = std::make_unique<client::Client>();
    c->connect("127.0.0.1", gateway_->port());
    shrink_receive_buffer(c->native_handle());
    EXPECT_TRUE(c->login(udid, "tok-sleeper", kPatience).ok());
    EXPECT_TRUE(game_.wait_for_streams(2, kPatience));
    return c;
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
  start({"--read-timeout", "2", "--rpm-limit", "0", "--connect-rate-per-ip", "0"});
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
  auto next_echo = t0;
  while (open > 0 && Clock::now() - t0 < kPatience) {
    open = 0;
    const bool trickle = Clock::now() >= next_byte;
    if (trickle) next_byte += 200ms;
    for (auto& c : conns) {
      if (c->closed()) continue;
      ++open;
      if (trickle) c->send({0x5a});
    }
    if (Clock::now() >= next_echo) {  // whole frames keep its deadline moving
      next_echo = Clock::now() + 300ms;
      ASSERT_TRUE(echo_works(*bystander, "alive"));
    }
    std::this_thread::sleep_for(20ms);
  }
  const auto took = Clock::now() - t0;
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(open, 0) << "every trickling connection must be closed";
  // 2 s deadline + 100 ms sweep; the rest is slack for a busy machine.
  EXPECT_LT(took, 8s) << "closed " << seconds(took) << " s in";
  EXPECT_TRUE(gateway_->wait_log_count("reason=read_timeout", kConns)) << gateway_->log();
  EXPECT_EQ(gateway_->log_count("reason="), static_cast<std::size_t>(kConns))
      << "the bystander was not kicked";
}

// ------------------------------------------------------------------ output bounds

// A client that reads nothing while the game sends it 10 KB messages: well
// under txqueuelen in frames, it is kicked slow_consumer once its queue
// passes txqueue-bytes, and the frontend holds no more than that for it.
TEST_F(FrontendBoundsTest, OutputQueueIsBoundedInBytes) {
  start({"--txqueue-bytes", "65536", "--sockbuf", "4096", "--write-timeout", "3600"});
  auto bystander = player("bystander");
  auto sleeper = slow_reader("sleeper");
  ASSERT_FALSE(HasFailure());
  const auto message = game_message(10'000);
  int pushed = 0;
  for (; pushed < 100 && !gateway_->wait_log("reason=slow_consumer", 0ms); ++pushed) {
    game_.push(1002, message);
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(gateway_->wait_log("reason=slow_consumer")) << gateway_->log();
  // 64 KiB queued, plus what the two socket buffers took (a few KiB each,
  // the kernel doubles them): the kick comes long before txqueuelen (128).
  EXPECT_LT(pushed, 30) << "kicked after " << pushed << " messages of 10 KB";
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), 1u) << gateway_->log();
}

// A client that stops reading while a little output waits for it, and the
// game sends nothing more: no queue limit is reached, and it is the write
// deadline that kicks it, write-timeout after it last took a byte.
TEST_F(FrontendBoundsTest, ClientThatTakesNoByteIsKickedByTheWriteDeadline) {
  start({"--write-timeout", "1", "--sockbuf", "4096"});
  auto bystander = player("bystander");
  auto sleeper = slow_reader("sleeper");
  ASSERT_FALSE(HasFailure());
  const auto message = game_message(10'000);
  for (int i = 0; i < 10; ++i) game_.push(1002, message);  // 100 KB: more than the buffers take
  const auto pushed = Clock::now();
  ASSERT_TRUE(gateway_->wait_log("reason=slow_consumer")) << gateway_->log();
  const auto took = Clock::now() - pushed;
  // 1 s deadline + 100 ms sweep; the rest is slack for a busy machine.
  EXPECT_LT(took, 5s) << seconds(took) << " s";
  EXPECT_TRUE(sleeper->wait_closed(kPatience));
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), 1u) << gateway_->log();
}

// A kicked client (over the rpm limit, with output still queued because it
// reads nothing) that keeps sending: the frontend stops reading it at once
// and closes it within the linger, so the client can push little more than
// the socket buffers hold. (Before: it was read, and its frames forwarded to
// the worker, for as long as its queue did not drain.)
TEST_F(FrontendBoundsTest, KickedClientIsNotReadAndClosedWithinTheLinger) {
  start({"--rpm-limit", "20", "--linger", "1", "--sockbuf", "4096"});
  auto bystander = player("bystander");
  auto kicked = slow_reader("kicked");
  ASSERT_FALSE(HasFailure());
  // Echoed 8 KB pings back up (it reads nothing); the 21st frame is over the
  // rpm limit.
  const std::vector<std::byte> body(8000, std::byte{0x33});
  for (int i = 0; i < 25; ++i) {
    if (!kicked->send(1001, body)) break;
  }
  ASSERT_TRUE(gateway_->wait_log("reason=rpm_exceeded")) << gateway_->log();
  const auto kick = Clock::now();
  // Now junk as fast as the socket takes it, until the gateway resets it
  // (through a send buffer of a known size: loopback would autotune it).
  const int send_buffer = 65536;
  ::setsockopt(kicked->native_handle(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
  const std::vector<std::byte> junk(65536, std::byte{0x77});
  std::size_t sent = 0;
  bool reset = false;
  while (!reset && Clock::now() - kick < kPatience) {
    const ssize_t n =
        ::send(kicked->native_handle(), junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      reset = true;
    } else {
      pollfd p{kicked->native_handle(), POLLOUT, 0};
      ::poll(&p, 1, 50);
    }
  }
  const auto took = Clock::now() - kick;
  std::printf("kicked: closed %.2f s after the kick, %zu bytes taken after it\n", seconds(took),
              sent);
  EXPECT_TRUE(reset) << "the gateway must close the kicked connection";
  // 1 s linger + 100 ms sweep; the rest is slack for a busy machine.
  EXPECT_LT(took, 5s) << seconds(took) << " s";
  // The socket buffers on both sides (64 KiB and 4 KiB, doubled by the
  // kernel) and the 64 KiB the frontend may discard.
  EXPECT_LT(sent, std::size_t{1} << 20) << sent << " bytes taken after the kick";
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), 1u) << gateway_->log();
}

// ------------------------------------------------------------------ before login

// Connections that never log in but keep their read deadline alive with
// heartbeats are closed login_timeout, login-timeout after accept; a player
// that logged in is not.
TEST_F(FrontendBoundsTest, ConnectionsThatNeverLogInAreClosedByTheLoginDeadline) {
  constexpr int kConns = 50;
  start({"--login-timeout", "1", "--prelogin-frames", "1000"});
  auto bystander = player("bystander");
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < kConns; ++i) {
    conns.push_back(std::make_unique<RawConn>(gateway_->port()));
    ASSERT_TRUE(conns.back()->connected());
  }
  const auto t0 = Clock::now();
  int open = kConns;
  for (std::uint32_t seq = 1; open > 0 && Clock::now() - t0 < kPatience; ++seq) {
    open = 0;
    for (auto& c : conns) {
      if (c->closed()) continue;
      ++open;
      c->send(heartbeat(seq));
    }
    std::this_thread::sleep_for(100ms);
  }
  const auto took = Clock::now() - t0;
  EXPECT_EQ(open, 0);
  EXPECT_LT(took, 6s) << seconds(took) << " s";
  EXPECT_TRUE(gateway_->wait_log_count("reason=login_timeout", kConns)) << gateway_->log();
  EXPECT_TRUE(echo_works(*bystander, "after")) << "logged in over a second ago, still served";
  EXPECT_EQ(gateway_->log_count("reason="), static_cast<std::size_t>(kConns));
}

// Before login a connection may send a few frames and bytes: a ninth
// heartbeat, or a frame whose declared size is over the byte budget (as
// soon as its header is in), is kicked prelogin_exceeded. The defaults take
// a key exchange and a login (the bystander's, and every protocol test's).
TEST_F(FrontendBoundsTest, PreLoginBudgetKicksFloodsBeforeLogin) {
  start({});
  auto bystander = player("bystander");
  RawConn chatty(gateway_->port());
  for (std::uint32_t seq = 1; seq <= 9; ++seq) chatty.send(heartbeat(seq));
  RawConn big(gateway_->port());
  big.send(u16(20'000));  // the header alone: 16 KiB budget, and not a byte more is sent
  const auto t0 = Clock::now();
  while (!(chatty.closed() && big.closed()) && Clock::now() - t0 < kPatience) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(chatty.closed());
  EXPECT_TRUE(big.closed());
  EXPECT_LT(Clock::now() - t0, 5s) << "at once, not at a deadline";
  EXPECT_TRUE(gateway_->wait_log_count("reason=prelogin_exceeded", 2)) << gateway_->log();
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), 2u) << gateway_->log();
}

// ------------------------------------------------------------------ new connections

class ConnectRateTest : public FrontendBoundsTest {
 protected:
  double refused(const std::string& reason) {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"),
                         "gatehouse_connections_refused_total{reason=\"" + reason + "\"}");
  }
  /// Opens a connection from each of `from` as fast as it can; returns them
  /// once the gateway has decided on every one (accepted: its open line
  /// logged; refused: counted under the metric `reason`, and closed), all
  /// but `*accepted` of them refused; or after kPatience.
  std::vector<std::unique_ptr<RawConn>> flood(const std::vector<std::string>& from,
                                              const std::string& reason, int* accepted) {
    const auto opened_before = static_cast<int>(gateway_->log_count("open conn="));
    std::vector<std::unique_ptr<RawConn>> conns;
    for (const auto& address : from) {
      conns.push_back(std::make_unique<RawConn>(gateway_->port(), address.c_str()));
    }
    const auto t0 = Clock::now();
    int closed = 0;
    while (Clock::now() - t0 < kPatience) {
      closed = 0;
      for (auto& c : conns) closed += c->closed() ? 1 : 0;
      const auto opened = static_cast<int>(gateway_->log_count("open conn=")) - opened_before;
      if (refused(reason) == closed && closed + opened == static_cast<int>(from.size())) break;
      std::this_thread::sleep_for(20ms);
    }
    *accepted = static_cast<int>(from.size()) - closed;
    return conns;
  }
};

// 40 connections at once from one address over --connect-rate-per-ip 5: the
// bucket's burst (5, and whatever refilled meanwhile) is accepted, the rest
// refused at accept with a reset, counted, and logged once; another address
// is not affected, and a second later the address may connect again.
TEST_F(ConnectRateTest, NewConnectionsPerAddressAreABucket) {
  start({"--connect-rate-per-ip", "5", "--connect-rate", "0", "--address-limits-exempt", "none"});
  auto bystander = player("bystander");  // from 127.0.0.1 too: the first token
  int accepted = 0;
  auto conns = flood(std::vector<std::string>(40, "127.0.0.1"), "address_rate_limit", &accepted);
  EXPECT_GE(accepted, 3);
  EXPECT_LE(accepted, 7) << "a burst of 5 (the bystander took one) and a refill of 1 or 2";
  EXPECT_EQ(refused("address_rate_limit"), 40 - accepted);
  EXPECT_EQ(refused("rate_limit"), 0);
  EXPECT_EQ(gateway_->log_count("over connect-rate-per-ip"), 1u) << "one warning a second";
  RawConn elsewhere(gateway_->port(), "127.0.0.2");
  ASSERT_TRUE(elsewhere.connected());
  EXPECT_TRUE(gateway_->wait_log_count("open conn=", static_cast<std::size_t>(accepted) + 2))
      << "another address is accepted\n"
      << gateway_->log();
  // One second later the bucket has refilled.
  std::this_thread::sleep_for(1100ms);
  auto later = player("later", "tok-later");
  EXPECT_TRUE(echo_works(*later, "refilled"));
  EXPECT_TRUE(echo_works(*bystander, "after"));
  EXPECT_EQ(gateway_->log_count("reason="), 0u) << gateway_->log();
}

// Loopback is exempt from the per-address limits by default (a local proxy,
// or a load generator, brings many players from one address): 40
// connections at once from 127.0.0.1 over --connect-rate-per-ip 5 are all
// served, while another address of the same machine, not in the default
// ranges, is held to its bucket.
TEST_F(ConnectRateTest, LoopbackIsExemptFromThePerAddressBucketByDefault) {
  start({"--connect-rate-per-ip", "5", "--connect-rate", "0"});
  std::vector<std::unique_ptr<RawConn>> local;
  for (int i = 0; i < 40; ++i) local.push_back(std::make_unique<RawConn>(gateway_->port()));
  EXPECT_TRUE(gateway_->wait_log_count("open conn=", 40)) << gateway_->log();
  int accepted = 0;
  auto conns = flood(std::vector<std::string>(40, "127.0.0.2"), "address_rate_limit", &accepted);
  EXPECT_LE(accepted, 7) << "a burst of 5 and a refill of 1 or 2";
  EXPECT_EQ(refused("address_rate_limit"), 40 - accepted);
  for (auto& c : local) EXPECT_FALSE(c->closed()) << "no loopback connection was refused";
}

// The total bucket paces accepting instead of refusing: 60 connections from
// 60 addresses over --connect-rate 20 all get in, the first 20 at once and
// the rest as the bucket refills (about 2 s), waiting in the listen queue
// meanwhile; none is refused, and the pauses are counted.
TEST_F(ConnectRateTest, NewConnectionsOverTheTotalWaitInsteadOfBeingRefused) {
  start({"--connect-rate", "20", "--connect-rate-per-ip", "0"});
  auto bystander = player("bystander");
  const auto t0 = Clock::now();
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < 60; ++i) {
    conns.push_back(
        std::make_unique<RawConn>(gateway_->port(), ("127.0.1." + std::to_string(i + 1)).c_str()));
  }
  EXPECT_TRUE(gateway_->wait_log_count("open conn=", 61)) << gateway_->log();
  const auto took = Clock::now() - t0;
  EXPECT_GT(took, 1500ms) << "40 of them waited for the bucket: at least 2 s at 20 a second";
  for (auto& c : conns) EXPECT_FALSE(c->closed());
  EXPECT_EQ(refused("rate_limit"), 0);
  EXPECT_EQ(refused("address_rate_limit"), 0);
  EXPECT_GT(metric_sample(http_get(gateway_->metrics_port(), "/metrics"),
                          "gatehouse_accepts_paced_total"),
            0);
  EXPECT_GE(gateway_->log_count("accepting paused for"), 1u);
  EXPECT_TRUE(echo_works(*bystander, "after"));
}

}  // namespace
}  // namespace gatehouse::testing
