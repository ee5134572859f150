// Discovery through etcd end to end (docs/discovery.md): a real etcd
// (Debian's etcd-server, started on free ports), the real gateway with
// --services game-10000 and no backend line, and fake game services (real
// gRPC servers) registered as /backends/game-10000/NAME = HOST:PORT, as
// gonet2's game services register themselves. Every case runs over each of
// etcd's APIs (--etcd-api v3, and v2: etcd with --enable-v2, the keys
// written through the v2 keys API as gonet2 deployments write them):
//   - sessions reach the instance registered; one registered while the
//     gateway runs gets new sessions, and live sessions stay where they are;
//   - a deleted instance gets no new session, its sessions keep working
//     while their streams do (sticky), and go when it fails;
//   - each instance's traffic is counted, and the counts go on across a
//     bridge restart;
//   - etcd stopped: logins go on with the last view (its age exported), and
//     the gateway catches up when etcd is back;
//   - etcd unreachable at start: without backend lines the gateway refuses
//     to start, promptly, naming etcd-hosts; with them it serves on them
//     until etcd answers;
//   - rebind mode (--rebind): a deleted instance's players move to another
//     instance without noticing, as do a killed one's (both contracts);
//   - --route: a second service (a chat) beside the game, each proto range
//     to its own service, both seeing the session's user;
//   - an explicit instance (gonet2's GetServiceWithId): --game-instance
//     sends every login to the instance of that name, and an auth service's
//     LoginReply.instance one login, over it; a name not live: the login is
//     refused (backend_unavailable).
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "auth.grpc.pb.h"
#include "etcd_server.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"
#include "patience.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::Client;

constexpr const char* kService = "game-10000";
constexpr const char* kGame1Sent =
    R"(gatehouse_game_instance_messages_sent_total{backend="game1",service="game-10000"})";
constexpr const char* kGame1Received =
    R"(gatehouse_game_instance_messages_received_total{backend="game1",service="game-10000"})";

std::string key_of(const std::string& instance) {
  return std::string("/backends/") + kService + "/" + instance;
}

/// A logged-in client and its user id.
struct Player {
  std::unique_ptr<Client> client;
  std::int32_t uid = 0;
};

/// Etcd (over `api`), game1 and game2, and the gateway discovering them.
class DiscoveryFixture : public ::testing::Test {
 protected:
  explicit DiscoveryFixture(EtcdApi api) : api_(api) {}

  void SetUp() override {
    if (!EtcdServer::available()) {
      GTEST_SKIP() << EtcdServer::kBinary << " is not installed (etcd-server)";
    }
  }

  /// `contract`: "" (gonet2) or "batch:".
  void put(const std::string& instance, const FakeGameService& game,
           const std::string& contract = "", const std::string& service = kService) {
    std::string error;
    ASSERT_TRUE(
        etcd_.set("/backends/" + service + "/" + instance, contract + game.address(), &error))
        << error;
  }
  void remove(const std::string& instance) {
    std::string error;
    ASSERT_TRUE(etcd_.set(key_of(instance), std::nullopt, &error)) << error;
  }

  /// The gateway with discovery on (and `extra` flags), no backend line
  /// unless `backend` names a game service.
  void start_gateway(std::vector<std::string> extra = {},
                     const FakeGameService* backend = nullptr) {
    std::vector<std::string> args{"--services", kService,     "--etcd-hosts",
                                  etcd_.url(),  "--etcd-api", std::string(etcd_api_text(api_))};
    args.insert(args.end(), extra.begin(), extra.end());
    GatewayOptions options{backend != nullptr ? backend->port() : 0, 1, std::move(args), {}};
    options.backend_line = backend != nullptr;
    gateway_.emplace(std::move(options));
  }

  Player login(const std::string& udid) {
    Player p{std::make_unique<Client>(), 0};
    p.client->connect("127.0.0.1", gateway_->port(), kPatience);
    const auto result = p.client->login(udid, "", kPatience);
    EXPECT_TRUE(result.ok()) << udid << ": " << to_string(result.status);
    p.uid = result.uid();
    return p;
  }

  /// Which of `games` has the live stream of `uid` (waits for it to open);
  /// -1 when none within kPatience.
  static int instance_of(std::int32_t uid, std::initializer_list<const FakeGameService*> games) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < give_up) {
      int i = 0;
      for (const FakeGameService* game : games) {
        for (const FakeStream& s : game->streams()) {
          if (s.user_id == uid && !s.ended) return i;
        }
        ++i;
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

  double metric(const std::string& series) const {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"), series);
  }
  /// Waits until the series has `value`.
  bool wait_metric(const std::string& series, double value) const {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (metric(series) != value) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  const EtcdApi api_;
  EtcdServer etcd_{api_};
  FakeGameService game1_{{.echo = true}};
  FakeGameService game2_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

/// Each case over both of etcd's APIs.
class DiscoveryTest : public DiscoveryFixture, public ::testing::WithParamInterface<EtcdApi> {
 protected:
  DiscoveryTest() : DiscoveryFixture(GetParam()) {}
};

INSTANTIATE_TEST_SUITE_P(Apis, DiscoveryTest, ::testing::Values(EtcdApi::kV3, EtcdApi::kV2),
                         [](const ::testing::TestParamInfo<EtcdApi>& info) {
                           return std::string(etcd_api_text(info.param));
                         });

TEST_P(DiscoveryTest, AnInstanceThatJoinsGetsNewSessionsAndLiveOnesStayWhereTheyAre) {
  ASSERT_TRUE(etcd_.start());
  put("game1", game1_);
  start_gateway();
  std::vector<Player> before;
  for (int i = 0; i < 4; ++i) before.push_back(login("before-" + std::to_string(i)));
  for (Player& p : before) {
    EXPECT_EQ(instance_of(p.uid, {&game1_, &game2_}), 0) << "the only instance registered";
    EXPECT_TRUE(echo_works(*p.client, "one"));
  }
  EXPECT_TRUE(wait_metric(R"(gatehouse_game_service_instances{service="game-10000"})", 1));
  EXPECT_TRUE(wait_metric(
      R"(gatehouse_game_instance_sessions{backend="game1",service="game-10000",state="live"})", 4));
  EXPECT_TRUE(wait_metric(kGame1Sent, 4)) << "one echo each";
  EXPECT_TRUE(wait_metric(kGame1Received, 4));

  put("game2", game2_);
  ASSERT_TRUE(gateway_->wait_log("instance game2"));
  EXPECT_TRUE(wait_metric(R"(gatehouse_game_service_instances{service="game-10000"})", 2));
  // New sessions are spread over both (rendezvous hashing of the user id).
  std::vector<Player> after;
  int on_game2 = 0;
  for (int i = 0; i < 16; ++i) {
    after.push_back(login("after-" + std::to_string(i)));
    const int at = instance_of(after.back().uid, {&game1_, &game2_});
    ASSERT_NE(at, -1);
    on_game2 += at;
    EXPECT_TRUE(echo_works(*after.back().client, "new"));
  }
  EXPECT_GT(on_game2, 0) << "the instance that joined gets new sessions";
  EXPECT_LT(on_game2, 16);
  // The sessions from before stay on game1, their streams untouched.
  for (Player& p : before) {
    EXPECT_TRUE(echo_works(*p.client, "still"));
    EXPECT_EQ(game1_.frames(p.uid).size(), 2u);
    EXPECT_TRUE(game2_.frames(p.uid).empty());
  }
  for (const FakeStream& s : game1_.streams()) EXPECT_FALSE(s.ended);
  EXPECT_GE(metric(R"(gatehouse_discovery_events_total{kind="put"})"), 1);
}

TEST_P(DiscoveryTest, ADeletedInstanceGetsNoNewSessionsAndItsOwnStayUntilItFails) {
  ASSERT_TRUE(etcd_.start());
  put("game1", game1_);
  put("game2", game2_);
  start_gateway();
  std::vector<Player> players;
  std::vector<Player*> on_game1;
  for (int i = 0; i < 16; ++i) players.push_back(login("p-" + std::to_string(i)));
  for (Player& p : players) {
    if (instance_of(p.uid, {&game1_, &game2_}) == 0) on_game1.push_back(&p);
  }
  ASSERT_FALSE(on_game1.empty());
  ASSERT_LT(on_game1.size(), players.size());

  remove("game1");
  ASSERT_TRUE(
      gateway_->wait_log("instance game1 (" + game1_.address() + ") is gone from the view"));
  EXPECT_TRUE(wait_metric(R"(gatehouse_game_service_instances{service="game-10000"})", 1));
  EXPECT_TRUE(
      wait_metric(R"(gatehouse_game_instance_sessions{backend="game1",service="game-10000",)"
                  R"(state="removed"})",
                  static_cast<double>(on_game1.size())));
  // Sticky: game1's sessions keep their streams while they work.
  for (Player* p : on_game1) EXPECT_TRUE(echo_works(*p->client, "sticky"));
  // Every new session goes to game2.
  const std::size_t game1_streams = game1_.streams().size();
  for (int i = 0; i < 8; ++i) {
    Player p = login("new-" + std::to_string(i));
    EXPECT_EQ(instance_of(p.uid, {&game1_, &game2_}), 1);
    EXPECT_TRUE(echo_works(*p.client, "new"));
  }
  EXPECT_EQ(game1_.streams().size(), game1_streams);

  // game1 goes down: its sessions go (backend_unavailable), and with the
  // last of them the instance.
  game1_.stop();
  for (Player* p : on_game1) EXPECT_TRUE(p->client->wait_closed(kPatience));
  EXPECT_TRUE(gateway_->wait_log("has no session left; dropped"));
  for (Player& p : players) {
    if (std::find(on_game1.begin(), on_game1.end(), &p) == on_game1.end()) {
      EXPECT_TRUE(echo_works(*p.client, "game2 lives"));
    }
  }
  EXPECT_GE(metric(R"(gatehouse_discovery_events_total{kind="delete"})"), 1);
}

TEST_P(DiscoveryTest, WithEtcdStoppedLoginsGoOnWithTheLastViewAndItCatchesUpWhenBack) {
  ASSERT_TRUE(etcd_.start());
  put("game1", game1_);
  start_gateway();
  Player first = login("first");
  EXPECT_TRUE(echo_works(*first.client, "up"));

  etcd_.stop();
  ASSERT_TRUE(gateway_->wait_log("routing with the last known instances"));
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (metric("gatehouse_discovery_view_age_seconds") <= 0 &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(metric("gatehouse_discovery_view_age_seconds"), 0) << "the view's age is exported";
  for (int i = 0; i < 4; ++i) {
    Player p = login("while-down-" + std::to_string(i));
    EXPECT_EQ(instance_of(p.uid, {&game1_, &game2_}), 0);
    EXPECT_TRUE(echo_works(*p.client, "down"));
  }
  EXPECT_TRUE(echo_works(*first.client, "still up"));

  // Back: a change made meanwhile reaches the gateway, and the age is 0 again.
  ASSERT_TRUE(etcd_.start());
  remove("game1");
  put("game2", game2_);
  ASSERT_TRUE(gateway_->wait_log("instance game2"));
  EXPECT_TRUE(wait_metric("gatehouse_discovery_view_age_seconds", 0));
  Player later = login("later");
  EXPECT_EQ(instance_of(later.uid, {&game1_, &game2_}), 1);
  EXPECT_TRUE(echo_works(*later.client, "caught up"));
  EXPECT_TRUE(echo_works(*first.client, "sticky"));
}

// A bridge that replaces a dead one reads etcd again and re-opens the
// sessions' streams on the instances their user ids pick.
TEST_P(DiscoveryTest, ABridgeThatReplacesADeadOneServesTheDiscoveredInstances) {
  ASSERT_TRUE(etcd_.start());
  put("game1", game1_);
  start_gateway();
  Player p = login("survivor");
  EXPECT_TRUE(echo_works(*p.client, "before"));
  ASSERT_TRUE(wait_metric(kGame1Sent, 1));
  const pid_t bridge = gateway_->bridge_pid();
  ASSERT_GT(bridge, 0);
  ::kill(bridge, SIGKILL);
  ASSERT_TRUE(gateway_->wait_log("reopened the game streams of 1 logged-in sessions"));
  EXPECT_TRUE(echo_works(*p.client, "after"));
  EXPECT_EQ(instance_of(p.uid, {&game1_, &game2_}), 0);
  // The instance's counts go on from the dead bridge's (counters, not reset).
  EXPECT_TRUE(wait_metric(kGame1Sent, 2));
  EXPECT_TRUE(wait_metric(kGame1Received, 2));
  EXPECT_EQ(metric(R"(gatehouse_game_instance_streams_failed_total{backend="game1",)"
                   R"(service="game-10000"})"),
            0);
}

TEST_P(DiscoveryTest, UnreachableEtcdWithoutBackendLinesRefusesToStartPromptly) {
  // etcd_ is not started: nothing answers on its port.
  const auto started = std::chrono::steady_clock::now();
  try {
    start_gateway({"--discovery-wait", "1"});
    FAIL() << "the gateway started without etcd and without backend lines";
  } catch (const std::runtime_error& e) {
    const std::string log = e.what();
    EXPECT_NE(log.find("gateway exited at start"), std::string::npos) << log;
    EXPECT_NE(log.find("etcd-hosts " + etcd_.target()), std::string::npos) << log;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, kPatience) << "never a hang";
}

TEST_P(DiscoveryTest, UnreachableEtcdWithBackendLinesServesOnThemUntilEtcdAnswers) {
  start_gateway({"--discovery-wait", "1"}, &game1_);
  ASSERT_TRUE(gateway_->wait_log("serving the 1 backend lines"));
  Player early = login("early");
  EXPECT_EQ(instance_of(early.uid, {&game1_, &game2_}), 0);
  EXPECT_TRUE(echo_works(*early.client, "fallback"));

  // etcd comes: its instances replace the fallback for new sessions; the
  // sessions on the fallback stay.
  ASSERT_TRUE(etcd_.start());
  put("game2", game2_);
  ASSERT_TRUE(gateway_->wait_log("instance game2"));
  Player later = login("later");
  EXPECT_EQ(instance_of(later.uid, {&game1_, &game2_}), 1);
  EXPECT_TRUE(echo_works(*later.client, "discovered"));
  EXPECT_TRUE(echo_works(*early.client, "sticky"));
}

// Rebind mode, both ways a session leaves its instance: the instance's key
// is deleted (its players move at once: their streams there are half-closed,
// new ones opened on game2 with their user ids), or its game server dies
// while etcd still lists it (its players are re-opened on game2). Either
// way the players notice nothing: no close, their echoes go on.
class RebindTest : public DiscoveryFixture, public ::testing::WithParamInterface<const char*> {
 protected:
  RebindTest() : DiscoveryFixture(EtcdApi::kV3) {}

  /// 16 players over game1 and game2 (rebind), and those on game1.
  void start_players() {
    ASSERT_TRUE(etcd_.start());
    put("game1", game1_, GetParam());
    put("game2", game2_, GetParam());
    start_gateway({"--rebind", kService});
    for (int i = 0; i < 16; ++i) players_.push_back(login("p-" + std::to_string(i)));
    for (Player& p : players_) {
      ASSERT_TRUE(echo_works(*p.client, "first"));
      if (instance_of(p.uid, {&game1_, &game2_}) == 0) on_game1_.push_back(&p);
    }
    ASSERT_FALSE(on_game1_.empty());
    ASSERT_LT(on_game1_.size(), players_.size());
  }
  /// Every player's echo works, game1's players are on game2 with their
  /// user ids, and nobody was closed.
  void expect_moved(const std::string& reason) {
    for (Player* p : on_game1_) {
      EXPECT_TRUE(echo_works(*p->client, "moved")) << "user " << p->uid;
      EXPECT_EQ(instance_of(p->uid, {&game2_}), 0) << "user " << p->uid;
    }
    for (Player& p : players_) {
      EXPECT_TRUE(echo_works(*p.client, "all")) << "user " << p.uid;
      EXPECT_FALSE(p.client->closed()) << "user " << p.uid;
    }
    EXPECT_TRUE(wait_metric(
        R"(gatehouse_game_sessions_moved_total{reason=")" + reason + R"(",service="game-10000"})",
        static_cast<double>(on_game1_.size())));
    EXPECT_TRUE(wait_metric(
        R"(gatehouse_game_instance_sessions{backend="game2",service="game-10000",state="live"})",
        static_cast<double>(players_.size())));
  }

  std::vector<Player> players_;
  std::vector<Player*> on_game1_;
};

TEST_P(RebindTest, ADeletedInstancesPlayersMoveWithoutNoticing) {
  start_players();
  remove("game1");
  ASSERT_TRUE(gateway_->wait_log("sessions move to the other instances (rebind)"));
  expect_moved("removed");
  // Their streams on game1 were ended by the gateway (half-closed), and with
  // the last of them the instance went.
  for (Player* p : on_game1_) {
    const auto ended = game1_.wait_for_stream_end(p->uid, kPatience);
    ASSERT_TRUE(ended.has_value()) << "user " << p->uid;
    EXPECT_TRUE(ended->client_half_closed) << "user " << p->uid;
  }
  EXPECT_TRUE(gateway_->wait_log("has no session left; dropped"));
}

TEST_P(RebindTest, AKilledInstancesPlayersMoveAndKeepWorking) {
  start_players();
  game1_.stop();  // still in etcd: the gateway finds out by its streams
  expect_moved("failed");
}

INSTANTIATE_TEST_SUITE_P(Contracts, RebindTest, ::testing::Values("", "batch:"),
                         [](const auto& info) {
                           return std::string(*info.param == '\0' ? "Gonet2" : "Batched");
                         });

// A chat service beside the game (gonet2's agent had one game per session):
// protos 2000-2999 go to chat-10000, the rest to game-10000, each over its
// own stream that carries the session's user id; the replies of both reach
// the client.
class ProtoRouteTest : public DiscoveryFixture {
 protected:
  ProtoRouteTest() : DiscoveryFixture(EtcdApi::kV3) {}
};

TEST_F(ProtoRouteTest, ProtoRangesGoToTheirServicesEachWithTheSessionsUser) {
  FakeGameService chat{{.echo_any = true}};
  ASSERT_TRUE(etcd_.start());
  put("game1", game1_);
  put("chat1", chat, "", "chat-10000");
  GatewayOptions options{
      0,
      1,
      {"--etcd-hosts", etcd_.url(), "--services", std::string(kService) + ",chat-10000",
       "--game-service", kService, "--route", "2000-2999:chat-10000"},
      {}};
  options.backend_line = false;
  gateway_.emplace(std::move(options));
  std::vector<Player> players;
  for (int i = 0; i < 3; ++i) players.push_back(login("chatter-" + std::to_string(i)));
  for (Player& p : players) {
    EXPECT_TRUE(echo_works(*p.client, "to the game"));
    ASSERT_TRUE(p.client->send(2001, client::to_bytes("to the chat")));
    const auto reply = p.client->receive_proto(2002, kPatience);
    ASSERT_TRUE(reply.has_value()) << "the chat's reply";
    EXPECT_EQ(reply->body, client::to_bytes("to the chat"));
    EXPECT_TRUE(echo_works(*p.client, "the game again"));
    EXPECT_EQ(instance_of(p.uid, {&chat}), 0) << "the chat service sees the session's user";
    EXPECT_EQ(game1_.frames(p.uid).size(), 2u) << "the game got its own protos only";
    EXPECT_EQ(chat.frames(p.uid).size(), 1u);
  }
  EXPECT_TRUE(wait_metric(
      R"(gatehouse_game_instance_sessions{backend="chat1",service="chat-10000",state="live"})", 3));
  EXPECT_TRUE(wait_metric(R"(gatehouse_game_service_instances{service="chat-10000"})", 1));
  // A player leaves: both its streams end.
  players[0].client->close();
  EXPECT_TRUE(chat.wait_for_stream_end(players[0].uid, kPatience).has_value());
  EXPECT_TRUE(game1_.wait_for_stream_end(players[0].uid, kPatience).has_value());
}

// --game-instance game2 (gonet2's agent: DEFAULT_GSID "game1" and
// GetServiceWithId): every login lands on game2, never game1; game2 gone
// from etcd, a login is refused backend_unavailable (game1 gets nothing).
TEST_P(DiscoveryTest, GameInstanceSendsEveryLoginToTheInstanceOfThatName) {
  ASSERT_TRUE(etcd_.start());
  put("game1", game1_);
  put("game2", game2_);
  start_gateway({"--game-instance", "game2"});
  ASSERT_TRUE(gateway_->wait_log("every session goes to its instance game2"));
  for (int i = 0; i < 8; ++i) {
    Player p = login("named-" + std::to_string(i));
    EXPECT_EQ(instance_of(p.uid, {&game1_, &game2_}), 1) << "game2, whoever the user";
    EXPECT_TRUE(echo_works(*p.client, "game2"));
  }
  EXPECT_EQ(game1_.streams().size(), 0u);

  remove("game2");
  ASSERT_TRUE(gateway_->wait_log("has no live instance game2 (game-instance)"));
  Player late = login("late");
  EXPECT_FALSE(echo_works(*late.client, "nobody"));
  EXPECT_TRUE(late.client->wait_closed(kPatience)) << "refused: no instance game2";
  EXPECT_TRUE(gateway_->wait_log("named for it by game-instance"));
  EXPECT_TRUE(gateway_->wait_log("reason=backend_unavailable"));
  EXPECT_TRUE(wait_metric(R"(gatehouse_kicks_total{reason="backend_unavailable"})", 1));
  EXPECT_EQ(game1_.streams().size(), 0u) << "never another instance";
}

/// A user centre in the test process: a credential "USER@INSTANCE" is user
/// USER (digits), its session named for INSTANCE; "USER" names none.
class NamingAuthService final : public auth::Auth::Service {
 public:
  grpc::Status Login(grpc::ServerContext*, const auth::LoginRequest* request,
                     auth::LoginReply* reply) override {
    const std::string& credential = request->client_certificate();
    const std::size_t at = credential.find('@');
    reply->set_result(auth::LoginReply::OK);
    reply->set_user_id(std::stoi(credential.substr(0, at)));
    if (at != std::string::npos) reply->set_instance(credential.substr(at + 1));
    return grpc::Status::OK;
  }
};

// The auth service names the instance of each login (LoginReply.instance),
// over --game-instance; a login it names none for goes by game-instance; one
// named for an instance that is not live is refused backend_unavailable.
class AuthNamedInstanceTest : public DiscoveryFixture {
 protected:
  AuthNamedInstanceTest() : DiscoveryFixture(EtcdApi::kV3) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &auth_port_);
    builder.RegisterService(&auth_);
    auth_server_ = builder.BuildAndStart();
  }
  ~AuthNamedInstanceTest() override {
    auth_server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }
  Player login_as(const std::string& credential) {
    Player p{std::make_unique<Client>(), 0};
    p.client->connect("127.0.0.1", gateway_->port(), kPatience);
    const auto result = p.client->login("device-" + credential, credential, kPatience);
    EXPECT_TRUE(result.ok()) << credential << ": " << to_string(result.status);
    p.uid = result.uid();
    return p;
  }

  NamingAuthService auth_;
  int auth_port_ = 0;
  std::unique_ptr<grpc::Server> auth_server_;
};

TEST_F(AuthNamedInstanceTest, TheAuthServicesInstanceBeatsGameInstance) {
  ASSERT_TRUE(etcd_.start());
  put("game1", game1_);
  put("game2", game2_);
  start_gateway(
      {"--game-instance", "game2", "--login", "auth:127.0.0.1:" + std::to_string(auth_port_)});
  for (int u = 101; u <= 104; ++u) {
    Player p = login_as(std::to_string(u) + "@game1");
    ASSERT_EQ(p.uid, u);
    EXPECT_EQ(instance_of(p.uid, {&game1_, &game2_}), 0) << "named game1 by the auth service";
    EXPECT_TRUE(echo_works(*p.client, "game1"));
  }
  Player unnamed = login_as("105");
  EXPECT_EQ(instance_of(unnamed.uid, {&game1_, &game2_}), 1) << "no name: game-instance's";
  EXPECT_TRUE(echo_works(*unnamed.client, "game2"));

  Player lost = login_as("106@game3");
  EXPECT_FALSE(echo_works(*lost.client, "nobody"));
  EXPECT_TRUE(lost.client->wait_closed(kPatience)) << "refused: no instance game3";
  EXPECT_TRUE(gateway_->wait_log("has no live instance game3 (named for it by the auth service)"));
  EXPECT_TRUE(wait_metric(R"(gatehouse_kicks_total{reason="backend_unavailable"})", 1));
  for (const FakeGameService* game : {&game1_, &game2_}) {
    for (const FakeStream& st : game->streams()) EXPECT_NE(st.user_id, 106) << "never elsewhere";
  }
}

}  // namespace
}  // namespace gatehouse::testing
