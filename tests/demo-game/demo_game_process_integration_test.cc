// gatehouse-demo-game as a process: it serves the demo protocol on --listen,
// honours --numbering, serves the demo user centre (Auth) on the same port
// unless --no-auth, and exits 0 on SIGTERM/SIGINT with streams still open
// (which see UNAVAILABLE).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "auth.grpc.pb.h"
#include "child_process.h"
#include "game_test_client.h"
#include "gatehouse/game/demo_game.h"
#include "local_port.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
namespace demo = game::demo;

/// Waits until the child's server accepts connections.
bool wait_until_serving(const std::shared_ptr<grpc::Channel>& channel) {
  return channel->WaitForConnected(std::chrono::system_clock::now() + kPatience);
}

void expect_clean_exit(ChildProcess& child, int signal) {
  child.kill(signal);
  const auto status = child.wait(kPatience);
  ASSERT_TRUE(status) << "did not exit after signal " << signal;
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_status(*status);
}

TEST(DemoGameProcess, ServesTheDemoProtocolAndExitsCleanlyOnSigterm) {
  const int port = free_port();
  ChildProcess child({DEMO_GAME_PATH, "--listen", "127.0.0.1:" + std::to_string(port)});
  const auto channel = make_game_channel(port);
  ASSERT_TRUE(wait_until_serving(channel));

  GameTestClient alice(channel, 1);
  GameTestClient bob(channel, 2);
  ASSERT_TRUE(alice.send(packet(demo::kPingReq, to_bytes("ping"))));
  auto frame = alice.read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(message_of(*frame), packet(demo::kPingAck, to_bytes("ping")));
  ASSERT_TRUE(bob.send(packet(demo::kPingReq, {})));  // bob is surely open
  ASSERT_TRUE(bob.read());

  ASSERT_TRUE(bob.send(demo::encode_chat_say("hello")));
  for (GameTestClient* client : {&alice, &bob}) {
    frame = client->read();
    ASSERT_TRUE(frame);
    EXPECT_EQ(message_of(*frame), demo::encode_chat_hear(2, "hello"));
  }

  expect_clean_exit(child, SIGTERM);
  EXPECT_EQ(alice.finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(DemoGameProcess, LaterNumberingKicksWithTwoAndSigintExits) {
  const int port = free_port();
  ChildProcess child(
      {DEMO_GAME_PATH, "--listen", "127.0.0.1:" + std::to_string(port), "--numbering", "later"});
  {
    const auto channel = make_game_channel(port);
    ASSERT_TRUE(wait_until_serving(channel));
    GameTestClient client(channel, 5);
    ASSERT_TRUE(client.send(packet(demo::kKickMe, {})));
    const auto frame = client.read();
    ASSERT_TRUE(frame);
    EXPECT_EQ(type_of(*frame), 2);
    EXPECT_TRUE(client.finish().ok());
  }
  // No connection left: the shutdown does not wait out its grace period for
  // an idle client to close one (a sync client polls only while it waits).
  expect_clean_exit(child, SIGINT);
}

/// One Login call to the child's Auth service.
grpc::Status login(const std::shared_ptr<grpc::Channel>& channel, const std::string& credential,
                   auth::LoginReply& reply) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kPatience);
  auth::LoginRequest request;
  request.set_client_certificate(credential);
  return auth::Auth::NewStub(channel)->Login(&context, request, &reply);
}

TEST(DemoGameProcess, ServesAuthByDefaultWithTheDelayAsked) {
  const int port = free_port();
  ChildProcess child(
      {DEMO_GAME_PATH, "--listen", "127.0.0.1:" + std::to_string(port), "--auth-delay-ms", "300"});
  const auto channel = make_game_channel(port);
  ASSERT_TRUE(wait_until_serving(channel));
  const auto start = std::chrono::steady_clock::now();
  auth::LoginReply reply;
  ASSERT_TRUE(login(channel, "alice:secret", reply).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_EQ(reply.result(), auth::LoginReply::OK);
  EXPECT_EQ(reply.user_id(), 1001);
  ASSERT_TRUE(login(channel, "alice:wrong", reply).ok());
  EXPECT_EQ(reply.result(), auth::LoginReply::REFUSED);
  EXPECT_EQ(reply.claimed_user_id(), 1001);
  expect_clean_exit(child, SIGTERM);
}

TEST(DemoGameProcess, AuthFlagsTurnItOffOrRefuseEverything) {
  for (const std::string flag : {"--no-auth", "--auth=false"}) {
    const int port = free_port();
    ChildProcess child({DEMO_GAME_PATH, "--listen", "127.0.0.1:" + std::to_string(port), flag});
    const auto channel = make_game_channel(port);
    ASSERT_TRUE(wait_until_serving(channel));
    auth::LoginReply reply;
    EXPECT_EQ(login(channel, "alice:secret", reply).error_code(), grpc::StatusCode::UNIMPLEMENTED)
        << flag;
    expect_clean_exit(child, SIGTERM);
  }
  const int port = free_port();
  ChildProcess child(
      {DEMO_GAME_PATH, "--listen", "127.0.0.1:" + std::to_string(port), "--auth-refuse-all"});
  const auto channel = make_game_channel(port);
  ASSERT_TRUE(wait_until_serving(channel));
  auth::LoginReply reply;
  ASSERT_TRUE(login(channel, "alice:secret", reply).ok());
  EXPECT_EQ(reply.result(), auth::LoginReply::REFUSED);
  expect_clean_exit(child, SIGTERM);
}

TEST(DemoGameProcess, BadFlagsExitWithUsageError) {
  const std::vector<std::vector<std::string>> bad = {{"--numbering", "third"},
                                                     {"--threads", "0"},
                                                     {"--auth-delay-ms", "-1"},
                                                     {"--auth=maybe"},
                                                     {"--auth-max-accounts", "3000000000"}};
  for (const auto& flags : bad) {
    std::vector<std::string> argv{DEMO_GAME_PATH};
    argv.insert(argv.end(), flags.begin(), flags.end());
    ChildProcess child(argv);
    const auto status = child.wait(kPatience);
    ASSERT_TRUE(status) << flags[0];
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2)
        << flags[0] << ": " << describe_status(*status);
  }
}

}  // namespace
}  // namespace gatehouse::testing
