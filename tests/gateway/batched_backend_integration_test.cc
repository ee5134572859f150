// The batched game-service contract (proto/batch.proto) end to end: the real
// gateway with --backend batch:HOST:PORT in front of FakeGameService, whose
// GameServer serves both contracts; each session on the shared link is a
// "stream" to the fake's handler, so the same waits and records apply.
#include <signal.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "batch.grpc.pb.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::Client;

class BatchedBackendTest : public ::testing::Test {
 protected:
  void start(std::uint32_t workers = 2, std::vector<std::string> extra = {}) {
    GatewayOptions options{game_.port(), workers, std::move(extra), {}};
    options.batched = true;
    gateway_.emplace(std::move(options));
  }

  std::unique_ptr<Client> logged_in(const std::string& udid, bool encrypt) {
    return logged_in_client(gateway_->port(), udid, "", encrypt);
  }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_F(BatchedBackendTest, ManySessionsShareOneLinkInOrderAndApart) {
  start();
  constexpr int kClients = 12;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(logged_in("b-" + std::to_string(i), i % 2));
  ASSERT_TRUE(game_.wait_for_streams(kClients, kPatience));
  // Pipelined: every client sends 20 before reading; replies come back to
  // the right client, complete and in order.
  for (std::size_t i = 0; i < std::size_t{kClients}; ++i) {
    for (int k = 0; k < 20; ++k) {
      ASSERT_TRUE(
          clients[i]->send(1001, client::to_bytes(std::to_string(i) + "/" + std::to_string(k))));
    }
  }
  for (std::size_t i = 0; i < std::size_t{kClients}; ++i) {
    for (int k = 0; k < 20; ++k) {
      const auto reply = clients[i]->receive_proto(1002, kPatience);
      ASSERT_TRUE(reply.has_value()) << "client " << i << " message " << k;
      EXPECT_EQ(reply->body, client::to_bytes(std::to_string(i) + "/" + std::to_string(k)));
    }
  }
  // The game saw one session per client, with the user id the login gave.
  const auto streams = game_.streams();
  ASSERT_EQ(streams.size(), static_cast<std::size_t>(kClients));
  for (const FakeStream& s : streams) EXPECT_EQ(s.frames.size(), 20u);
  EXPECT_EQ(gateway_->log_count("reason="), 0u) << gateway_->log();
  // Batching is visible to operators: every message went out in some batch,
  // and batches carried more than one event on average (12 x 20 pipelined).
  std::string text;
  for (int i = 0; i < 50; ++i) {  // the bridge adds its counts on its next pass
    text = http_get(gateway_->metrics_port(), "/metrics");
    if (metric_sample(text, "gatehouse_game_messages_sent_total") >= 240 &&
        metric_sample(text, "gatehouse_game_messages_received_total") >= 240) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  const double sent = metric_sample(text, "gatehouse_game_messages_sent_total");
  const double batches = metric_sample(text, "gatehouse_game_batches_sent_total");
  EXPECT_EQ(sent, 240) << text;
  EXPECT_GT(batches, 0) << text;
  EXPECT_LT(batches, sent) << "pipelined messages must share batches";
  EXPECT_EQ(metric_sample(text, "gatehouse_game_messages_received_total"), 240) << text;
  EXPECT_GT(metric_sample(text, "gatehouse_game_batches_received_total"), 0) << text;
  // The game acknowledged everything (the bridge's gauge catches up on its
  // next pass).
  for (int i = 0; i < 100; ++i) {
    text = http_get(gateway_->metrics_port(), "/metrics");
    if (metric_sample(text, "gatehouse_game_events_unacknowledged") == 0) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(metric_sample(text, "gatehouse_game_events_unacknowledged"), 0) << text;
}

TEST_F(BatchedBackendTest, ClientLeavingEndsItsSessionAtTheGame) {
  start();
  auto c = logged_in("leaver", true);
  ASSERT_TRUE(echo_works(*c, "hi"));
  const std::int32_t uid = game_.streams().at(0).user_id;
  c.reset();  // closes the socket
  const auto ended = game_.wait_for_stream_end(uid, kPatience);
  ASSERT_TRUE(ended.has_value());
  EXPECT_TRUE(ended->client_half_closed) << "the gateway's CLOSE is the client leaving";
}

TEST_F(BatchedBackendTest, GameKickAndPushReachOnlyTheirSession) {
  start();
  auto bystander = logged_in("bystander", true);
  auto target = std::make_unique<Client>();
  target->connect("127.0.0.1", gateway_->port());
  const auto login = target->login("target", "");
  ASSERT_TRUE(login.ok());
  const std::int32_t target_uid = login.value;
  ASSERT_TRUE(game_.wait_for_streams(2, kPatience));
  const std::vector<std::byte> push{std::byte{0x07}, std::byte{0xD0}, std::byte{'x'}};
  ASSERT_TRUE(game_.push(target_uid, push));
  const auto pushed = target->receive_proto(2000, kPatience);
  ASSERT_TRUE(pushed.has_value());
  ASSERT_TRUE(game_.kick(target_uid));
  EXPECT_TRUE(target->wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("reason=kicked_by_game")) << gateway_->log();
  EXPECT_TRUE(echo_works(*bystander, "still here"));
  EXPECT_EQ(gateway_->log_count("reason="), 1u) << gateway_->log();
}

TEST_F(BatchedBackendTest, KilledBridgeReattachesEverySessionOnTheNewLink) {
  start();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 6; ++i) clients.push_back(logged_in("k-" + std::to_string(i), i % 2));
  for (auto& c : clients) ASSERT_TRUE(echo_works(*c, "before"));
  ::kill(gateway_->bridge_pid(), SIGKILL);
  ASSERT_TRUE(gateway_->wait_log("reopened the game streams of 6 logged-in sessions", kPatience))
      << gateway_->log();
  for (auto& c : clients) {
    EXPECT_TRUE(echo_works(*c, "after")) << "the session must carry on";
    EXPECT_FALSE(c->closed());
  }
  EXPECT_EQ(gateway_->log_count("kick conn="), 0u) << gateway_->log();
  // The game took the new link's OPENs as re-attaching its sessions: its
  // handler saw each session open once and none end.
  const auto streams = game_.streams();
  EXPECT_EQ(streams.size(), 6u);
  for (const FakeStream& s : streams) EXPECT_FALSE(s.ended) << "user " << s.user_id;
}

TEST_F(BatchedBackendTest, GameServiceRestartKeepsTheSessions) {
  start();
  auto c = logged_in("patient", true);
  ASSERT_TRUE(echo_works(*c, "before"));
  game_.stop();
  ASSERT_TRUE(gateway_->wait_log("batched link ended", kPatience)) << gateway_->log();
  game_.start();
  ASSERT_TRUE(gateway_->wait_log("1 sessions re-attached", kPatience)) << gateway_->log();
  ASSERT_TRUE(game_.wait_for_streams(2, kPatience));
  EXPECT_TRUE(echo_works(*c, "after"));
  EXPECT_FALSE(c->closed());
  EXPECT_EQ(gateway_->log_count("kick conn="), 0u) << gateway_->log();
}

// A game service that stays away longer than --backend-wait: its sessions
// are kicked (backend_unavailable), and a login meanwhile is kicked at once;
// once it is back, new sessions work again.
TEST_F(BatchedBackendTest, SessionsGiveUpOnAGameServiceAwayLongerThanBackendWait) {
  start(2, {"--backend-wait", "1"});
  auto waiting = logged_in("waiting", true);
  ASSERT_TRUE(echo_works(*waiting, "before"));
  game_.stop();
  ASSERT_TRUE(gateway_->wait_log("batched link ended", kPatience)) << gateway_->log();
  auto late = std::make_unique<Client>();
  late->connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(late->login("late", "").ok());
  // Kicked at once when the bridge is between two link attempts, or with the
  // waiting ones when it was in the middle of one.
  EXPECT_TRUE(late->wait_closed(kPatience)) << "a login while the game is away is kicked";
  EXPECT_TRUE(waiting->wait_closed(kPatience)) << "a waiting session gives up after --backend-wait";
  EXPECT_TRUE(gateway_->wait_log("sessions waiting for it")) << gateway_->log();
  EXPECT_EQ(gateway_->log_count("reason=backend_unavailable"), 2u) << gateway_->log();
  game_.start();
  ASSERT_TRUE(gateway_->wait_log_count("game service", 1, kPatience));
  std::unique_ptr<Client> fresh;
  for (int attempt = 0; attempt < 50; ++attempt) {  // until the bridge's next link attempt
    fresh = logged_in("fresh-" + std::to_string(attempt), false);
    if (echo_works(*fresh, "back")) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(echo_works(*fresh, "again"));
  EXPECT_FALSE(fresh->closed());
}

/// A batched game service that reads every Batch and never answers, not
/// even with an ack: a broken implementation of the contract.
class MuteBatchGame final : public batch::BatchGameService::CallbackService {
 public:
  MuteBatchGame() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~MuteBatchGame() override { server_->Shutdown(std::chrono::system_clock::now()); }
  int port() const { return port_; }
  int calls() const { return calls_.load(); }
  int events() const { return events_.load(); }

  grpc::ServerBidiReactor<batch::Batch, batch::Batch>* Batches(
      grpc::CallbackServerContext*) override {
    ++calls_;
    return new Reader(*this);
  }

 private:
  class Reader final : public grpc::ServerBidiReactor<batch::Batch, batch::Batch> {
   public:
    explicit Reader(MuteBatchGame& game) : game_(game) { StartRead(&in_); }
    void OnReadDone(bool ok) override {
      if (!ok) return Finish(grpc::Status::OK);
      game_.events_ += in_.events_size();
      StartRead(&in_);
    }
    void OnDone() override { delete this; }

   private:
    MuteBatchGame& game_;
    batch::Batch in_;
  };

  int port_ = 0;
  std::atomic<int> calls_{0};
  std::atomic<int> events_{0};
  std::unique_ptr<grpc::Server> server_;
};

// The gateway keeps a batched link's events in its rings until the game
// acknowledges them; a game that never does would stall the worker's ring.
// Its link is cancelled instead, loudly (a log line, the events counted as
// dropped), and a new one is tried; the client stays connected.
TEST(BatchedBackendContract, GameThatNeverAcknowledgesLosesItsLink) {
  MuteBatchGame game;
  GatewayOptions options{game.port(), 1, {"--backend-wait", "1"}, {}};
  options.batched = true;
  GatewayProcess gateway(std::move(options));
  auto c = logged_in_client(gateway.port(), "unheard", "", false);
  ASSERT_TRUE(c->send(1001, client::to_bytes("anyone?")));
  // Operators see the game falling behind before the link goes.
  double held = 0;
  for (int i = 0; i < 50 && held < 2; ++i) {
    held = metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                         "gatehouse_game_events_unacknowledged");
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(held, 2) << "the OPEN and the MESSAGE wait for an acknowledgement";
  EXPECT_TRUE(gateway.wait_log("no acknowledgement for 1000 ms; cancelling the link", kPatience))
      << gateway.log();
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (game.calls() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE(game.calls(), 2) << "a new link is tried";
  EXPECT_GE(game.events(), 2) << "the OPEN and the MESSAGE reached the game";
  std::string text;
  for (const auto give_up = std::chrono::steady_clock::now() + kPatience;
       std::chrono::steady_clock::now() < give_up;) {
    text = http_get(gateway.metrics_port(), "/metrics");
    if (metric_sample(text, R"(gatehouse_frames_dropped_total{direction="to_game"})") >= 2) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE(metric_sample(text, R"(gatehouse_frames_dropped_total{direction="to_game"})"), 2)
      << "the unacknowledged OPEN and MESSAGE are counted" << text;
  EXPECT_FALSE(c->closed());
}

}  // namespace
}  // namespace gatehouse::testing
