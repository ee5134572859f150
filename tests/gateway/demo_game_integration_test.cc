// The demo game as a process (echo, chat, kick-me: examples/demo-game), in
// each of its implementations, behind the real gateway: the C++ one
// (gw::game_server; suite CppDemoGame) and, when built
// (-DGATEHOUSE_GO_SDK=ON), the Go one on the Go SDK
// (sdk/go/examples/demo-game; suite GoDemoGame). The same scenarios run
// against each: echo, chat and kick-me on the batched contract and on
// gonet2's, a game-service restart, and a bridge SIGKILLed under load on the
// batched contract, which must cost no message: every echo comes once, in
// order.
//
// The binaries are compile definitions: CPP_DEMO_GAME_PATH, and
// GO_DEMO_GAME_PATH when the Go SDK is built (ctest runs the GoDemoGame
// tests once the Go build, fixture go_sdk, has passed).
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"
#include "local_port.h"
#include "patience.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using client::Client;
using namespace std::chrono_literals;

/// One implementation of the demo game: its name in messages, its binary.
struct Implementation {
  const char* name;
  const char* path;
};
/// What gtest prints for the parameter.
std::ostream& operator<<(std::ostream& os, const Implementation& implementation) {
  return os << implementation.name;
}
const Implementation kCpp{"C++", CPP_DEMO_GAME_PATH};
#ifdef GO_DEMO_GAME_PATH
const Implementation kGo{"Go", GO_DEMO_GAME_PATH};
#endif

/// The demo game binary on a port of its own, until destroyed (SIGTERM,
/// then SIGKILL after kPatience).
class DemoGame {
 public:
  DemoGame(const Implementation& implementation, std::uint16_t port)
      : path_(implementation.path), port_(port) {
    start();
  }
  ~DemoGame() { stop(); }
  DemoGame(const DemoGame&) = delete;
  DemoGame& operator=(const DemoGame&) = delete;

  void start() {
    child_.emplace(
        std::vector<std::string>{path_, "--listen", "127.0.0.1:" + std::to_string(port_)});
    if (!wait_listening(port_, kPatience)) ADD_FAILURE() << path_ << " did not listen on " << port_;
  }
  void stop() {
    if (!child_) return;
    child_->kill(SIGTERM);
    const auto status = child_->wait(kPatience);
    if (!status) {
      ADD_FAILURE() << "the demo game did not stop on SIGTERM";
      child_->kill(SIGKILL);
    } else {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
    }
    child_.reset();
  }
  std::uint16_t port() const { return port_; }

 private:
  std::string path_;
  std::uint16_t port_;
  std::optional<ChildProcess> child_;
};

/// The implementation, and the contract: batched (true) or gonet2's.
class DemoGameTest : public ::testing::TestWithParam<std::tuple<Implementation, bool>> {
 protected:
  DemoGameTest() : game_(std::get<0>(GetParam()), free_port()) {}

  void start_gateway(std::vector<std::string> extra = {}, std::uint32_t workers = 2) {
    GatewayOptions options{game_.port(), workers, std::move(extra), {}};
    options.batched = std::get<1>(GetParam());
    gateway_.emplace(std::move(options));
  }

  DemoGame game_;
  std::optional<GatewayProcess> gateway_;
};

TEST_P(DemoGameTest, EchoChatAndKickMe) {
  start_gateway();
  auto ann = std::make_unique<Client>();
  ann->connect("127.0.0.1", gateway_->port(), kPatience);
  const auto ann_login = ann->login("ann", "", kPatience);
  ASSERT_TRUE(ann_login.ok());
  auto bob = logged_in_client(gateway_->port(), "bob", "", /*encrypt=*/true);
  ASSERT_TRUE(echo_works(*ann, "hello"));
  ASSERT_TRUE(echo_works(*bob, "hi"));

  // chat_say reaches every session, the speaker included, with its uid.
  ASSERT_TRUE(ann->send(client::demo::kChatSay, client::demo::encode_chat_say("hi all")));
  for (Client* c : {ann.get(), bob.get()}) {
    const auto hear = c->receive_proto(client::demo::kChatMessage, kPatience);
    ASSERT_TRUE(hear.has_value());
    const auto chat = client::demo::parse_chat_message(hear->body);
    ASSERT_TRUE(chat.has_value());
    EXPECT_EQ(*chat, (client::demo::ChatMessage{ann_login.uid(), "hi all"}));
  }

  // kick_me ends that session only, kicked by the game.
  ASSERT_TRUE(bob->send(client::demo::kKickMe));
  EXPECT_TRUE(bob->wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=kicked_by_game", kPatience)) << gateway_->log();
  EXPECT_TRUE(echo_works(*ann, "still here"));
  EXPECT_EQ(gateway_->log_count("reason="), 1u) << gateway_->log();
}

std::string contract_name(const ::testing::TestParamInfo<DemoGameTest::ParamType>& param) {
  return std::get<1>(param.param) ? "Batched" : "Gonet2";
}
INSTANTIATE_TEST_SUITE_P(CppDemoGame, DemoGameTest,
                         ::testing::Combine(::testing::Values(kCpp), ::testing::Bool()),
                         contract_name);
#ifdef GO_DEMO_GAME_PATH
INSTANTIATE_TEST_SUITE_P(GoDemoGame, DemoGameTest,
                         ::testing::Combine(::testing::Values(kGo), ::testing::Bool()),
                         contract_name);
#endif

/// The implementation, for the scenarios of the batched contract.
class DemoGameBatchedTest : public ::testing::TestWithParam<Implementation> {};

// The game service restarts (SIGTERM, then a new process on the same port)
// behind a batched link: the gateway keeps its clients and opens their
// sessions again on the new process. (On gonet2's contract a stream that
// ends closes its client.)
TEST_P(DemoGameBatchedTest, GameServiceRestartKeepsTheClients) {
  DemoGame game(GetParam(), free_port());
  GatewayOptions options{game.port(), 2, {}, {}};
  options.batched = true;
  GatewayProcess gateway(std::move(options));
  auto c = logged_in_client(gateway.port(), "patient", "", /*encrypt=*/false);
  ASSERT_TRUE(echo_works(*c, "before"));
  game.stop();
  game.start();
  // The first messages may find the gateway still reconnecting; the session
  // must carry on and echo again, within patience.
  bool echoed = false;
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  for (int n = 0; !echoed && std::chrono::steady_clock::now() < deadline; ++n) {
    const std::string text = "after-" + std::to_string(n);
    ASSERT_TRUE(c->send(client::demo::kPingReq, client::to_bytes(text)));
    const auto reply = c->receive_proto(client::demo::kPingAck, 2s);
    echoed = reply && reply->body == client::to_bytes(text);
  }
  EXPECT_TRUE(echoed);
  EXPECT_FALSE(c->closed());
  EXPECT_EQ(gateway.log_count("kick conn="), 0u) << gateway.log();
}

/// Pipelined echo (a window of 8) until `stop`, then drains what is in
/// flight; every echo must come once, in order. Empty: all went well.
std::string echo_until(std::uint16_t port, int index, const std::atomic<bool>& stop,
                       std::atomic<std::uint64_t>& echoed) {
  auto c = logged_in_client(port, "load-" + std::to_string(index), "", index % 2 == 0);
  const auto text = [index](std::uint64_t n) {
    return std::to_string(index) + "-" + std::to_string(n) + std::string(n % 40, 'x');
  };
  constexpr std::uint64_t kWindow = 8;
  std::uint64_t sent = 0;
  while (!stop.load() || echoed < sent) {
    while (!stop.load() && sent - echoed < kWindow) {
      if (!c->send(client::demo::kPingReq, client::to_bytes(text(sent)))) {
        return "send failed after " + std::to_string(sent);
      }
      ++sent;
    }
    const auto reply = c->receive(kPatience);
    if (!reply)
      return (c->closed() ? "disconnected after " : "no echo after ") + std::to_string(echoed);
    if (reply->proto != client::demo::kPingAck || reply->body != client::to_bytes(text(echoed))) {
      return "echo " + std::to_string(echoed) +
             " wrong, repeated or out of order: " + client::describe(*reply);
    }
    ++echoed;
  }
  return {};
}

// The bridge SIGKILLed under load on the batched contract: both sides
// acknowledge, so nothing is lost or repeated: every echo once, in order; no
// client is disconnected; the loss metrics stay at zero.
TEST_P(DemoGameBatchedTest, KilledBridgeUnderLoadLosesNothing) {
  DemoGame game(GetParam(), free_port());
  GatewayOptions options{game.port(), 2, {"--rpm-limit", "0"}, {}};
  options.batched = true;
  GatewayProcess gateway(std::move(options));
  constexpr std::size_t kClients = 8;
  std::atomic<bool> stop{false};
  std::vector<std::string> errors(kClients);
  std::vector<std::atomic<std::uint64_t>> echoed(kClients);
  std::vector<std::thread> clients;
  for (std::size_t i = 0; i < kClients; ++i) {
    clients.emplace_back(
        [&, i] { errors[i] = echo_until(gateway.port(), static_cast<int>(i), stop, echoed[i]); });
  }
  // Waits until every client has echoed `n` more than `since`.
  const auto wait_echoes = [&](const std::vector<std::uint64_t>& since, std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    for (std::size_t i = 0; i < kClients; ++i) {
      while (echoed[i].load() < since[i] + n && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);  // polls the counter, bounded by kPatience
      }
    }
  };
  const auto counts = [&] {
    std::vector<std::uint64_t> now;
    for (const auto& e : echoed) now.push_back(e.load());
    return now;
  };
  // Load before, between and after the kills: every client echoes 50 more.
  int kills = 0;
  for (int k = 0; k < 3; ++k) {
    wait_echoes(counts(), 50);
    if (::kill(gateway.bridge_pid(), SIGKILL) == 0) ++kills;
    if (!gateway.wait_log_count("reopened the game streams of", std::size_t(kills), kPatience)) {
      ADD_FAILURE() << "no new bridge after kill " << kills << "\n" << gateway.log();
      break;  // the clients still stop and are joined
    }
  }
  wait_echoes(counts(), 50);
  stop.store(true);
  for (auto& t : clients) t.join();
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < kClients; ++i) {
    EXPECT_EQ(errors[i], "") << "client " << i;
    total += echoed[i];
  }
  EXPECT_EQ(kills, 3);
  EXPECT_GT(total, std::uint64_t{kClients} * 10) << "the clients must have been busy";
  const std::string text = http_get(gateway.metrics_port(), "/metrics");
  EXPECT_EQ(metric_sample(text, "gatehouse_game_frames_lost_total"), 0) << text;
  EXPECT_EQ(metric_sample(text, R"(gatehouse_frames_dropped_total{direction="to_game"})"), 0);
  EXPECT_EQ(metric_sample(text, R"(gatehouse_frames_dropped_total{direction="to_client"})"), 0);
  EXPECT_EQ(gateway.log_count("kick conn="), 0u) << gateway.log();
  EXPECT_GT(metric_sample(text, "gatehouse_game_events_resent_total"), 0)
      << "the kills must have caught events the game had not acknowledged";
  std::printf(
      "%s: %d bridge kills under load, %llu echoes verified, none lost; %.0f events re-sent to "
      "the game, %.0f repeated replies dropped by the workers\n",
      GetParam().name, kills, static_cast<unsigned long long>(total),
      metric_sample(text, "gatehouse_game_events_resent_total"),
      metric_sample(text, "gatehouse_game_duplicates_dropped_total"));
}

std::string implementation_name(const ::testing::TestParamInfo<Implementation>& param) {
  return std::string(param.param.name) == "Go" ? "Go" : "Cpp";
}
INSTANTIATE_TEST_SUITE_P(CppDemoGame, DemoGameBatchedTest, ::testing::Values(kCpp),
                         implementation_name);
#ifdef GO_DEMO_GAME_PATH
INSTANTIATE_TEST_SUITE_P(GoDemoGame, DemoGameBatchedTest, ::testing::Values(kGo),
                         implementation_name);
#endif

}  // namespace
}  // namespace gatehouse::testing
