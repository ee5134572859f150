// One gateway serving every transport at once (issue 15): tcp and kcp on one
// listener, tls, ws and wss on three others, and a client of each at the
// same time running the protocol table: log in, heartbeat, echoes, then a
// game push and a kick, the push delivered before the end. The clients:
// gw::client over each of the five, the real kcp-go (a gonet2 client,
// tests/kcp/kcp_go_peer) and headless Chromium over wss (browser_page.h).
// Every one of them is logged in at one moment, which the per-transport
// connection gauges show, before any is kicked.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "browser_page.h"
#include "child_process.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"
#include "patience.h"
#include "test_certificate.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::TransportKind;

const std::string kGoPeer = GATEHOUSE_KCP_GO_PEER;
// A game message is `| proto | body |` (1002: the demo's ping ack).
const std::vector<std::byte> kLastWords = client::to_bytes("\x03\xealast words");

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The gw::client clients' side: the table up to the kick, then (once every
/// client of the test is logged in) the kick. Errors come back as text, as
/// this runs on a thread of its own.
class TableClient {
 public:
  TableClient(TransportKind kind, std::uint16_t port, const TestCertificate& certificate)
      : kind_(kind), port_(port) {
    transport_.kind = kind;
    transport_.tls_ca_file = certificate.cert;
    transport_.tls_name = "localhost";
  }

  std::string log_in_and_echo() {
    const std::string name(client::name_of(kind_));
    try {
      client_.connect("127.0.0.1", port_, kPatience, transport_);
      const auto login = client_.login("all-" + name, "", kPatience);
      if (!login.ok()) return name + ": login " + std::string(client::to_string(login.status));
      uid_ = login.uid();
      if (client_.heartbeat(7, kPatience) != 7) return name + ": no heartbeat ack";
      for (int i = 0; i < 100; ++i) {
        const auto body = client::to_bytes(name + " " + std::to_string(i));
        if (!client_.send(client::demo::kPingReq, body)) return name + ": send failed";
      }
      for (int i = 0; i < 100; ++i) {
        const auto ack = client_.receive_proto(client::demo::kPingAck, kPatience);
        if (!ack || client::as_text(ack->body) != name + " " + std::to_string(i)) {
          return name + ": echo " + std::to_string(i) + " missing or out of order";
        }
      }
      return {};
    } catch (const std::exception& e) {
      return name + ": " + e.what();
    }
  }

  std::string be_kicked(FakeGameService& game) {
    const std::string name(client::name_of(kind_));
    if (!game.push(uid_, kLastWords) || !game.kick(uid_)) return name + ": no game stream";
    if (!client_.wait_closed(kPatience)) return name + ": not closed after the kick";
    if (client_.pending().empty() ||
        client::as_text(client_.pending().back().body) != "last words") {
      return name + ": the push before the kick is missing";
    }
    return {};
  }

 private:
  TransportKind kind_;
  std::uint16_t port_;
  client::TransportOptions transport_;
  client::Client client_;
  std::int32_t uid_ = 0;
};

class AllTransports : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kGoPeer)) << kGoPeer << " was not built (tools/setup.sh)";
    ASSERT_TRUE(std::filesystem::exists(kChromium)) << kChromium << " is missing (tools/setup.sh)";
    std::string pattern =
        (std::filesystem::temp_directory_path() / "gatehouse-all-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    certificate_ = make_test_certificate(dir_);
    GatewayOptions options{game_.port(), 2, {}, {}};
    options.listen = "127.0.0.1:0,transport=tcp+kcp";
    options.extra_args = {"--listen", "127.0.0.1:0,transport=tls", "--listen",
                          "127.0.0.1:0,transport=ws", "--listen", "127.0.0.1:0,transport=wss",
                          "--tls-cert", certificate_.cert, "--tls-key", certificate_.key,
                          "--ws-origins", page_.origin(), "--rpm-limit", "0",
                          // The first ones wait, silent, for a browser to start.
                          "--read-timeout", "120"};
    gateway_.emplace(options);
  }
  void TearDown() override {
    gateway_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::uint16_t port_of(TransportKind kind) const {
    switch (kind) {
      case TransportKind::kTcp:
      case TransportKind::kKcp:
        return gateway_->port(0);
      case TransportKind::kTls:
        return gateway_->port(1);
      case TransportKind::kWs:
        return gateway_->port(2);
      case TransportKind::kWss:
        return gateway_->port(3);
    }
    return 0;
  }
  double metric(const std::string& name) {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"), name);
  }
  double open_over(const char* transport) {
    return metric(std::string("gatehouse_connections_open_by_transport{transport=\"") + transport +
                  "\"}");
  }
  /// The line of the kcp-go client's output that says it waits for the kick.
  std::optional<std::string> wait_go_ready(const std::string& log) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience * 2;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string out = slurp(log);
      if (out.find("waiting for the kick") != std::string::npos) return out;
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }

  std::string dir_;
  TestCertificate certificate_;
  FakeGameService game_{{.echo = true}};
  PageServer page_;
  std::optional<GatewayProcess> gateway_;
};

TEST_F(AllTransports, AClientOfEachCompletesTheTableAtOnce) {
  const std::vector<TransportKind> kinds = {TransportKind::kTcp, TransportKind::kKcp,
                                            TransportKind::kTls, TransportKind::kWs,
                                            TransportKind::kWss};
  // The gw::client threads and this one meet once everyone is logged in.
  std::latch all_logged_in(static_cast<std::ptrdiff_t>(kinds.size()) + 1);
  std::latch kicks_may_start(1);
  std::vector<std::future<std::string>> tables;
  for (const TransportKind kind : kinds) {
    tables.push_back(std::async(std::launch::async, [&, kind] {
      TableClient c(kind, port_of(kind), certificate_);
      std::string failed = c.log_in_and_echo();
      all_logged_in.arrive_and_wait();
      kicks_may_start.wait();
      return failed.empty() ? c.be_kicked(game_) : failed;
    }));
  }
  const std::string go_log = dir_ + "/kcp-go.log";
  ChildProcess go(
      {kGoPeer, "gonet2-kicked", "127.0.0.1:" + std::to_string(gateway_->port(0)), "300", "11"},
      go_log);
  ChildProcess chromium = start_chromium(
      page_.page_for("wss://127.0.0.1:" + std::to_string(port_of(TransportKind::kWss)) + "/"),
      dir_);

  // This thread speaks for the two outside clients: the browser's page
  // reports its echo, the kcp-go client prints its uid.
  const auto page_result = page_.wait_result(kBrowserPatience);
  const auto go_ready = wait_go_ready(go_log);
  all_logged_in.arrive_and_wait();
  // tcp and kcp: gw::client and kcp-go on kcp; wss: gw::client and Chromium.
  EXPECT_EQ(open_over("tcp"), 1);
  EXPECT_EQ(open_over("kcp"), 2);
  EXPECT_EQ(open_over("tls"), 1);
  EXPECT_EQ(open_over("ws"), 1);
  EXPECT_EQ(open_over("wss"), 2);
  EXPECT_GE(game_.live_stream_count(), 7u);
  kicks_may_start.count_down();

  ASSERT_TRUE(page_result.has_value()) << "the page reported nothing\n" << gateway_->log();
  ASSERT_TRUE(page_result->starts_with("ok uid=")) << *page_result << "\n" << gateway_->log();
  const std::int32_t browser_uid = std::stoi(page_result->substr(7));
  ASSERT_TRUE(game_.push(browser_uid, kLastWords) && game_.kick(browser_uid));
  EXPECT_EQ(page_.wait_result(kBrowserPatience).value_or("nothing"),
            "pushed last words protos=1,11,1002,1002");
  EXPECT_EQ(page_.wait_result(kBrowserPatience).value_or("nothing"),
            "closed 1000 protos=1,11,1002,1002");

  ASSERT_TRUE(go_ready.has_value()) << slurp(go_log) << "\n" << gateway_->log();
  const auto uid_at = go_ready->find("uid ");
  ASSERT_NE(uid_at, std::string::npos) << *go_ready;
  const std::int32_t go_uid = std::stoi(go_ready->substr(uid_at + 4));
  ASSERT_TRUE(game_.push(go_uid, kLastWords) && game_.kick(go_uid));
  const auto status = go.wait(kPatience);
  ASSERT_TRUE(status.has_value()) << slurp(go_log);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status) << ":\n"
                                                               << slurp(go_log);
  EXPECT_NE(slurp(go_log).find("300 echoes in order"), std::string::npos) << slurp(go_log);

  for (std::size_t i = 0; i < tables.size(); ++i) {
    EXPECT_EQ(tables[i].get(), "") << client::name_of(kinds[i]) << "\n" << gateway_->log();
  }
  chromium.kill(SIGTERM);
  (void)chromium.wait(kPatience);
  // Seven sessions, each ended by the game's kick.
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  const std::string kicked = "gatehouse_connections_closed_total{reason=\"kicked_by_game\"}";
  while (metric(kicked) < 7 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(metric(kicked), 7) << gateway_->log();
}

}  // namespace
}  // namespace gatehouse::testing
