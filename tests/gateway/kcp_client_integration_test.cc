// gw::client and gatehouse-client over KCP (issue 15) against the real
// gateway listening with transport=tcp+kcp: log in, echo through a game
// service (small frames, and frames of many segments), the legacy key
// exchange, a kick seen without a close, and the CLI's --transport kcp end
// to end.
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

const client::TransportOptions kKcp{.kind = client::TransportKind::kKcp};

class KcpClient : public ::testing::Test {
 protected:
  void SetUp() override {
    GatewayOptions options{game_.port(), 1, {"--rpm-limit", "0"}, {}};
    options.listen = "127.0.0.1:0,transport=tcp+kcp";
    gateway_.emplace(options);
  }
  double metric(const std::string& name) {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"), name);
  }
  /// Sends `body` as a ping and expects it back.
  static void echo(client::Client& c, const std::vector<std::byte>& body) {
    ASSERT_TRUE(c.send(client::demo::kPingReq, body));
    const auto ack = c.receive_proto(client::demo::kPingAck, kPatience);
    ASSERT_TRUE(ack.has_value()) << "closed " << c.closed();
    EXPECT_EQ(ack->body, body);
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_F(KcpClient, LogsInAndEchoesSmallAndLargeFrames) {
  client::Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience, kKcp);
  EXPECT_EQ(c.transport(), client::TransportKind::kKcp);
  EXPECT_NE(c.local_port(), 0);
  const auto login = c.login("kcp-player", "", kPatience);
  ASSERT_TRUE(login.ok()) << client::to_string(login.status) << "\n" << gateway_->log();
  EXPECT_EQ(c.heartbeat(7, kPatience), 7);
  for (int i = 0; i < 50; ++i) echo(c, client::to_bytes("ping " + std::to_string(i)));
  // 60000 bytes: ~48 segments, more than gonet2's 32-segment window.
  std::vector<std::byte> big(60000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7);
  echo(c, big);
  // Pipelined: many frames in flight before the first echo is read.
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(c.send(client::demo::kPingReq, client::to_bytes("p" + std::to_string(i))));
  }
  for (int i = 0; i < 200; ++i) {
    const auto ack = c.receive_proto(client::demo::kPingAck, kPatience);
    ASSERT_TRUE(ack.has_value()) << i;
    EXPECT_EQ(client::as_text(ack->body), "p" + std::to_string(i));
  }
  EXPECT_FALSE(c.closed());
  EXPECT_EQ(metric("gatehouse_kcp_sessions_accepted_total"), 1);
  EXPECT_EQ(metric("gatehouse_kcp_datagrams_dropped_total"), 0);
}

TEST_F(KcpClient, LegacyKeyExchangeThenLogin) {
  client::Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience, kKcp);
  ASSERT_TRUE(c.key_exchange(kPatience).has_value()) << gateway_->log();
  ASSERT_TRUE(c.login("kcp-encrypted", "", kPatience).ok());
  echo(c, client::to_bytes("secret"));
}

// KCP has no close: gw::client learns of the kick when its window probes go
// unanswered once the gateway has forgotten the session, after everything
// the game sent before the kick.
TEST_F(KcpClient, AKickIsSeenAfterThePushBeforeIt) {
  client::Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience, kKcp);
  const auto login = c.login("kcp-kicked", "", kPatience);
  ASSERT_TRUE(login.ok());
  ASSERT_TRUE(game_.wait_for_streams(1, kPatience));
  // A game message is `| proto | body |` (1002: the demo's ping ack).
  ASSERT_TRUE(game_.push(login.uid(), client::to_bytes("\x03\xealast words")));
  ASSERT_TRUE(game_.kick(login.uid()));
  ASSERT_TRUE(c.wait_closed(kPatience)) << gateway_->log();
  EXPECT_EQ(c.close_error(), std::errc::timed_out);
  ASSERT_FALSE(c.pending().empty());
  EXPECT_EQ(client::as_text(c.pending().back().body), "last words");
  EXPECT_TRUE(gateway_->wait_log("reason=kicked_by_game")) << gateway_->log();
}

TEST_F(KcpClient, HalfCloseIsTcpOnly) {
  client::Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience, kKcp);
  EXPECT_THROW(c.shutdown_send(), std::logic_error);
}

TEST_F(KcpClient, CliLogsInAndEchoesOverKcp) {
  const std::string out = gateway_->dir() + "/cli.out";
  ChildProcess cli({GATEHOUSE_CLIENT_PATH, "--transport", "kcp", "--udid", "cli-kcp", "--heartbeat",
                    "--echo", "hello over kcp", "127.0.0.1:" + std::to_string(gateway_->port())},
                   out);
  const auto status = cli.wait(kPatience);
  std::ifstream in(out);
  const std::string output(std::istreambuf_iterator<char>(in), {});
  ASSERT_TRUE(status.has_value()) << output;
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << output << gateway_->log();
  EXPECT_NE(output.find("login ok"), std::string::npos) << output;
  EXPECT_NE(output.find("<- 1002 proto_ping_ack \"hello over kcp\""), std::string::npos) << output;
  EXPECT_EQ(metric("gatehouse_kcp_sessions_accepted_total"), 1);
}

TEST_F(KcpClient, CliRefusesAnUnknownTransport) {
  const std::string out = gateway_->dir() + "/cli-bad.out";
  ChildProcess cli({GATEHOUSE_CLIENT_PATH, "--transport", "sctp", "127.0.0.1:1"}, out);
  const auto status = cli.wait(kPatience);
  std::ifstream in(out);
  const std::string output(std::istreambuf_iterator<char>(in), {});
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << output;
  EXPECT_NE(output.find("--transport takes"), std::string::npos) << output;
}

}  // namespace
}  // namespace gatehouse::testing
