// TLS, WebSocket and WebSocket over TLS (issue 15, docs/websocket.md)
// against the real gateway: the protocol table over each (login, heartbeat,
// echoes small and large, pipelined; both key exchanges; a game kick after a
// push), and what each refuses: a text message, a message over max-frame, an
// Origin outside ws-origins, a plain HTTP request, plain TCP to a TLS port,
// an untrusted certificate; a renewed certificate served after a reload; the
// CLI over wss; a burst of handshakes that leaves the frontend's heartbeat be.
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cstdlib>
#include <filesystem>
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
#include "test_certificate.h"

namespace gatehouse::testing {
namespace {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;

/// A directory for certificates, made before the gateway (which names them).
class CertificateDir {
 public:
  CertificateDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "gatehouse-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = pattern;
    certificate_ = make_test_certificate(path_);
  }
  ~CertificateDir() { std::filesystem::remove_all(path_); }
  CertificateDir(const CertificateDir&) = delete;
  CertificateDir& operator=(const CertificateDir&) = delete;

  const std::string& path() const { return path_; }
  const TestCertificate& certificate() const { return certificate_; }

 private:
  std::string path_;
  TestCertificate certificate_;
};

std::string transport_option(client::TransportKind kind) {
  return std::string(",transport=") + std::string(client::name_of(kind));
}

/// A gateway with one listener of `kind` (and the certificate for tls, wss).
GatewayOptions options_for(client::TransportKind kind, const FakeGameService& game,
                           const CertificateDir& certs, std::vector<std::string> extra = {}) {
  GatewayOptions options{game.port(), 1, {"--rpm-limit", "0"}, {}};
  options.listen = "127.0.0.1:0" + transport_option(kind);
  options.extra_args.insert(options.extra_args.end(), {"--tls-cert", certs.certificate().cert,
                                                       "--tls-key", certs.certificate().key});
  options.extra_args.insert(options.extra_args.end(), extra.begin(), extra.end());
  return options;
}

client::TransportOptions trusting(client::TransportKind kind, const CertificateDir& certs) {
  client::TransportOptions o{.kind = kind};
  o.tls_ca_file = certs.certificate().cert;
  o.tls_name = "localhost";
  return o;
}

double metric(GatewayProcess& gateway, const std::string& name) {
  return metric_sample(http_get(gateway.metrics_port(), "/metrics"), name);
}

bool wait_metric(GatewayProcess& gateway, const std::string& name, double at_least) {
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (std::chrono::steady_clock::now() < deadline) {
    if (metric(gateway, name) >= at_least) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void echo(client::Client& c, const std::vector<std::byte>& body) {
  ASSERT_TRUE(c.send(client::demo::kPingReq, body));
  const auto ack = c.receive_proto(client::demo::kPingAck, kPatience);
  ASSERT_TRUE(ack.has_value()) << "closed " << c.closed();
  EXPECT_EQ(ack->body, body);
}

// ------------------------------------------------------------------ the protocol table

class LayeredTransport : public ::testing::TestWithParam<client::TransportKind> {
 protected:
  void SetUp() override { gateway_.emplace(options_for(GetParam(), game_, certs_)); }
  client::Client connect() {
    client::Client c;
    c.connect("127.0.0.1", gateway_->port(), kPatience, trusting(GetParam(), certs_));
    EXPECT_EQ(c.transport(), GetParam());
    return c;
  }
  std::string open_metric() const {
    return "gatehouse_connections_open_by_transport{transport=\"" +
           std::string(client::name_of(GetParam())) + "\"}";
  }

  CertificateDir certs_;
  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_P(LayeredTransport, LogsInAndEchoesSmallLargeAndPipelinedFrames) {
  client::Client c = connect();
  const auto login = c.login("layered-player", "", kPatience);
  ASSERT_TRUE(login.ok()) << client::to_string(login.status) << "\n" << gateway_->log();
  EXPECT_EQ(c.heartbeat(7, kPatience), 7);
  for (int i = 0; i < 20; ++i) echo(c, client::to_bytes("ping " + std::to_string(i)));
  std::vector<std::byte> big(60000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7);
  echo(c, big);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(c.send(client::demo::kPingReq, client::to_bytes("p" + std::to_string(i))))
        << i << "\n"
        << gateway_->log();
  }
  for (int i = 0; i < 200; ++i) {
    const auto ack = c.receive_proto(client::demo::kPingAck, kPatience);
    ASSERT_TRUE(ack.has_value()) << i << " closed " << c.closed() << "\n" << gateway_->log();
    EXPECT_EQ(client::as_text(ack->body), "p" + std::to_string(i));
  }
  EXPECT_FALSE(c.closed());
  EXPECT_EQ(metric(*gateway_, open_metric()), 1);
  EXPECT_EQ(metric(*gateway_, "gatehouse_connections_open_by_transport{transport=\"tcp\"}"), 0);
  c.close();
  EXPECT_TRUE(gateway_->wait_log("reason=client_closed")) << gateway_->log();
}

TEST_P(LayeredTransport, LegacyAndModernKeyExchangesWorkInside) {
  client::Client legacy = connect();
  ASSERT_TRUE(legacy.key_exchange(kPatience).has_value()) << gateway_->log();
  ASSERT_TRUE(legacy.login("layered-legacy", "", kPatience).ok());
  echo(legacy, client::to_bytes("rc4 inside"));

  client::Client modern = connect();
  ASSERT_TRUE(modern.modern_key_exchange(gateway_->gateway_key(), kPatience).has_value())
      << gateway_->log();
  ASSERT_TRUE(modern.login("layered-modern", "", kPatience).ok());
  echo(modern, client::to_bytes("aead inside"));
}

TEST_P(LayeredTransport, AKickComesAfterThePushBeforeIt) {
  client::Client c = connect();
  const auto login = c.login("layered-kicked", "", kPatience);
  ASSERT_TRUE(login.ok());
  ASSERT_TRUE(game_.wait_for_streams(1, kPatience));
  // A game message is `| proto | body |` (1002: the demo's ping ack).
  const std::vector<std::byte> last = client::to_bytes("\x03\xealast words");
  ASSERT_TRUE(game_.push(login.uid(), last));
  ASSERT_TRUE(game_.kick(login.uid()));
  ASSERT_TRUE(c.wait_closed(kPatience)) << gateway_->log();
  ASSERT_FALSE(c.pending().empty());
  EXPECT_EQ(c.pending().back().proto, client::demo::kPingAck);
  EXPECT_EQ(client::as_text(c.pending().back().body), "last words");
  EXPECT_TRUE(gateway_->wait_log("reason=kicked_by_game")) << gateway_->log();
  // The link is gone once its goodbye is through (or the linger is over).
  EXPECT_TRUE(
      wait_metric(*gateway_, "gatehouse_connections_closed_total{reason=\"kicked_by_game\"}", 1));
}

INSTANTIATE_TEST_SUITE_P(Each, LayeredTransport,
                         ::testing::Values(client::TransportKind::kTls, client::TransportKind::kWs,
                                           client::TransportKind::kWss),
                         [](const auto& p) { return std::string(client::name_of(p.param)); });

// ------------------------------------------------------------------ refusals

class WebSocketRefusals : public ::testing::Test {
 protected:
  void start(client::TransportKind kind, std::vector<std::string> extra = {}) {
    gateway_.emplace(options_for(kind, game_, certs_, std::move(extra)));
  }
  /// A raw WebSocket (Beast, blocking, its reads bounded by SO_RCVTIMEO).
  std::unique_ptr<websocket::stream<tcp::socket>> raw_websocket() {
    auto ws = std::make_unique<websocket::stream<tcp::socket>>(io_);
    ws->next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), gateway_->port()));
    timeval bound{static_cast<time_t>(std::chrono::seconds(kPatience).count()), 0};
    ::setsockopt(ws->next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    ws->handshake("127.0.0.1", "/");
    ws->binary(true);
    return ws;
  }

  asio::io_context io_;
  CertificateDir certs_;
  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_F(WebSocketRefusals, ATextMessageIsKicked) {
  start(client::TransportKind::kWs);
  auto ws = raw_websocket();
  ws->text(true);
  ws->write(asio::buffer(std::string("hello")));
  boost::beast::flat_buffer buffer;
  boost::system::error_code ec;
  ws->read(buffer, ec);
  EXPECT_TRUE(ec) << "the gateway answered a text message";
  EXPECT_TRUE(gateway_->wait_log("reason=text_frame")) << gateway_->log();
  EXPECT_TRUE(wait_metric(*gateway_, "gatehouse_kicks_total{reason=\"text_frame\"}", 1));
}

TEST_F(WebSocketRefusals, AMessageOverMaxFrameIsKicked) {
  start(client::TransportKind::kWs, {"--max-frame", "1024"});
  client::Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience, {.kind = client::TransportKind::kWs});
  std::vector<std::byte> big(2000, std::byte{'x'});
  c.send_raw(big);
  EXPECT_TRUE(c.wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=frame_too_large")) << gateway_->log();
}

TEST_F(WebSocketRefusals, AnOriginOutsideTheListIsRefusedOthersServed) {
  start(client::TransportKind::kWs, {"--ws-origins", "https://play.example.com,https://b.example"});
  client::TransportOptions o{.kind = client::TransportKind::kWs};
  o.ws_origin = "https://evil.example";
  client::Client refused;
  EXPECT_THROW(refused.connect("127.0.0.1", gateway_->port(), kPatience, o), client::ClientError);
  EXPECT_TRUE(wait_metric(*gateway_, "gatehouse_handshakes_failed_total{reason=\"origin\"}", 1));
  EXPECT_TRUE(gateway_->wait_log("reason=handshake_failed")) << gateway_->log();

  for (const std::string origin : {"https://play.example.com", "HTTPS://B.EXAMPLE", ""}) {
    o.ws_origin = origin;
    client::Client c;
    c.connect("127.0.0.1", gateway_->port(), kPatience, o);
    ASSERT_TRUE(c.login("origin-" + std::to_string(origin.size()), "", kPatience).ok()) << origin;
    echo(c, client::to_bytes(origin));
  }
  EXPECT_EQ(metric(*gateway_, "gatehouse_handshakes_failed_total{reason=\"origin\"}"), 1);
}

TEST_F(WebSocketRefusals, APlainHttpRequestIsAnsweredAndClosed) {
  start(client::TransportKind::kWs);
  tcp::socket socket(io_);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), gateway_->port()));
  timeval bound{static_cast<time_t>(std::chrono::seconds(kPatience).count()), 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  asio::write(socket, asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::string answer;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(answer), ec);  // to the end: it closes
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  EXPECT_EQ(answer.rfind("HTTP/1.1 426", 0), 0u) << answer;
  EXPECT_TRUE(wait_metric(*gateway_, "gatehouse_handshakes_failed_total{reason=\"request\"}", 1));
}

TEST_F(WebSocketRefusals, PlainTcpToATlsListenerFailsTheHandshake) {
  start(client::TransportKind::kTls);
  client::Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience, {.kind = client::TransportKind::kTcp});
  c.send(1, client::to_bytes("not a ClientHello"));
  EXPECT_TRUE(c.wait_closed(kPatience));
  EXPECT_TRUE(wait_metric(*gateway_, "gatehouse_handshakes_failed_total{reason=\"tls\"}", 1));
  EXPECT_TRUE(gateway_->wait_log("reason=handshake_failed")) << gateway_->log();
}

TEST_F(WebSocketRefusals, AClientRefusesACertificateItDoesNotTrust) {
  start(client::TransportKind::kWss);
  client::TransportOptions untrusting{.kind = client::TransportKind::kWss};  // the system's CAs
  client::Client c;
  EXPECT_THROW(c.connect("127.0.0.1", gateway_->port(), kPatience, untrusting),
               client::ClientError);
  client::TransportOptions wrong_name = trusting(client::TransportKind::kWss, certs_);
  wrong_name.tls_name = "game.example.com";
  EXPECT_THROW(c.connect("127.0.0.1", gateway_->port(), kPatience, wrong_name),
               client::ClientError);
  // An address is checked against the certificate's IP names (it has
  // 127.0.0.1, not 127.0.0.2).
  client::TransportOptions wrong_address = trusting(client::TransportKind::kWss, certs_);
  wrong_address.tls_name = "127.0.0.2";
  EXPECT_THROW(c.connect("127.0.0.1", gateway_->port(), kPatience, wrong_address),
               client::ClientError);
  client::TransportOptions by_address = trusting(client::TransportKind::kWss, certs_);
  by_address.tls_name.clear();  // the host connected to
  c.connect("127.0.0.1", gateway_->port(), kPatience, by_address);
  EXPECT_TRUE(c.login("by-address", "", kPatience).ok());
}

// ------------------------------------------------------------------ operations

TEST(LayeredTransportOperations, AReloadServesTheRenewedCertificate) {
  CertificateDir certs;
  FakeGameService game{{.echo = true}};
  GatewayProcess gateway(options_for(client::TransportKind::kTls, game, certs));
  client::Client before;
  before.connect("127.0.0.1", gateway.port(), kPatience,
                 trusting(client::TransportKind::kTls, certs));
  ASSERT_TRUE(before.login("before-renewal", "", kPatience).ok());

  // Renewed in place, as certbot does: a new key and certificate, same paths.
  const std::string old_cert = certs.path() + "/old.pem";
  std::filesystem::copy_file(certs.certificate().cert, old_cert);
  CertificateDir renewed;
  std::filesystem::copy_file(renewed.certificate().cert, certs.certificate().cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(renewed.certificate().key, certs.certificate().key,
                             std::filesystem::copy_options::overwrite_existing);
  ::kill(gateway.pid(), SIGHUP);
  ASSERT_TRUE(gateway.wait_log_count("TLS: serving the certificate", 2)) << gateway.log();

  client::Client after;
  after.connect("127.0.0.1", gateway.port(), kPatience,
                trusting(client::TransportKind::kTls, renewed));
  ASSERT_TRUE(after.login("after-renewal", "", kPatience).ok());
  echo(after, client::to_bytes("renewed"));
  client::TransportOptions old_ca = trusting(client::TransportKind::kTls, certs);
  old_ca.tls_ca_file = old_cert;
  client::Client stale;
  EXPECT_THROW(stale.connect("127.0.0.1", gateway.port(), kPatience, old_ca), client::ClientError);
  // The connection made before keeps its session.
  echo(before, client::to_bytes("still here"));
}

TEST(LayeredTransportOperations, CliLogsInAndEchoesOverWss) {
  CertificateDir certs;
  FakeGameService game{{.echo = true}};
  GatewayProcess gateway(options_for(client::TransportKind::kWss, game, certs));
  const std::string out = gateway.dir() + "/cli.out";
  ChildProcess cli(
      {GATEHOUSE_CLIENT_PATH, "--transport", "wss", "--tls-ca", certs.certificate().cert,
       "--tls-name", "localhost", "--udid", "cli-wss", "--heartbeat", "--echo", "hello over wss",
       "127.0.0.1:" + std::to_string(gateway.port())},
      out);
  const auto status = cli.wait(kPatience);
  std::ifstream in(out);
  const std::string output(std::istreambuf_iterator<char>(in), {});
  ASSERT_TRUE(status.has_value()) << output;
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << output << gateway.log();
  EXPECT_NE(output.find("login ok"), std::string::npos) << output;
  EXPECT_NE(output.find("<- 1002 proto_ping_ack \"hello over wss\""), std::string::npos) << output;
}

// A burst of TLS handshakes (about a millisecond of the frontend's CPU each,
// docs/benchmarks.md) runs a pass at a time: with hang-timeout 1 s, 2000
// clients opening at once all get in, and the supervisor never takes the
// frontend for hung (a restart would drop every TLS connection, and their
// reconnects would make the next burst).
TEST(LayeredTransportOperations, AHandshakeBurstKeepsTheFrontendsHeartbeat) {
  CertificateDir certs;
  FakeGameService game{{.echo = true}};
  GatewayProcess gateway(
      options_for(client::TransportKind::kTls, game, certs,
                  {"--hang-timeout", "1", "--connect-rate", "0", "--max-connections", "4000",
                   // The burst's first connections wait, idle, for its last:
                   // a minute under sanitizers on a busy machine.
                   "--read-timeout", "600", "--login-timeout", "600"}));
  const std::string out = gateway.dir() + "/bench.out";
  ChildProcess bench(
      {GATEHOUSE_BENCH_PATH, "-q", "--transport", "tls", "--tls-ca", certs.certificate().cert,
       "--tls-name", "localhost", "--idle", "2000", "--duration", "1", "--connect-rate", "1000000",
       "--timeout", "120", "127.0.0.1:" + std::to_string(gateway.port())},
      out);
  const auto status = bench.wait(kPatience * 6);
  std::ifstream in(out);
  const std::string output(std::istreambuf_iterator<char>(in), {});
  ASSERT_TRUE(status.has_value()) << output;
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << output << gateway.log();
  EXPECT_NE(output.find("\"connections_up\":2000"), std::string::npos) << output;
  EXPECT_EQ(gateway.log_count("is hung"), 0u) << gateway.log();
}

}  // namespace
}  // namespace gatehouse::testing
