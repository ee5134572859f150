// Several frontends in one gateway instance (--frontends): each listener is a
// SO_REUSEPORT group of one socket per frontend, and the kernel gives every
// new client to one of them, by client address (frontend-affinity address,
// the default) or by connection. Real gateway processes, real TCP clients
// from several loopback addresses (127.0.0.0/8 is all loopback), a real gRPC
// game service.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gateway_process.h"
#include "http_get.h"
#include "test_clients.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::Client;

GatewayOptions two_frontends(int game_port, std::vector<std::string> extra) {
  GatewayOptions options;
  options.backend_port = game_port;
  options.workers = 2;
  options.frontends = 2;
  options.extra_args = std::move(extra);
  return options;
}

/// A client connected from `source` (a loopback address), logged in as
/// `udid` (login any: its own user), encrypted.
std::unique_ptr<Client> client_from(std::uint16_t port, const std::string& source,
                                    const std::string& udid) {
  auto c = std::make_unique<Client>();
  client::TransportOptions transport;
  transport.source_address = source;
  c->connect("127.0.0.1", port, kPatience, transport);
  EXPECT_TRUE(c->key_exchange(kPatience).has_value()) << udid;
  EXPECT_TRUE(c->login(udid, udid, kPatience).ok()) << udid;
  return c;
}

/// Which frontend holds the connection from local port `port`: its session's
/// slot says (frontend_of_slot), read from the gateway's session table.
std::optional<std::uint32_t> frontend_of(GatewayProcess& gateway, std::uint16_t port) {
  const Settings settings = gateway.segment().settings();
  auto sessions = gateway.segment().sessions();
  for (std::uint32_t slot = 0; slot < sessions.slots(); ++slot) {
    const shm::ConnectionId id = sessions.live_id(slot);
    if (!id) continue;
    const Session* s = sessions.find(id);
    if (s != nullptr && s->port == port) return frontend_of_slot(slot, settings);
  }
  return std::nullopt;
}

std::string address(int i) {
  return "127.0.0." + std::to_string(i);
}

struct Placed {
  std::string source;
  std::unique_ptr<Client> client;
  std::uint32_t frontend;
};

TEST(SeveralFrontends, EachAddressMeetsOneFrontendAndAKilledFrontendCostsOnlyItsClients) {
  FakeGameService game({.echo = true});
  // Per-address limits on loopback too: the one address each client shows
  // is counted by the one frontend that sees all of that address's clients.
  GatewayProcess gateway(two_frontends(
      game.port(), {"--max-connections-per-ip", "2", "--address-limits-exempt", "none"}));
  ASSERT_NE(gateway.frontend_pid(0), 0);
  ASSERT_NE(gateway.frontend_pid(1), 0);

  // Two clients from each of 16 addresses.
  constexpr int kAddresses = 16;
  std::vector<Placed> placed;
  std::map<std::string, std::set<std::uint32_t>> frontends_of_address;
  for (int a = 1; a <= kAddresses; ++a) {
    for (int k = 0; k < 2; ++k) {
      const std::string udid = "player-" + std::to_string(a) + "-" + std::to_string(k);
      auto c = client_from(gateway.port(), address(a), udid);
      ASSERT_TRUE(echo_works(*c, udid));
      const auto frontend = frontend_of(gateway, c->local_port());
      ASSERT_TRUE(frontend.has_value()) << udid;
      frontends_of_address[address(a)].insert(*frontend);
      placed.push_back({address(a), std::move(c), *frontend});
    }
  }
  std::set<std::uint32_t> used;
  for (const auto& [source, frontends] : frontends_of_address) {
    EXPECT_EQ(frontends.size(), 1u) << source << " reached more than one frontend";
    used.insert(frontends.begin(), frontends.end());
  }
  EXPECT_EQ(used.size(), 2u) << "16 addresses, one frontend";

  // A third client from an address is over max-connections-per-ip 2, on
  // whichever frontend: refused at accept.
  {
    Client third;
    client::TransportOptions transport;
    transport.source_address = address(3);
    third.connect("127.0.0.1", gateway.port(), kPatience, transport);
    EXPECT_TRUE(third.wait_closed(kPatience)) << "a third connection from 127.0.0.3 was kept";
  }
  const std::string metrics = http_get(gateway.metrics_port(), "/metrics");
  EXPECT_EQ(metric_sample(metrics, "gatehouse_connections_accepted_total"), 2 * kAddresses);
  EXPECT_EQ(metric_sample(metrics, "gatehouse_connections_open"), 2 * kAddresses);
  EXPECT_EQ(metric_sample(metrics, "gatehouse_connections_refused_total{reason=\"address_limit\"}"),
            1);

  // SIGKILL frontend 1: its clients lose their connections (the sockets were
  // its own), frontend 0's play on; the supervisor starts another frontend 1,
  // which closes the sessions its predecessor left and takes new clients.
  const pid_t killed = gateway.frontend_pid(1);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  for (Placed& p : placed) {
    if (p.frontend == 1) {
      EXPECT_TRUE(p.client->wait_closed(kPatience)) << p.source;
    } else {
      EXPECT_TRUE(echo_works(*p.client, "after frontend 1 died")) << p.source;
    }
  }
  ASSERT_TRUE(gateway.wait_log("connections of a previous frontend were lost with it"))
      << gateway.log();
  ASSERT_TRUE(wait_until([&] {
    const pid_t replacement = gateway.frontend_pid(1);
    return replacement != 0 && replacement != killed;
  }));
  for (std::size_t i = 0; i < placed.size(); ++i) {
    Placed& p = placed[i];
    if (p.frontend != 1) continue;
    // The address's per-address count went with the dead frontend: two again.
    auto again = client_from(gateway.port(), p.source, "back-" + std::to_string(i));
    EXPECT_TRUE(echo_works(*again, "on the new frontend 1")) << p.source;
    EXPECT_EQ(frontend_of(gateway, again->local_port()), std::optional<std::uint32_t>(1));
    p.client = std::move(again);
  }
  for (Placed& p : placed) EXPECT_TRUE(echo_works(*p.client, "all")) << p.source;
  EXPECT_TRUE(gateway.log().find("frontend-1 (pid " + std::to_string(killed) + ")") !=
              std::string::npos)
      << gateway.log();

  // A drain closes every session of both frontends and the gateway exits.
  const auto status = gateway.terminate(30s);
  ASSERT_TRUE(status.has_value()) << "the gateway did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << gateway.log();
}

TEST(SeveralFrontends, ByConnectionTheClientsOfOneAddressSpreadOverThem) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway(two_frontends(game.port(), {"--frontend-affinity", "connection"}));
  // The kernel's hash of both addresses and ports: 24 connections from one
  // address all on one frontend has a chance of 2^-23.
  std::set<std::uint32_t> used;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 24; ++i) {
    const std::string udid = "conn-" + std::to_string(i);
    clients.push_back(client_from(gateway.port(), "127.0.0.1", udid));
    ASSERT_TRUE(echo_works(*clients.back(), udid));
    const auto frontend = frontend_of(gateway, clients.back()->local_port());
    ASSERT_TRUE(frontend.has_value());
    used.insert(*frontend);
  }
  EXPECT_EQ(used.size(), 2u);
  EXPECT_EQ(
      metric_sample(http_get(gateway.metrics_port(), "/metrics"), "gatehouse_connections_open"),
      24);
}

}  // namespace
}  // namespace gatehouse::testing
