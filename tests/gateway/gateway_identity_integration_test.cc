// The modern exchange's version 2 end to end (docs/protocol-modern.md): the
// real gateway proves that it holds the key a client pinned. A man in the
// middle (MitmProxy) is detected at the ack, by the client library, by a
// client written from the page alone (RawSession) and by gatehouse-client;
// rotated keys (two loaded, either pinned; new files taken by the workers a
// reload rolls); an unknown key id is kicked; version 1 is refused unless a
// listener names modern1, where it is counted.
#include <signal.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gatehouse/crypto/gateway_key_file.h"
#include "gateway_process.h"
#include "http_get.h"
#include "mitm_proxy.h"
#include "raw_session.h"

namespace gatehouse::testing {
namespace {

using client::Client;
using client::ClientError;
using ::testing::HasSubstr;

std::array<std::uint8_t, 32> raw(const modern::PublicKey& key) {
  std::array<std::uint8_t, 32> out{};
  std::memcpy(out.data(), key.data(), out.size());
  return out;
}

std::array<std::uint8_t, 32> secret_of(std::uint8_t salt) {
  std::array<std::uint8_t, 32> s{};
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<std::uint8_t>(i * 7 + salt);
  return s;
}

Wire login_body(std::string_view udid) {
  using R = RawSession;
  return R::cat({R::u32(1), R::str(udid), R::str(""), R::u32(7), R::str("en"), R::str("app"),
                 R::str("linux"), R::str("box"), R::str("dev-1"), R::u32(2), R::str("10.0.0.1")});
}

/// A v2 client pinned to `key` logs in as `udid` and has one echo: "" when
/// it did, else the step that failed.
std::string v2_login_and_echo(std::uint16_t port, const modern::PublicKey& key,
                              const std::string& udid) {
  Client c;
  c.connect("127.0.0.1", port, kPatience);
  if (!c.modern_key_exchange(key, kPatience)) return "no key_exchange2_ack";
  const auto login = c.login(udid, "", kPatience);
  if (!login.ok()) return "login: " + std::string(client::to_string(login.status));
  if (!c.send(1001, client::to_bytes("hello from " + udid))) return "echo: send failed";
  const auto reply = c.receive_proto(1002, kPatience);
  if (!reply) {
    return c.closed() ? "echo: closed (" + c.close_error().message() + ")"
                      : "echo: no reply in time";
  }
  return reply->body == client::to_bytes("hello from " + udid) ? "" : "echo: another body";
}

double metric(const GatewayProcess& gateway, const std::string& name) {
  return metric_sample(http_get(gateway.metrics_port(), "/metrics"), name);
}

/// gatehouse-client's exit status and output (stdout and stderr).
struct CliRun {
  int status = -1;
  std::string output;
};
CliRun run_cli(const GatewayProcess& gateway, std::vector<std::string> args) {
  const std::string out = gateway.dir() + "/cli.out";
  std::vector<std::string> argv{GATEHOUSE_CLIENT_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess cli(argv, out);
  const auto status = cli.wait(kPatience);
  std::ifstream in(out);
  return {status ? *status : -1, std::string(std::istreambuf_iterator<char>(in), {})};
}

class GatewayIdentityTest : public ::testing::Test {
 protected:
  void start(std::string listen = "127.0.0.1:0", std::uint32_t keys = 1,
             std::vector<std::string> extra = {}) {
    GatewayOptions options{game_.port(), 1, std::move(extra), {}};
    options.listen = std::move(listen);
    options.gateway_keys = keys;
    gateway_.emplace(std::move(options));
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(gateway_->port()); }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_F(GatewayIdentityTest, Version2LogsInOnAModernListenerAndIsCounted) {
  start("127.0.0.1:0,crypto=modern");
  ASSERT_EQ(v2_login_and_echo(gateway_->port(), gateway_->gateway_key(), "alice"), "")
      << gateway_->log();
  EXPECT_EQ(metric(*gateway_, "gatehouse_key_exchanges_total{version=\"2\"}"), 1);
  EXPECT_EQ(metric(*gateway_, "gatehouse_key_exchanges_total{version=\"1\"}"), 0);
  EXPECT_EQ(gateway_->log_count("kick conn="), 0u) << gateway_->log();
}

// The control for the attacks below: a proxy that only relays bytes breaks
// nothing (and learns nothing: it has no key).
TEST_F(GatewayIdentityTest, APassiveRelayInThePathChangesNothing) {
  start();
  MitmProxy relay(gateway_->port(), gateway_->gateway_key(), MitmProxy::Mode::kRelay);
  EXPECT_EQ(v2_login_and_echo(relay.port(), gateway_->gateway_key(), "bob"), "") << gateway_->log();
}

// An attacker who completes its own exchange with the gateway (it may: the
// gateway's key is public) and answers the client as a gateway cannot make
// the ack's tag without the gateway's private key.
TEST_F(GatewayIdentityTest, AManInTheMiddleDoingItsOwnExchangesIsDetectedAtTheAck) {
  start();
  // The proxy serves one connection at a time: each client goes away (as
  // it must, at the forged ack) before the next.
  MitmProxy mitm(gateway_->port(), gateway_->gateway_key(), MitmProxy::Mode::kOwnExchanges);
  {
    Client c;
    c.connect("127.0.0.1", mitm.port(), kPatience);
    try {
      (void)c.modern_key_exchange(gateway_->gateway_key(), kPatience);
      ADD_FAILURE() << "the client accepted a forged ack";
    } catch (const ClientError& e) {
      EXPECT_THAT(e.what(), HasSubstr("gateway key mismatch"));
    }
    EXPECT_FALSE(c.encrypted()) << "no session keys from a forged ack";
    EXPECT_EQ(mitm.upstream_exchanges(), 1) << "the attacker did get its own session upstream";
    EXPECT_EQ(mitm.forged_acks(), 1);
  }
  {
    // The same with a client written from the page alone.
    RawSession s(mitm.port());
    EXPECT_THROW(
        {
          try {
            s.modern_key_exchange(1, secret_of(1), raw(gateway_->gateway_key()));
          } catch (const std::runtime_error& e) {
            EXPECT_THAT(e.what(), HasSubstr("gateway key mismatch"));
            throw;
          }
        },
        std::runtime_error);
  }

  // And gatehouse-client says so and fails.
  const CliRun cli =
      run_cli(*gateway_, {"--modern", "--gateway-key", gateway_->gateway_public_key_file(),
                          "--udid", "carol", "127.0.0.1:" + std::to_string(mitm.port())});
  EXPECT_NE(cli.status, 0) << cli.output;
  EXPECT_THAT(cli.output, HasSubstr("gateway key mismatch")) << cli.output;
}

// Relaying the client's request and swapping the gateway's ephemeral key in
// the real ack (to learn the session keys) breaks the tag too.
TEST_F(GatewayIdentityTest, AnAckWithASubstitutedEphemeralKeyIsDetected) {
  start();
  MitmProxy mitm(gateway_->port(), gateway_->gateway_key(), MitmProxy::Mode::kSubstituteEphemeral);
  Client c;
  c.connect("127.0.0.1", mitm.port(), kPatience);
  EXPECT_THROW((void)c.modern_key_exchange(gateway_->gateway_key(), kPatience), ClientError);
  EXPECT_EQ(mitm.forged_acks(), 1);
}

// Two keys loaded while they rotate: a client pinned to either works; one
// pinned to a key the gateway does not hold is kicked, never served
// unauthenticated; gatehouse-client tries its pinned keys in order.
TEST_F(GatewayIdentityTest, RotatedKeysEitherPinnedKeyWorksAnUnknownOneIsKicked) {
  start("127.0.0.1:0,crypto=modern", /*keys=*/2);
  EXPECT_EQ(v2_login_and_echo(gateway_->port(), gateway_->gateway_key(0), "old-key"), "");
  EXPECT_EQ(v2_login_and_echo(gateway_->port(), gateway_->gateway_key(1), "new-key"), "");

  const modern::PublicKey stranger = modern::generate_key_pair().public_key;
  Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience);
  EXPECT_FALSE(c.modern_key_exchange(stranger, kPatience).has_value());
  EXPECT_TRUE(c.closed()) << "closed, not answered";
  EXPECT_TRUE(gateway_->wait_log("reason=unknown_gateway_key")) << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log("which this gateway does not hold (2 loaded)")) << gateway_->log();
  EXPECT_EQ(metric(*gateway_, "gatehouse_kicks_total{reason=\"unknown_gateway_key\"}"), 1);

  // A pin file of [stranger, key 1]: the first is refused, the second works.
  const std::string pins = gateway_->dir() + "/pins.pub";
  std::ofstream(pins) << "# pinned, newest first\n"
                      << modern::to_hex(stranger) << "\n"
                      << modern::to_hex(gateway_->gateway_key(1)) << "\n";
  const CliRun cli = run_cli(*gateway_, {"--modern", "--gateway-key", pins, "--udid", "dave",
                                         "--echo", "rotated", endpoint()});
  EXPECT_EQ(cli.status, 0) << cli.output;
  EXPECT_THAT(cli.output, HasSubstr("connection closed by gateway"));
  EXPECT_THAT(cli.output, HasSubstr("<- 35 key_exchange2_ack: gateway key verified"));
  EXPECT_THAT(cli.output, HasSubstr("<- 1002 proto_ping_ack \"rotated\""));

  std::ofstream(pins) << modern::to_hex(stranger) << "\n";
  const CliRun wrong =
      run_cli(*gateway_, {"--modern", "--gateway-key", pins, "--udid", "erin", endpoint()});
  EXPECT_NE(wrong.status, 0);
  EXPECT_THAT(wrong.output, HasSubstr("holds none of the pinned keys")) << wrong.output;
}

// New key files apply to the workers a reload starts (docs/protocol-modern.md,
// "Keys and files").
TEST_F(GatewayIdentityTest, AReloadRollsTheWorkersOntoNewKeyFiles) {
  start();
  const modern::PublicKey old_key = gateway_->gateway_key();
  ASSERT_EQ(v2_login_and_echo(gateway_->port(), old_key, "before"), "");
  const std::string file = gateway_->gateway_key_file();
  std::filesystem::remove(file);
  std::filesystem::remove(file + ".pub");
  const modern::PublicKey new_key = make_gateway_key(file);
  const std::size_t reloads = gateway_->log_count("reload complete");
  ::kill(gateway_->pid(), SIGHUP);
  ASSERT_TRUE(gateway_->wait_log_count("reload complete", reloads + 1)) << gateway_->log();
  EXPECT_EQ(v2_login_and_echo(gateway_->port(), new_key, "after"), "") << gateway_->log();
  Client c;
  c.connect("127.0.0.1", gateway_->port(), kPatience);
  EXPECT_FALSE(c.modern_key_exchange(old_key, kPatience).has_value());
  EXPECT_TRUE(gateway_->wait_log("reason=unknown_gateway_key")) << gateway_->log();
}

TEST_F(GatewayIdentityTest, Version1IsRefusedWhereTheListenerDoesNotNameIt) {
  start();  // crypto=any: clear, legacy and version 2
  RawSession s(gateway_->port());
  EXPECT_THROW(s.modern1_key_exchange(1, secret_of(2), std::uint8_t{0}), std::runtime_error)
      << "no key_exchange_ack";
  EXPECT_TRUE(s.wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=crypto_refused")) << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log("the modern exchange's version 1")) << gateway_->log();
  EXPECT_EQ(metric(*gateway_, "gatehouse_key_exchanges_total{version=\"1\"}"), 0);
}

TEST_F(GatewayIdentityTest, Version1IsAcceptedAndCountedWhereTheListenerNamesModern1) {
  start("127.0.0.1:0,crypto=any+modern1");
  EXPECT_TRUE(gateway_->wait_log("(crypto=any+modern1)")) << gateway_->log();
  EXPECT_TRUE(gateway_->wait_log("accepts the unauthenticated modern exchange version 1"));
  RawSession s(gateway_->port());
  const Wire ack = s.modern1_key_exchange(1, secret_of(3), std::uint8_t{0});
  EXPECT_EQ((Wire{ack[0], ack[1]}), (Wire{0x00, 0x21})) << "key_exchange_ack, proto 33";
  s.send(2, 10, login_body("legacy-modern"));
  const auto reply = s.read_payload();
  ASSERT_TRUE(reply) << gateway_->log();
  EXPECT_EQ((Wire{(*reply)[0], (*reply)[1]}), (Wire{0x00, 0x0B})) << "login ok";
  EXPECT_EQ(v2_login_and_echo(gateway_->port(), gateway_->gateway_key(), "v2-too"), "");
  EXPECT_EQ(metric(*gateway_, "gatehouse_key_exchanges_total{version=\"1\"}"), 1);
  EXPECT_EQ(metric(*gateway_, "gatehouse_key_exchanges_total{version=\"2\"}"), 1);
}

}  // namespace
}  // namespace gatehouse::testing
