// A game service that outruns the gateway is slowed down, and cannot grow
// the bridge's memory without bound (issue 20, game-backlog-bytes): the real
// gateway with its one worker SIGSTOPped (its ring from the bridge fills up),
// a game that pushes 30 MB to that worker's session as fast as it can, over
// each contract. The bridge's backlog stays within its bound while the game
// holds the rest; once the worker goes on, the client gets every message, in
// order.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "game_test_client.h"
#include "gatehouse/client/client.h"
#include "gatehouse/codec/game_link_limits.h"
#include "gateway_process.h"
#include "http_get.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kBound = 256 << 10;  // --game-backlog-bytes
constexpr int kMessages = 30000;
constexpr std::int16_t kProto = 3001;

/// The body of message `i`: its number, padded to 1000 bytes.
std::string body(int i) {
  std::string b = std::to_string(i);
  b.resize(1000, '.');
  return b;
}

/// A process's resident memory in bytes (VmRSS), 0 when it is gone.
std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      std::uint64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    status.ignore(1 << 10, '\n');
  }
  return 0;
}

/// Parameter: the game speaks the batched contract.
class GameBackpressure : public ::testing::TestWithParam<bool> {
 protected:
  GameBackpressure() {
    GatewayOptions options{game_.port(),
                           1,
                           {"--game-backlog-bytes", std::to_string(kBound),
                            // The worker is stopped on purpose: not a hang to cure.
                            "--hang-timeout", "3600", "--read-timeout", "300",
                            // What it then writes at once is not a slow client.
                            "--txqueuelen", "1048576", "--txqueue-bytes", "1073741824"},
                           {}};
    options.batched = GetParam();
    gateway_.emplace(std::move(options));
  }

  double metric(const std::string& name) const {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"), name);
  }
  /// Waits until the metric reached `at_least`; its last value.
  double metric_at_least(const std::string& name, double at_least) const {
    double value = 0;
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    do {
      value = metric(name);
      if (value >= at_least) break;
      std::this_thread::sleep_for(20ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return value;
  }

  FakeGameService game_;
  std::optional<GatewayProcess> gateway_;
};

TEST_P(GameBackpressure, AGameFloodingAStoppedWorkerIsHeldBackAndLosesNothing) {
  client::Client player;
  player.connect("127.0.0.1", gateway_->port(), kPatience);
  const auto login = player.login("flooded", "", kPatience);
  ASSERT_TRUE(login.ok());
  ASSERT_TRUE(game_.wait_for_streams(1, kPatience));
  const pid_t bridge = gateway_->bridge_pid();
  const std::uint64_t rss_before = rss_bytes(bridge);

  const pid_t worker = gateway_->worker_pid(0);
  ASSERT_EQ(::kill(worker, SIGSTOP), 0);
  // A third, then (once the bridge has paused) the rest: a batched game
  // may send its whole queue in one Batch, which the bridge reads whole.
  const auto push = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      ASSERT_TRUE(game_.push(login.uid(), packet(kProto, to_bytes(body(i))))) << i;
    }
  };
  push(0, kMessages / 3);
  ASSERT_GE(metric_at_least("gatehouse_game_reads_paused_total", 1), 1);
  push(kMessages / 3, kMessages);

  // For a second: the backlog stays within its bound plus the one gRPC
  // message the call had read (a Frame; a Batch may carry many), the game
  // keeps what the bridge does not read, and so does not the bridge's heap.
  const double slack = GetParam() ? double{game_link::kMaxMessageBytes} : 2048.0;
  double most = 0;
  std::uint64_t rss_most = 0;
  for (int i = 0; i < 20; ++i) {
    most = std::max(most, metric("gatehouse_game_backlog_bytes"));
    rss_most = std::max(rss_most, rss_bytes(bridge));
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_LE(most, kBound + slack);
  EXPECT_EQ(metric("gatehouse_game_reads_paused"), 1);
  const double received = metric("gatehouse_game_messages_received_total");
  EXPECT_LE(received, kMessages / 3) << "the game holds back what it sent after the pause";
  EXPECT_LT(rss_most, rss_before + (16u << 20))
      << "bridge RSS " << rss_before << " -> " << rss_most << " bytes";
  std::printf("backlog at most %.0f bytes, %.0f of %d messages taken, bridge RSS %lu -> %lu\n",
              most, received, kMessages, static_cast<unsigned long>(rss_before),
              static_cast<unsigned long>(rss_most));

  ASSERT_EQ(::kill(worker, SIGCONT), 0);
  for (int i = 0; i < kMessages; ++i) {
    const auto got = player.receive_proto(kProto, kPatience);
    ASSERT_TRUE(got.has_value()) << "message " << i << " of " << kMessages;
    ASSERT_EQ(got->body, to_bytes(body(i)));
  }
  EXPECT_EQ(metric_at_least("gatehouse_game_messages_received_total", kMessages), kMessages);
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (
      (metric("gatehouse_game_backlog_bytes") != 0 || metric("gatehouse_game_reads_paused") != 0) &&
      std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(metric("gatehouse_game_backlog_bytes"), 0);
  EXPECT_EQ(metric("gatehouse_game_reads_paused"), 0);
  EXPECT_TRUE(gateway_->wait_log("game calls that feed it stop reading"));
  EXPECT_EQ(gateway_->terminate(), 0) << gateway_->log();
}

std::string contract_name(const ::testing::TestParamInfo<bool>& param) {
  return param.param ? "Batched" : "Gonet2";
}

INSTANTIATE_TEST_SUITE_P(EachContract, GameBackpressure, ::testing::Bool(), contract_name);

}  // namespace
}  // namespace gatehouse::testing
