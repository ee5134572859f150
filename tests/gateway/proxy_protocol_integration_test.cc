// PROXY protocol listeners (issue 15, docs/proxy-protocol.md) against the
// real gateway over real sockets: the test plays the load balancer, writing
// the header (byte by byte as the specification lays it out) in front of a
// player's frames from 127.0.0.1, the default trusted source. What the
// gateway makes of the header shows where the client address goes: the
// worker's session lines (remote=), the per-address limits, the metrics.
// (The game's gonet2 stream metadata carries no address: userid,
// gateway-id and login-seq only.)
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gateway_process.h"
#include "http_get.h"
#include "raw_session.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using R = RawSession;

Wire text(std::string_view s) {
  return {s.begin(), s.end()};
}

/// "PROXY TCP4 <source> 127.0.0.1 <port> 8888\r\n".
Wire v1_header(std::string_view source, std::uint16_t port) {
  return text("PROXY TCP4 " + std::string(source) + " 127.0.0.1 " + std::to_string(port) +
              " 8888\r\n");
}

const Wire kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/// A v2 PROXY header: `command` (0x20 LOCAL, 0x21 PROXY), `family`, then the
/// address block and TLVs in `body`.
Wire v2_header(std::uint8_t command, std::uint8_t family, const Wire& body) {
  return R::cat(
      {kV2Signature, {command, family}, R::u16(static_cast<std::uint16_t>(body.size())), body});
}

/// TCP over IPv6 from 2001:db8::42:`port` to [::1]:8888, with an ALPN TLV.
Wire v2_tcp6(std::uint16_t port) {
  Wire source(16, 0);
  source[0] = 0x20;
  source[1] = 0x01;
  source[2] = 0x0d;
  source[3] = 0xb8;
  source[15] = 0x42;
  Wire destination(16, 0);
  destination[15] = 1;
  return v2_header(
      0x21, 0x21,
      R::cat({source, destination, R::u16(port), R::u16(8888), {0x01, 0x00, 0x02}, text("h2")}));
}

/// TCP over IPv4 from `a.b.c.d`:`port`.
Wire v2_tcp4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, std::uint16_t port) {
  return v2_header(0x21, 0x11, R::cat({{a, b, c, d}, {127, 0, 0, 1}, R::u16(port), R::u16(8888)}));
}

Wire login_body(std::string_view udid) {
  return R::cat({R::u32(1), R::str(udid), R::str(udid), R::u32(7), R::str("en"), R::str("app"),
                 R::str("linux"), R::str("box"), R::str("dev-1"), R::u32(2), R::str("10.0.0.1")});
}

class ProxyProtocolTest : public ::testing::Test {
 protected:
  /// A gateway (login: any) whose listener has `options` (",proxy=v2" ...).
  void start(const std::string& options, std::vector<std::string> extra = {}) {
    GatewayOptions o{game_.port(), 1, std::move(extra), {}};
    o.listen = "127.0.0.1:0" + options;
    gateway_.emplace(std::move(o));
  }

  /// Logs `session` in as `udid` (after whatever header it wrote) and checks
  /// it is served: a heartbeat, the login, an echo through the game.
  void expect_served(RawSession& session, std::string_view udid) {
    session.send(1, 0, R::u32(0x0BADCAFE));
    EXPECT_EQ(session.read_payload(), (Wire{0x00, 0x01, 0x0B, 0xAD, 0xCA, 0xFE}));
    session.send(2, 10, login_body(udid));
    const auto ack = session.read_payload();
    ASSERT_TRUE(ack.has_value()) << gateway_->log();
    EXPECT_EQ((Wire{ack->at(0), ack->at(1)}), (Wire{0x00, 0x0B})) << "user_login_succeed_ack";
    session.send(3, 1001, text("hi"));
    EXPECT_EQ(session.read_payload(), (Wire{0x03, 0xEA, 'h', 'i'}));
  }

  double metric(const std::string& sample) const {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"), sample);
  }

  /// Waits until the metric reaches `value` (the frontend counts it as it
  /// closes the connection, the test may look just before).
  bool wait_metric(const std::string& sample, double value) const {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (metric(sample) < value) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return metric(sample) == value;
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

// proxy=v1: the header and the player's first frame in one write; what the
// worker logs (and the game's logins, failed-login limits) see is the
// address the header names, not the balancer's.
TEST_F(ProxyProtocolTest, APlayerBehindAV1HeaderIsSeenAtTheHeadersAddress) {
  start(",proxy=v1");
  RawSession s(gateway_->port());
  s.write(R::cat({v1_header("203.0.113.7", 40001), s.frame(1, 0, R::u32(0x0BADCAFE))}));
  EXPECT_EQ(s.read_payload(), (Wire{0x00, 0x01, 0x0B, 0xAD, 0xCA, 0xFE}))
      << "the bytes after the header are the first frame";
  s.send(2, 10, login_body("v1-player"));
  ASSERT_TRUE(s.read_payload().has_value());
  s.send(3, 1001, text("hi"));
  EXPECT_EQ(s.read_payload(), (Wire{0x03, 0xEA, 'h', 'i'}));
  EXPECT_TRUE(gateway_->wait_log("remote=203.0.113.7:40001 user=")) << gateway_->log();
  EXPECT_EQ(gateway_->log_count("remote=127.0.0.1"), 0u) << gateway_->log();
  EXPECT_EQ(metric("gatehouse_proxy_headers_total{version=\"1\"}"), 1);
}

// proxy=v2: IPv6 in the header (with a TLV, skipped), the header itself
// trickled in two writes, then the frames.
TEST_F(ProxyProtocolTest, APlayerBehindAV2HeaderIsSeenAtTheHeadersAddress) {
  start(",proxy=v2");
  RawSession s(gateway_->port());
  const Wire header = v2_tcp6(40002);
  s.write(Wire(header.begin(), header.begin() + 14));
  std::this_thread::sleep_for(50ms);
  s.write(Wire(header.begin() + 14, header.end()));
  expect_served(s, "v2-player");
  EXPECT_TRUE(gateway_->wait_log("remote=[2001:db8::42]:40002 user=")) << gateway_->log();
  EXPECT_EQ(metric("gatehouse_proxy_headers_total{version=\"2\"}"), 1);
}

// A listener's options are its own when a kcp-only listener (a UDP socket,
// no TCP acceptor) comes before it: the second --listen takes PROXY headers.
TEST_F(ProxyProtocolTest, AListenerBehindAKcpOnlyOneKeepsItsOptions) {
  GatewayOptions o{game_.port(), 1, {"--listen", "127.0.0.1:0,proxy=v1"}, {}};
  o.listen = "127.0.0.1:0,transport=kcp";
  gateway_.emplace(std::move(o));
  RawSession s(gateway_->port(1));  // the second --listen
  s.write(v1_header("203.0.113.9", 40009));
  expect_served(s, "behind-kcp");
  EXPECT_TRUE(gateway_->wait_log("remote=203.0.113.9:40009 user=")) << gateway_->log();
}

// max-connections-per-ip counts the header's address: two players through
// one balancer (one source address, 127.0.0.1) both get in with a limit of
// 1; a second connection of the same player address is refused.
TEST_F(ProxyProtocolTest, PerAddressLimitsCountTheHeadersAddress) {
  start(",proxy=v2", {"--max-connections-per-ip", "1"});
  RawSession first(gateway_->port());
  first.write(v2_tcp4(198, 51, 100, 1, 50001));
  expect_served(first, "player-one");
  RawSession second(gateway_->port());
  second.write(v2_tcp4(198, 51, 100, 2, 50002));
  expect_served(second, "player-two");
  RawSession again(gateway_->port());
  again.write(R::cat({v2_tcp4(198, 51, 100, 1, 50003), again.frame(1, 0, R::u32(1))}));
  EXPECT_TRUE(again.wait_closed()) << "a second connection of 198.51.100.1";
  EXPECT_TRUE(
      gateway_->wait_log("connection from 198.51.100.1 refused: 1 connections from that "
                         "address already"))
      << gateway_->log();
  EXPECT_EQ(metric("gatehouse_connections_refused_total{reason=\"address_limit\"}"), 1);
  first.send(4, 0, R::u32(9));
  EXPECT_EQ(first.read_payload(), (Wire{0x00, 0x01, 0, 0, 0, 9})) << "the first is still served";
}

// A header from outside proxy-from is not believed: with proxy=v2 such a
// source is closed at accept; with proxy=optional its header closes it,
// while its plain clients are served as themselves.
TEST_F(ProxyProtocolTest, AHeaderFromAnUntrustedSourceIsRefused) {
  start(",proxy=v2,proxy-from=10.0.0.0/8+fd00::/8");
  RawSession s(gateway_->port());
  s.write(v2_tcp4(198, 51, 100, 9, 50009));
  EXPECT_TRUE(s.wait_closed());
  EXPECT_TRUE(wait_metric("gatehouse_proxy_refused_total{reason=\"untrusted\"}", 1));
  EXPECT_TRUE(
      gateway_->wait_log("connection from 127.0.0.1 to listener 0 closed: not from the "
                         "listener's proxy-from (proxy=v2)"))
      << gateway_->log();

  start(",proxy=optional,proxy-from=10.0.0.0/8");
  RawSession header(gateway_->port());
  header.write(v1_header("198.51.100.9", 50009));
  EXPECT_TRUE(header.wait_closed());
  EXPECT_TRUE(wait_metric("gatehouse_proxy_refused_total{reason=\"untrusted\"}", 1));
  EXPECT_TRUE(gateway_->wait_log("closed: a PROXY header from outside proxy-from (proxy=optional)"))
      << gateway_->log();
  RawSession plain(gateway_->port());
  expect_served(plain, "direct-player");
  EXPECT_TRUE(gateway_->wait_log("remote=127.0.0.1:")) << gateway_->log();
  EXPECT_EQ(gateway_->log_count("remote=198.51.100.9"), 0u);
}

// Where a header is required, a connection without one, with the other
// version, or with a malformed one is closed, each counted by its reason.
TEST_F(ProxyProtocolTest, AMissingWrongOrMalformedHeaderIsRefused) {
  start(",proxy=v2");
  RawSession plain(gateway_->port());
  plain.send(1, 0, R::u32(1));  // a player straight to the listener
  EXPECT_TRUE(plain.wait_closed());
  EXPECT_TRUE(wait_metric("gatehouse_proxy_refused_total{reason=\"missing\"}", 1));
  EXPECT_TRUE(gateway_->wait_log("closed: no PROXY header (proxy=v2)")) << gateway_->log();

  RawSession v1(gateway_->port());
  v1.write(v1_header("198.51.100.3", 50003));
  EXPECT_TRUE(v1.wait_closed());
  EXPECT_TRUE(wait_metric("gatehouse_proxy_refused_total{reason=\"missing\"}", 2));

  RawSession version(gateway_->port());
  version.write(R::cat({kV2Signature, {0x31, 0x11, 0x00, 0x0C}, Wire(12, 1)}));  // version 3
  EXPECT_TRUE(version.wait_closed());
  RawSession short_block(gateway_->port());
  short_block.write(v2_header(0x21, 0x21, Wire(12, 1)));  // TCP6 needs 36 bytes
  EXPECT_TRUE(short_block.wait_closed());
  EXPECT_TRUE(wait_metric("gatehouse_proxy_refused_total{reason=\"malformed\"}", 2));
  // One line a second per reason (the second is counted, not written).
  EXPECT_TRUE(gateway_->wait_log("a malformed PROXY header: v2_version")) << gateway_->log();

  start(",proxy=v1");
  RawSession bad(gateway_->port());
  bad.write(text("PROXY TCP4 198.51.100.1 127.0.0.1 040000 8888\r\n"));  // a leading zero
  EXPECT_TRUE(bad.wait_closed());
  RawSession lf(gateway_->port());
  lf.write(text("PROXY TCP4 198.51.100.1 127.0.0.1 4000 8888\n"));
  EXPECT_TRUE(lf.wait_closed());
  EXPECT_TRUE(wait_metric("gatehouse_proxy_refused_total{reason=\"malformed\"}", 2));
  EXPECT_EQ(metric("gatehouse_connections_accepted_total"), 0) << "none got a session";
  EXPECT_EQ(gateway_->log_count("open conn="), 0u);
}

// proxy=optional takes v1, v2 and no header on one listener, each as what
// it is; v2 LOCAL (a balancer's own health check) keeps the real peer.
TEST_F(ProxyProtocolTest, OptionalTakesEitherVersionOrNone) {
  start(",proxy=optional");
  RawSession v1(gateway_->port());
  v1.write(v1_header("192.0.2.11", 41011));
  expect_served(v1, "optional-v1");
  RawSession v2(gateway_->port());
  v2.write(v2_tcp4(192, 0, 2, 12, 41012));
  expect_served(v2, "optional-v2");
  RawSession none(gateway_->port());
  expect_served(none, "optional-none");
  RawSession local(gateway_->port());
  local.write(v2_header(0x20, 0x00, {}));
  expect_served(local, "optional-local");
  EXPECT_TRUE(gateway_->wait_log("remote=192.0.2.11:41011 user=")) << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log("remote=192.0.2.12:41012 user=")) << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log_count("login conn=", 4));
  EXPECT_EQ(gateway_->log_count("remote=127.0.0.1:"), 2u * 2u)
      << "no header, and LOCAL: open and login lines at the real peer\n"
      << gateway_->log();
  EXPECT_EQ(metric("gatehouse_proxy_headers_total{version=\"1\"}"), 1);
  EXPECT_EQ(metric("gatehouse_proxy_headers_total{version=\"2\"}"), 2);
}

// A connection that sends no header (or half of one) holds no session slot
// and is closed at its deadline, min(read-timeout, 5 s).
TEST_F(ProxyProtocolTest, ASilentConnectionIsClosedAtTheHeaderDeadline) {
  start(",proxy=v1", {"--read-timeout", "1"});
  const auto began = std::chrono::steady_clock::now();
  RawSession silent(gateway_->port());
  RawSession half(gateway_->port());
  half.write(text("PROXY TCP4 198.51.100.1 "));
  EXPECT_TRUE(silent.wait_closed());
  EXPECT_TRUE(half.wait_closed());
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_GE(took, 900ms) << "not before the deadline";
  EXPECT_LT(took, 5s) << "at the read-timeout (1 s), plus the sweep";
  EXPECT_TRUE(wait_metric("gatehouse_proxy_refused_total{reason=\"timeout\"}", 2));
  EXPECT_TRUE(gateway_->wait_log("no PROXY header within its deadline")) << gateway_->log();
  EXPECT_EQ(metric("gatehouse_connections_accepted_total"), 0) << "neither held a slot";
}

}  // namespace
}  // namespace gatehouse::testing
