// Gateway instances sharing one port (--reuse-port): the kernel spreads new
// connections over them, and one instance drains (a whole-gateway upgrade:
// a new instance starts beside the old one, then the old one gets SIGTERM)
// while the other takes every new connection. Real gateways, real TCP
// clients, a real gRPC game service.
#include <signal.h>
#include <sys/wait.h>

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::Client;

/// A one-worker gateway in front of the game on `game_port`, listening on
/// `listen`.
GatewayOptions gateway_options(int game_port, std::vector<std::string> extra,
                               std::string listen = "127.0.0.1:0") {
  GatewayOptions options;
  options.backend_port = game_port;
  options.extra_args = std::move(extra);
  options.listen = std::move(listen);
  return options;
}

double accepted(const GatewayProcess& gateway) {
  return metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                       "gatehouse_connections_accepted_total");
}

std::vector<std::unique_ptr<Client>> connect_clients(std::uint16_t port, const std::string& name,
                                                     int count) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < count; ++i) {
    const std::string udid = name + "-" + std::to_string(i);
    clients.push_back(logged_in_client(port, udid, udid, /*encrypt=*/i % 2 == 0));
    EXPECT_TRUE(echo_works(*clients.back(), udid)) << udid;
  }
  return clients;
}

TEST(SharedPort, InstancesSplitNewConnectionsAndADrainingOneLeavesThemToTheOther) {
  FakeGameService game({.echo = true});
  GatewayProcess a(gateway_options(game.port(), {"--reuse-port"}));
  GatewayProcess b(
      gateway_options(game.port(), {"--reuse-port"}, "127.0.0.1:" + std::to_string(a.port())));
  ASSERT_EQ(b.port(), a.port());

  // The kernel picks an instance per connection by its addresses' hash: with
  // 24 connections, both get some (all on one: a chance of 2^-23).
  constexpr int kFirst = 24;
  const auto first = connect_clients(a.port(), "first", kFirst);
  const double on_a = accepted(a);
  const double on_b = accepted(b);
  EXPECT_EQ(on_a + on_b, kFirst);
  EXPECT_GT(on_a, 0);
  EXPECT_GT(on_b, 0);

  ::kill(a.pid(), SIGTERM);
  ASSERT_TRUE(a.wait_log("draining: stopped accepting")) << a.log();

  // Every new connection is b's now, none waits in a's backlog.
  constexpr int kSecond = 16;
  const auto second = connect_clients(a.port(), "second", kSecond);
  EXPECT_EQ(accepted(b), on_b + kSecond);

  // a closes its own sessions (reason shutdown) and exits cleanly; b's
  // sessions, old and new, go on.
  const auto status = a.terminate(30s);
  ASSERT_TRUE(status.has_value()) << "the draining instance did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_EQ(a.log_count("reason=shutdown"), static_cast<std::size_t>(on_a)) << a.log();
  int closed = 0;
  for (const auto& c : first) {
    if (c->wait_closed(100ms)) {  // a has exited: its clients' EOF is there
      ++closed;
    } else {
      EXPECT_TRUE(echo_works(*c, "after a's drain"));
    }
  }
  EXPECT_EQ(closed, static_cast<int>(on_a));
  for (const auto& c : second) EXPECT_TRUE(echo_works(*c, "after a's drain"));
  EXPECT_EQ(b.log_count("reason=shutdown"), 0u);
}

TEST(SharedPort, WithoutReusePortASecondInstanceCannotTakeThePort) {
  FakeGameService game({.echo = true});
  GatewayProcess a(gateway_options(game.port(), {}));
  try {
    GatewayProcess b(gateway_options(game.port(), {}, "127.0.0.1:" + std::to_string(a.port())));
    ADD_FAILURE() << "a second gateway bound the port without --reuse-port";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("Address already in use"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gatehouse::testing
