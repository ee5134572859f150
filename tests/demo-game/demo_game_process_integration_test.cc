// gatehouse-demo-game as a process: it serves the demo protocol on --listen,
// honours --numbering, and exits 0 on SIGTERM/SIGINT with streams still open
// (which see UNAVAILABLE).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "child_process.h"
#include "game_test_client.h"
#include "gatehouse/game/demo_game.h"
#include "patience.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
namespace demo = game::demo;

/// A port that was free a moment ago (the child binds it next; gRPC servers
/// set SO_REUSEADDR, so our closed socket does not hold it).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "cannot reserve a port";
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

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

TEST(DemoGameProcess, BadFlagsExitWithUsageError) {
  for (const char* flag : {"--numbering", "--threads"}) {
    ChildProcess child({DEMO_GAME_PATH, flag, std::string(flag) == "--threads" ? "0" : "third"});
    const auto status = child.wait(kPatience);
    ASSERT_TRUE(status) << flag;
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2)
        << flag << ": " << describe_status(*status);
  }
}

}  // namespace
}  // namespace gatehouse::testing
