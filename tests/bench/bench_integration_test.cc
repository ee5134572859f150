// gatehouse-bench (the executable) against the real gateway (build/bin) and a
// FakeGameService: short smoke runs that must be clean, and runs built to
// fail, proving that missing replies, forged replies and gateway closes are
// caught and turn into exit status 1.
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gatehouse/crypto/modern_crypto.h"
#include "gatehouse/token/key_files.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_certificate.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

struct BenchRun {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr
  std::string json;    ///< the summary line
  double seconds = 0;  ///< wall time of the whole run

  /// A number (or true/false as 1/0) from the summary; nullopt for null or absent.
  std::optional<double> number(const std::string& key) const {
    const std::string needle = "\"" + key + "\":";
    const auto at = json.find(needle);
    if (at == std::string::npos) return std::nullopt;
    const std::string rest = json.substr(at + needle.size());
    if (rest.rfind("true", 0) == 0) return 1;
    if (rest.rfind("false", 0) == 0) return 0;
    if (rest.rfind("null", 0) == 0) return std::nullopt;
    char* end = nullptr;
    const double v = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str()) return std::nullopt;
    return v;
  }
  double value(const std::string& key) const {
    const auto v = number(key);
    EXPECT_TRUE(v.has_value()) << key << " missing or null in " << json;
    return v.value_or(-1);
  }
};

/// Runs gatehouse-bench with `args` and waits for it (at most `limit`).
BenchRun run_bench(const std::vector<std::string>& args, std::chrono::milliseconds limit = 30s) {
  static int counter = 0;
  const auto out_path = std::filesystem::temp_directory_path() /
                        ("gatehouse-bench-test-" + std::to_string(::getpid()) + "-" +
                         std::to_string(counter++) + ".out");
  std::vector<std::string> argv{GATEHOUSE_BENCH_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  BenchRun run;
  const auto started = std::chrono::steady_clock::now();
  {
    ChildProcess bench(argv, out_path.string());
    const auto status = bench.wait(limit);
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (status && WIFEXITED(*status)) run.exit_code = WEXITSTATUS(*status);
  }  // killed here if it overran
  std::ifstream in(out_path);
  std::ostringstream text;
  text << in.rdbuf();
  run.output = text.str();
  std::filesystem::remove(out_path);
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("{\"connections\":", 0) == 0) run.json = line;
  }
  return run;
}

std::string endpoint(const GatewayProcess& gateway) {
  return "127.0.0.1:" + std::to_string(gateway.port());
}

/// Every Message frame the game saw, over all streams.
std::size_t game_frames(const FakeGameService& game) {
  std::size_t n = 0;
  for (const auto& s : game.streams()) n += s.frames.size();
  return n;
}

// Echo traffic is far above gonet2's 200 frames a minute.
const std::vector<std::string> kNoRpmLimit{"--rpm-limit", "0"};

GatewayOptions gateway_for(const FakeGameService& game, std::vector<std::string> extra_args) {
  GatewayOptions options;
  options.backend_port = game.port();
  options.extra_args = std::move(extra_args);
  return options;
}

TEST(BenchCli, HelpListsEveryFlagAndBadUsageExits2) {
  const BenchRun help = run_bench({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--connections",  "--transport",        "--crypto",      "--encrypt",
                           "--window",       "--body-bytes",       "--messages",    "--duration",
                           "--connect-rate", "--timeout",          "--heartbeat",   "--idle",
                           "--threads",      "--source-addresses", "--udid-prefix", "--rss-pids",
                           "--rss-tree",     "--rss-pattern",      "--quiet",       "HOST:PORT",
                           "--tls-ca",       "--tls-name",         "--tls-insecure"}) {
    EXPECT_THAT(help.output, HasSubstr(flag));
  }
  EXPECT_EQ(run_bench({"--window", "0", "127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(run_bench({"--body-bytes", "7", "127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(run_bench({"--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(run_bench({"--connections", "3"}).exit_code, 2);  // no HOST:PORT
}

TEST(BenchCli, EncryptIsCryptoLegacyAndConflictsWithAnyOtherCrypto) {
  const BenchRun modern = run_bench({"--encrypt", "--crypto", "modern", "127.0.0.1:1"});
  EXPECT_EQ(modern.exit_code, 2) << modern.output;
  EXPECT_THAT(modern.output, HasSubstr("conflicts with --crypto modern"));
  EXPECT_TRUE(modern.json.empty()) << "refused before running";
  EXPECT_EQ(run_bench({"--crypto", "modern", "--encrypt", "127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(run_bench({"--encrypt", "--crypto", "clear", "127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(run_bench({"--crypto", "rc4", "127.0.0.1:1"}).exit_code, 2);
  // The 16-byte tag takes its room out of the body.
  const BenchRun big = run_bench({"--crypto", "modern", "--body-bytes", "65514", "127.0.0.1:1"});
  EXPECT_EQ(big.exit_code, 2);
  EXPECT_THAT(big.output, HasSubstr("8..65513 with --crypto modern"));
  // Version 2 pins the gateway's key: no modern run without one.
  const BenchRun keyless = run_bench({"--crypto", "modern", "127.0.0.1:1"});
  EXPECT_EQ(keyless.exit_code, 2);
  EXPECT_THAT(keyless.output, HasSubstr("--crypto modern needs --gateway-key FILE"));
  EXPECT_EQ(run_bench({"--gateway-key", "/nonexistent", "127.0.0.1:1"}).exit_code, 2);
}

TEST(BenchIntegration, ClearWindow4RunIsCleanAndEveryMessageReachedTheGame) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(gateway_for(game, kNoRpmLimit));
  const BenchRun run = run_bench({"--connections", "20", "--window", "4", "--duration", "2",
                                  "--rss-tree", std::to_string(gateway.pid()), endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("connections"), 20);
  EXPECT_EQ(run.value("connections_up"), 20);
  EXPECT_EQ(run.value("encrypted"), 0);
  EXPECT_EQ(run.value("window"), 4);
  EXPECT_GE(run.value("seconds"), 2);
  const double messages = run.value("messages");
  EXPECT_GT(messages, 0);
  // Nothing was in flight when the run ended: the game saw exactly the
  // messages whose replies were verified.
  EXPECT_EQ(static_cast<double>(game_frames(game)), messages);
  EXPECT_EQ(game.streams().size(), 20u);
  EXPECT_GT(run.value("msgs_per_s"), 0);
  EXPECT_LE(run.value("p50_us"), run.value("p99_us"));
  EXPECT_LE(run.value("p99_us"), run.value("max_us"));
  EXPECT_GT(run.value("gateway_rss_kib"), 0);  // the supervisor and its children
  EXPECT_GE(run.value("gateway_processes"), 4);
  // Every echo crossed the frontend, a worker and the bridge: CPU was spent.
  EXPECT_GT(run.value("gateway_cpu_us_per_msg"), 0);
  EXPECT_GT(run.value("bench_cpu_us_per_msg"), 0);
}

// The batched contract under pipelined load: every message reached the game
// once (the link batches many sessions' events per gRPC message).
TEST(BenchIntegration, BatchedContractWindow16RunIsClean) {
  FakeGameService game({.echo = true});
  GatewayOptions options = gateway_for(game, kNoRpmLimit);
  options.batched = true;
  options.workers = 2;
  GatewayProcess gateway(std::move(options));
  const BenchRun run = run_bench(
      {"--connections", "50", "--window", "16", "--encrypt", "--duration", "2", endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("connections_up"), 50);
  const double messages = run.value("messages");
  EXPECT_GT(messages, 0);
  EXPECT_EQ(static_cast<double>(game_frames(game)), messages);
  EXPECT_EQ(game.streams().size(), 50u) << "one session per connection on the link";
}

// --transport kcp against a gateway serving KCP on its port: every reply
// verified, every message reached the game once.
TEST(BenchIntegration, KcpEncryptedWindow4RunIsClean) {
  FakeGameService game({.echo = true});
  GatewayOptions options = gateway_for(game, kNoRpmLimit);
  options.listen = "127.0.0.1:0,transport=tcp+kcp";
  GatewayProcess gateway(std::move(options));
  const BenchRun run = run_bench({"--transport", "kcp", "--connections", "20", "--window", "4",
                                  "--encrypt", "--duration", "2", endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("connections_up"), 20);
  EXPECT_THAT(run.json, HasSubstr("\"transport\":\"kcp\""));
  const double messages = run.value("messages");
  EXPECT_GT(messages, 0);
  EXPECT_EQ(static_cast<double>(game_frames(game)), messages);
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_kcp_sessions_accepted_total"),
            20);
  EXPECT_EQ(run_bench({"--transport", "sctp", "127.0.0.1:1"}).exit_code, 2);
}

// --transport tls, ws, wss against a gateway listening with that transport
// (the test's own certificate, pinned with --tls-ca): every reply verified,
// every message reached the game once, and the set-up cost measured.
class BenchLayered : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "gatehouse-bench-tls-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    certificate_ = make_test_certificate(dir_);
    GatewayOptions options = gateway_for(game_, {"--rpm-limit", "0", "--tls-cert",
                                                 certificate_.cert, "--tls-key", certificate_.key});
    options.listen = "127.0.0.1:0,transport=" + GetParam();
    gateway_.emplace(std::move(options));
  }
  void TearDown() override {
    gateway_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  TestCertificate certificate_;
  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_P(BenchLayered, EncryptedWindow4RunIsClean) {
  std::vector<std::string> args = {"--transport",
                                   GetParam(),
                                   "--connections",
                                   "20",
                                   "--window",
                                   "4",
                                   "--encrypt",
                                   "--body-bytes",
                                   "3000",
                                   "--duration",
                                   "2",
                                   "--rss-tree",
                                   std::to_string(gateway_->pid())};
  if (GetParam() != "ws") {
    args.insert(args.end(), {"--tls-ca", certificate_.cert, "--tls-name", "localhost"});
  }
  args.push_back(endpoint(*gateway_));
  const BenchRun run = run_bench(args);
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway_->log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("connections_up"), 20);
  EXPECT_THAT(run.json, HasSubstr("\"transport\":\"" + GetParam() + "\""));
  const double messages = run.value("messages");
  EXPECT_GT(messages, 0);
  EXPECT_EQ(static_cast<double>(game_frames(game_)), messages);
  // Measured (/proc counts in clock ticks: 20 set-ups may take less than one).
  EXPECT_GE(run.value("gateway_cpu_us_per_connect"), 0);
  EXPECT_GT(run.value("connects_per_s"), 0);
  EXPECT_EQ(metric_sample(http_get(gateway_->metrics_port(), "/metrics"),
                          "gatehouse_connections_accepted_total"),
            20);
}

INSTANTIATE_TEST_SUITE_P(Each, BenchLayered, ::testing::Values("tls", "ws", "wss"),
                         [](const auto& p) { return p.param; });

// A certificate the bench does not trust (the system's CAs), or a name it is
// not for: no connection gets through its handshake, and the run says so.
TEST(BenchIntegration, AnUntrustedCertificateFailsEveryConnect) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "gatehouse-bench-tls-XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  const TestCertificate certificate = make_test_certificate(pattern);
  FakeGameService game({.echo = true});
  GatewayOptions options = gateway_for(
      game, {"--rpm-limit", "0", "--tls-cert", certificate.cert, "--tls-key", certificate.key});
  options.listen = "127.0.0.1:0,transport=wss";
  GatewayProcess gateway(std::move(options));
  const BenchRun untrusted =
      run_bench({"--transport", "wss", "--connections", "3", "--messages", "1", endpoint(gateway)});
  EXPECT_EQ(untrusted.exit_code, 1) << untrusted.output;
  EXPECT_THAT(untrusted.output, HasSubstr("connect 3"));
  EXPECT_THAT(untrusted.output, HasSubstr("wss handshake: "));
  const BenchRun misnamed =
      run_bench({"--transport", "wss", "--tls-ca", certificate.cert, "--tls-name", "example.org",
                 "--connections", "3", "--messages", "1", endpoint(gateway)});
  EXPECT_EQ(misnamed.exit_code, 1) << misnamed.output;
  EXPECT_THAT(misnamed.output, HasSubstr("connect 3"));
  EXPECT_EQ(run_bench({"--transport", "ws", "--tls-insecure", "127.0.0.1:1"}).exit_code, 2);
  std::filesystem::remove_all(pattern);
}

TEST(BenchIntegration, EncryptedPingPongRunIsClean) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(gateway_for(game, kNoRpmLimit));
  const BenchRun run = run_bench({"--connections", "20", "--encrypt", "--duration", "2",
                                  "--body-bytes", "200", endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("encrypted"), 1);
  EXPECT_EQ(run.value("window"), 1);
  EXPECT_EQ(run.value("body_bytes"), 200);
  const double messages = run.value("messages");
  EXPECT_GT(messages, 0);
  EXPECT_EQ(static_cast<double>(game_frames(game)), messages);
  EXPECT_FALSE(run.number("gateway_rss_kib").has_value());  // not asked for
  EXPECT_FALSE(run.number("gateway_cpu_us_per_msg").has_value());
}

// On a listener that takes nothing but the modern exchange (anything else is
// kicked with crypto_refused): every connection exchanged keys, and every
// payload both ways was sealed and opened.
TEST(BenchIntegration, ModernRunIsCleanOnAModernOnlyListener) {
  FakeGameService game({.echo = true});
  GatewayOptions options = gateway_for(game, kNoRpmLimit);
  options.listen = "127.0.0.1:0,crypto=modern";
  GatewayProcess gateway(std::move(options));
  const BenchRun run =
      run_bench({"--connections", "20", "--window", "4", "--messages", "50", "--crypto", "modern",
                 "--gateway-key", gateway.gateway_public_key_file(), "--body-bytes", "200",
                 endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("connections_up"), 20);
  EXPECT_EQ(run.value("encrypted"), 1);
  EXPECT_THAT(run.json, HasSubstr("\"crypto\":\"modern\""));
  EXPECT_EQ(run.value("body_bytes"), 200);
  EXPECT_EQ(run.value("messages"), 1000);
  EXPECT_EQ(game_frames(game), 1000u);
  EXPECT_EQ(game.streams().size(), 20u);
}

// --token-key: each connection logs in with a token signed for user i + 1,
// against a gateway that accepts only signed tokens.
TEST(BenchIntegration, SignedTokenLoginsLogInAsUsersOneToN) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gatehouse-bench-token-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  gatehouse::token::write_key_pair((dir / "login").string(),
                                   gatehouse::token::SecretKey::generate());
  FakeGameService game({.echo = true});
  GatewayOptions options =
      gateway_for(game, {"--rpm-limit", "0", "--login", "signed:" + (dir / "login.pub").string(),
                         "--login-audience", "bench"});
  GatewayProcess gateway(std::move(options));
  const BenchRun run =
      run_bench({"--connections", "10", "--window", "2", "--messages", "5", "--token-key",
                 (dir / "login.key").string(), "--token-audience", "bench", endpoint(gateway)});
  std::filesystem::remove_all(dir);
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("connections_up"), 10);
  std::set<std::int32_t> users;
  for (const auto& s : game.streams()) users.insert(s.user_id);
  EXPECT_EQ(users, (std::set<std::int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

// --aead aes-256-gcm: granted by a gateway with AES-NI, and the run is as
// clean as with the default AEAD; without AES-NI the bench refuses to ask.
TEST(BenchIntegration, ModernAesRunIsCleanWhereTheCpuHasAes) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(gateway_for(game, kNoRpmLimit));
  const BenchRun run =
      run_bench({"--connections", "10", "--window", "4", "--messages", "50", "--crypto", "modern",
                 "--gateway-key", gateway.gateway_public_key_file(), "--aead", "aes-256-gcm",
                 endpoint(gateway)});
  if (!modern::available(modern::Aead::kAes256Gcm)) {
    EXPECT_EQ(run.exit_code, 2) << run.output;
    EXPECT_THAT(run.output, HasSubstr("not available"));
    return;
  }
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("messages"), 500);
  EXPECT_THAT(run.json, HasSubstr("\"aead\":\"aes-256-gcm\""));
  EXPECT_EQ(game_frames(game), 500u);
  EXPECT_EQ(gateway.log_count("crypto=modern/aes-256-gcm"), 10u) << gateway.log();
}

// Heartbeats after the login are sealed too (and their acks opened).
TEST(BenchIntegration, ModernIdleConnectionsHeartbeatSealed) {
  FakeGameService game({.echo = true});
  // A 2 s deadline against 0.3 s heartbeats: a loaded machine may delay a
  // beat by more than a second, never by 1.7 s.
  GatewayOptions options = gateway_for(game, {"--read-timeout", "2"});
  options.listen = "127.0.0.1:0,crypto=modern";
  GatewayProcess gateway(std::move(options));
  const BenchRun run = run_bench({"--idle", "5", "--duration", "4", "--heartbeat", "0.3",
                                  "--timeout", "3", "--crypto", "modern", "--gateway-key",
                                  gateway.gateway_public_key_file(), endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("idle_connections"), 5);
  EXPECT_THAT(run.json, HasSubstr("\"crypto\":\"modern\""));
}

TEST(BenchIntegration, MessageCountEndsTheRunByItself) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(gateway_for(game, kNoRpmLimit));
  const BenchRun run = run_bench(
      {"--connections", "5", "--window", "8", "--messages", "100", "--encrypt", endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("messages"), 500);
  EXPECT_EQ(game_frames(game), 500u);
}

TEST(BenchIntegration, MissingRepliesAreTimeoutsAndExit1) {
  FakeGameService game({.echo = false});  // takes the messages, never answers
  GatewayProcess gateway(gateway_for(game, kNoRpmLimit));
  const BenchRun run = run_bench({"--connections", "4", "--window", "2", "--duration", "1",
                                  "--timeout", "1", endpoint(gateway)},
                                 20s);
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_EQ(run.value("messages"), 0);
  EXPECT_EQ(run.value("errors"), 4) << run.json;  // one per connection: it is closed on the first
  EXPECT_EQ(run.value("timeout"), 4) << run.json;
  EXPECT_FALSE(run.number("p50_us").has_value());
  EXPECT_THAT(run.output, HasSubstr("no reply to message 0 in time"));
  EXPECT_LT(run.seconds, 10);
}

TEST(BenchIntegration, AForgedReplyIsCaught) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(gateway_for(game, kNoRpmLimit));
  std::optional<BenchRun> run;
  std::thread bench([&] {
    run = run_bench({"--connections", "1", "--duration", "3", endpoint(gateway)});
  });
  // A 1002 as the game would send it, but for message 1000000 of connection 0.
  bool pushed = false;
  // Pushed once echo traffic flows, so a message is in flight to mismatch.
  if (game.wait_for_streams(1, kPatience) &&
      game.wait_for_frames(game.streams().front().user_id, 10, kPatience)) {
    const std::int32_t user = game.streams().front().user_id;
    std::vector<std::byte> forged{std::byte{0x03}, std::byte{0xea},  // proto 1002
                                  std::byte{0},    std::byte{0},    std::byte{0},
                                  std::byte{0},    std::byte{0x00}, std::byte{0x0f},
                                  std::byte{0x42}, std::byte{0x40}};
    forged.resize(2 + 64);
    pushed = game.push(user, forged);
  }
  bench.join();
  ASSERT_TRUE(pushed);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->exit_code, 1) << run->output;
  EXPECT_EQ(run->value("bad_reply"), 1) << run->json;
  EXPECT_EQ(run->value("errors"), 1) << run->json;
  EXPECT_THAT(run->output, HasSubstr("message 1000000"));
}

TEST(BenchIntegration, IdleConnectionsHeartbeatPastTheReadDeadline) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(gateway_for(game, {"--read-timeout", "2"}));
  // Held twice the gateway's read deadline: only the heartbeats keep them
  // (0.3 s apart, so a loaded machine may delay one by 1.7 s).
  const BenchRun run =
      run_bench({"--idle", "10", "--duration", "4", "--heartbeat", "0.3", "--timeout", "3",
                 "--rss-tree", std::to_string(gateway.pid()), endpoint(gateway)});
  ASSERT_EQ(run.exit_code, 0) << run.output << "gateway log:\n" << gateway.log();
  EXPECT_EQ(run.value("errors"), 0) << run.output;
  EXPECT_EQ(run.value("idle"), 1);
  EXPECT_EQ(run.value("idle_connections"), 10);
  EXPECT_EQ(run.value("messages"), 0);
  EXPECT_GT(run.value("gateway_rss_kib"), 0);
  EXPECT_GT(run.value("gateway_rss_baseline_kib"), 0);
  EXPECT_TRUE(run.number("rss_per_connection_bytes").has_value()) << run.json;
  EXPECT_EQ(game.streams().size(), 10u);
}

TEST(BenchIntegration, ConnectionsTheGatewayClosesAreCounted) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(gateway_for(game, {"--read-timeout", "1"}));
  // The same hold without heartbeats: the gateway's read deadline closes each one.
  const BenchRun run =
      run_bench({"--idle", "5", "--duration", "3", "--heartbeat", "60", endpoint(gateway)}, 20s);
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_EQ(run.value("closed"), 5) << run.json;
  EXPECT_EQ(run.value("errors"), 5) << run.json;
  EXPECT_THAT(run.output, HasSubstr("closed by the gateway"));
  EXPECT_LT(run.seconds, 3);  // every connection gone: the run ends early
}

// tools/bench/connections.sh (the most-connections scenario of
// docs/benchmarks.md), small: two gateway instances sharing a port, two bench
// processes, every connection held, and the sums of their summaries.
TEST(BenchScript, ConnectionsAreHeldAcrossInstancesSharingAPort) {
  const auto out = std::filesystem::temp_directory_path() /
                   ("gatehouse-connections-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(out);
  const auto log = out / "script.log";
  ChildProcess script(
      {"/usr/bin/env", "INSTANCES=2", "HOLD_SECONDS=1", "CONNECT_RATE=2000",
       "GATEHOUSE_BENCH_PORT=" + std::to_string(free_port()),
       "GATEHOUSE_BENCH_GAME_PORT=" + std::to_string(free_port()),
       std::string("BUILD_DIR=") + GATEHOUSE_BUILD_DIR, "OUT_DIR=" + out.string(), "bash",
       std::string(GATEHOUSE_SOURCE_DIR) + "/tools/bench/connections.sh", "300"},
      log.string());
  const auto status = script.wait(90s);
  std::ifstream in(log);
  std::ostringstream text;
  text << in.rdbuf();
  ASSERT_TRUE(status.has_value()) << "did not finish:\n" << text.str();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << text.str();
  EXPECT_THAT(text.str(), HasSubstr("2 gateway instance(s)"));
  EXPECT_THAT(text.str(), HasSubstr("total: 300 connections held, 0 errors"));
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace gatehouse::testing
