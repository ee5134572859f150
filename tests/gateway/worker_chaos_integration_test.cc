// Chaos: encrypted (legacy and modern) and clear clients, over TCP and KCP,
// doing pipelined echo through the game service while agent-workers are
// SIGKILLed at random moments, again and again. Every client must keep its connection and receive
// exactly the byte stream it expects: each echo once, in order, its RC4
// stream or AEAD counters in step.
//
// GATEHOUSE_CHAOS_SECONDS (default 8) and GATEHOUSE_CHAOS_CLIENTS (default
// 16) make it longer or wider.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "etcd_server.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;

int env_or(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

struct ClientResult {
  std::string error;
  std::uint64_t echoed = 0;
  std::uint64_t lost = 0;  ///< lossy mode: echoes that never came
};

/// Pipelined echo (window 8) until `stop`, then drains what is in flight.
/// Strict: every echo must come, once, in order. Lossy (across a bridge
/// crash, where the docs say frames may be lost): echoes may be missing,
/// never duplicated or reordered; a window that stays silent for 2 s counts
/// as lost.
void run_client(const GatewayProcess& gateway, int index, const std::atomic<bool>& stop,
                ClientResult& out, bool lossy = false) {
  client::Client c;
  // One in four over KCP (the first listener serves tcp+kcp), one in four
  // over WebSocket (the second listener), each crypto mode in turn.
  client::TransportOptions transport;
  if (index % 4 == 3) transport.kind = client::TransportKind::kKcp;
  if (index % 4 == 1) transport.kind = client::TransportKind::kWs;
  c.connect("127.0.0.1", gateway.port(index % 4 == 1 ? 1 : 0), kPatience, transport);
  const modern::PublicKey& gateway_key = gateway.gateway_key();
  // A third each: legacy RC4, modern ChaCha20-Poly1305, clear.
  if ((index % 3 == 0 && !c.key_exchange(kPatience)) ||
      (index % 3 == 1 && !c.modern_key_exchange(gateway_key, kPatience))) {
    out.error = "key exchange failed";
    return;
  }
  if (!c.login("chaos-" + std::to_string(index), "", kPatience).ok()) {
    out.error = "login failed";
    return;
  }
  const auto text = [index](std::uint64_t n) {
    return "c" + std::to_string(index) + "-" + std::to_string(n) + "-" + std::string(n % 50, 'x');
  };
  constexpr std::uint64_t kWindow = 8;
  std::uint64_t sent = 0;
  std::uint64_t next = 0;  // the echo due next
  while (!stop.load() || next < sent) {
    while (!stop.load() && sent - next < kWindow) {
      if (!c.send(1001, client::to_bytes(text(sent)))) {
        out.error = "send failed after " + std::to_string(sent);
        return;
      }
      ++sent;
    }
    const auto reply = c.receive(lossy ? 2s : std::chrono::milliseconds(kPatience));
    if (!reply) {
      if (lossy && !c.closed()) {  // the rest of the window is gone
        out.lost += sent - next;
        next = sent;
        continue;
      }
      out.error =
          c.closed() ? "disconnected" : "no reply in " + std::to_string(kPatience.count()) + " s";
      out.error += " after " + std::to_string(out.echoed) + " echoes";
      return;
    }
    std::uint64_t n = next;
    while (lossy && n < sent && reply->body != client::to_bytes(text(n))) ++n;  // skip lost ones
    if (reply->proto != 1002 || n == sent || reply->body != client::to_bytes(text(n))) {
      out.error = "echo " + std::to_string(next) +
                  " wrong, repeated or out of order: " + std::string(client::as_text(reply->body));
      return;
    }
    out.lost += n - next;
    next = n + 1;
    ++out.echoed;
  }
}

/// Runs `clients` pipelined-echo clients for `seconds` against `gateway`
/// while `chaos` runs; every client must end with no error.
void expect_no_client_notices(GatewayProcess& gateway, FakeGameService& game, int clients,
                              int seconds, const std::function<void()>& chaos, std::uint64_t& total,
                              std::uint64_t* lost = nullptr) {
  std::atomic<bool> stop{false};
  std::vector<ClientResult> results(static_cast<std::size_t>(clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back(run_client, std::cref(gateway), i, std::cref(stop),
                         std::ref(results[static_cast<std::size_t>(i)]), lost != nullptr);
  }
  ASSERT_TRUE(game.wait_for_streams(static_cast<std::size_t>(clients), kPatience));
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_connections_open_by_transport{transport=\"ws\"}"),
            (clients + 2) / 4)
      << "one client in four came over WebSocket";
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) chaos();
  stop.store(true);
  for (auto& t : threads) t.join();
  total = 0;
  for (int i = 0; i < clients; ++i) {
    EXPECT_EQ(results[static_cast<std::size_t>(i)].error, "") << "client " << i;
    total += results[static_cast<std::size_t>(i)].echoed;
    if (lost != nullptr) *lost += results[static_cast<std::size_t>(i)].lost;
  }
  EXPECT_GT(total, std::uint64_t(clients) * 10) << "the clients must have been busy";
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_kcp_sessions_accepted_total"),
            clients / 4)
      << "one client in four came over KCP";
  EXPECT_EQ(gateway.log_count("kick conn="), 0u) << "no session may be kicked";
}

/// A two-worker gateway in front of `game`, speaking the gonet2 or the
/// batched contract to it, its clients on TCP, KCP and WebSocket.
GatewayOptions chaos_gateway(const FakeGameService& game, std::vector<std::string> args,
                             bool batched = false) {
  GatewayOptions options{game.port(), 2, std::move(args), {}};
  options.batched = batched;
  options.listen = "127.0.0.1:0,transport=tcp+kcp";
  options.extra_args.insert(options.extra_args.end(), {"--listen", "127.0.0.1:0,transport=ws"});
  return options;
}

/// One of the gateway's two workers SIGKILLed from outside, 50-250 ms from
/// now; `kills` counts it.
void kill_a_worker_soon(const GatewayProcess& gateway, std::mt19937& rng, int& kills) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 200));
  const pid_t victim = gateway.worker_pid(static_cast<std::uint32_t>(rng() % 2));
  if (victim > 0 && !process_gone(victim) && ::kill(victim, SIGKILL) == 0) ++kills;
}

/// Workers SIGKILLed from outside at random moments.
void kill_workers_at_random(bool batched) {
  const int seconds = env_or("GATEHOUSE_CHAOS_SECONDS", 8);
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  FakeGameService game({.echo = true});
  GatewayProcess gateway(
      chaos_gateway(game, {"--rpm-limit", "0", "--restart-backoff-max", "0.2"}, batched));
  std::mt19937 rng(std::random_device{}());
  int kills = 0;
  std::uint64_t total = 0;
  expect_no_client_notices(
      gateway, game, clients, seconds, [&] { kill_a_worker_soon(gateway, rng, kills); }, total);
  EXPECT_GE(kills, seconds * 2);
  std::printf("chaos (%s): %d worker kills, %llu echoes verified across %d clients\n",
              batched ? "batched" : "gonet2", kills, static_cast<unsigned long long>(total),
              clients);
}

TEST(WorkerChaos, KilledWorkersNeverCostAConnectionOrAByte) {
  kill_workers_at_random(false);
}

// The same with the game behind a batched link, whose replies gRPC's thread
// writes straight into the worker rings while the workers die and restart.
TEST(WorkerChaos, KilledWorkersNeverCostAConnectionOrAByteOnABatchedLink) {
  kill_workers_at_random(true);
}

// Issue 16: the same with discovery on: the game service found in etcd
// (no backend line), and etcd itself stopped and started again during the
// chaos. While etcd is away the gateway routes with the last view it had,
// and catches up when etcd is back; the clients notice neither.
TEST(WorkerChaos, KilledWorkersAndAnEtcdComingAndGoingCostNothingWithDiscovery) {
  const int seconds = env_or("GATEHOUSE_CHAOS_SECONDS", 8);
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  EtcdServer etcd;
  ASSERT_TRUE(etcd.start());
  FakeGameService game({.echo = true});
  std::string error;
  ASSERT_TRUE(etcd.set("/backends/game-10000/game1", game.address(), &error)) << error;
  GatewayOptions options =
      chaos_gateway(game, {"--rpm-limit", "0", "--restart-backoff-max", "0.2", "--services",
                           "game-10000", "--etcd-hosts", etcd.url()});
  options.backend_line = false;
  GatewayProcess gateway(std::move(options));
  std::mt19937 rng(std::random_device{}());
  int kills = 0;
  int etcd_stops = 0;
  bool etcd_up = true;
  auto next_toggle = std::chrono::steady_clock::now() + 1s;
  std::uint64_t total = 0;
  expect_no_client_notices(
      gateway, game, clients, seconds,
      [&] {
        kill_a_worker_soon(gateway, rng, kills);
        if (std::chrono::steady_clock::now() < next_toggle) return;
        next_toggle = std::chrono::steady_clock::now() + 1s;
        if (etcd_up) {
          etcd.stop();
          ++etcd_stops;
        } else {
          ASSERT_TRUE(etcd.start());
        }
        etcd_up = !etcd_up;
      },
      total);
  if (!etcd_up) ASSERT_TRUE(etcd.start());
  EXPECT_GE(kills, seconds * 2);
  EXPECT_GE(etcd_stops, 1);
  // Discovery caught up: the view is current again.
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                       "gatehouse_discovery_view_age_seconds") != 0 &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_discovery_view_age_seconds"),
            0);
  std::printf(
      "chaos (discovery): %d worker kills, %d etcd stops, %llu echoes verified across %d "
      "clients\n",
      kills, etcd_stops, static_cast<unsigned long long>(total), clients);
}

// Workers that kill themselves at each crash point of a batch: mid-batch
// (sessions changed, nothing durable), right after the commit point, and
// between publishing outputs and committing inputs.
/// Where the sessions of a crash-point run were seen: their frontends (by
/// slot) and their bridges (by user).
struct Seen {
  std::set<std::uint32_t> frontends;
  std::set<std::uint32_t> bridges;
};

/// Workers killed by their own fault injection at each of a batch's crash
/// points in turn (GATEHOUSE_FAULT_KILL_PER_MILLE); `frontends` frontends
/// spread the clients by connection and `bridges` bridges the users, so a
/// batch carries several frontends' and bridges' records.
Seen kill_workers_at_every_crash_point(std::uint32_t frontends, std::uint32_t bridges) {
  const int seconds = env_or("GATEHOUSE_CHAOS_SECONDS", 8);
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  ::setenv("GATEHOUSE_FAULT_KILL_PER_MILLE", "5", 1);
  FakeGameService game({.echo = true});
  GatewayOptions options = chaos_gateway(game, {"--rpm-limit", "0", "--restart-backoff-max", "0.05",
                                                "--frontend-affinity", "connection"});
  options.frontends = frontends;
  options.bridges = bridges;
  GatewayProcess gateway(std::move(options));
  ::unsetenv("GATEHOUSE_FAULT_KILL_PER_MILLE");
  Seen seen;
  const auto note_owners = [&] {
    const Settings settings = gateway.segment().settings();
    auto sessions = gateway.segment().sessions();
    for (std::uint32_t slot = 0; slot < sessions.slots(); ++slot) {
      const shm::ConnectionId id = sessions.live_id(slot);
      if (!id) continue;
      seen.frontends.insert(frontend_of_slot(slot, settings));
      const Session* s = sessions.find(id);
      if (s != nullptr && s->state == Session::kLoggedIn) {
        seen.bridges.insert(bridge_of_user(s->user_id, settings));
      }
    }
  };
  std::uint64_t total = 0;
  expect_no_client_notices(
      gateway, game, clients, seconds,
      [&] {
        note_owners();
        std::this_thread::sleep_for(50ms);
      },
      total);
  const std::size_t kills = gateway.log_count("fault injection: killing");
  for (const char* point : {"before the commit point", "after the commit point",
                            "after publishing, before committing inputs"}) {
    EXPECT_GT(gateway.log_count(std::string("killing this worker ") + point), 0u) << point;
  }
  EXPECT_GT(gateway.log_count("recovered: rolled back"), 0u);
  EXPECT_GT(gateway.log_count("recovered: rolled the last batch of a dead worker forward"), 0u);
  std::printf(
      "chaos (%u frontends, %u bridges): %zu injected worker deaths, %llu echoes verified across "
      "%d clients\n",
      frontends, bridges, kills, static_cast<unsigned long long>(total), clients);
  return seen;
}

TEST(WorkerChaos, EveryCrashPointOfABatchRecovers) {
  kill_workers_at_every_crash_point(1, 1);
}

// Issue 18: the same with two frontends, each worker committing the
// positions of both frontends' rings at one store.
TEST(WorkerChaos, EveryCrashPointOfABatchRecoversWithTwoFrontends) {
  const Seen seen = kill_workers_at_every_crash_point(2, 1);
  EXPECT_EQ(seen.frontends, (std::set<std::uint32_t>{0, 1})) << "sessions on both frontends";
}

// And with two bridges: a batch writes to both bridges' rings and reads
// from both, all committed at one store.
TEST(WorkerChaos, EveryCrashPointOfABatchRecoversWithTwoBridges) {
  const Seen seen = kill_workers_at_every_crash_point(1, 2);
  EXPECT_EQ(seen.bridges, (std::set<std::uint32_t>{0, 1})) << "users on both bridges";
}

// SIGHUP rolls every worker, again and again, under the same load.
TEST(WorkerChaos, RollingReloadsUnderLoadGoUnnoticed) {
  const int seconds = env_or("GATEHOUSE_CHAOS_SECONDS", 8);
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  FakeGameService game({.echo = true});
  GatewayProcess gateway(chaos_gateway(game, {"--rpm-limit", "0"}));
  std::size_t reloads = 0;
  std::uint64_t total = 0;
  expect_no_client_notices(
      gateway, game, clients, seconds,
      [&] {
        const pid_t w0 = gateway.worker_pid(0), w1 = gateway.worker_pid(1);
        const std::size_t done = gateway.log_count("reload complete");
        ::kill(gateway.pid(), SIGHUP);
        ASSERT_TRUE(gateway.wait_log_count("reload complete", done + 1, kPatience))
            << gateway.log();
        EXPECT_NE(gateway.worker_pid(0), w0);
        EXPECT_NE(gateway.worker_pid(1), w1);
        ++reloads;
        std::this_thread::sleep_for(300ms);
      },
      total);
  EXPECT_GE(reloads, 2u);
  EXPECT_EQ(gateway.log_count("was killed"), 0u) << "every worker stopped by itself";
  std::printf("reload: %zu rolling reloads, %llu echoes verified across %d clients\n", reloads,
              static_cast<unsigned long long>(total), clients);
}

/// SIGKILLs a bridge every 1.5 s while `clients` echo (with several, each
/// in turn); returns the kills.
int kill_bridges(GatewayProcess& gateway, FakeGameService& game, int clients, std::uint64_t& total,
                 std::uint64_t* lost) {
  const std::uint32_t bridges = gateway.segment().settings().bridges;
  int kills = 0;
  expect_no_client_notices(
      gateway, game, clients, 6,
      [&] {
        std::this_thread::sleep_for(1500ms);
        const pid_t bridge = gateway.bridge_pid(static_cast<std::uint32_t>(kills) % bridges);
        if (::kill(bridge, SIGKILL) == 0) ++kills;
        ASSERT_TRUE(
            gateway.wait_log_count("reopened the game streams of", std::size_t(kills), kPatience));
      },
      total, lost);
  EXPECT_GE(kills, 2);
  return kills;
}

// The bridge SIGKILLed under load, gonet2 contract: no client is
// disconnected or kicked; echoes may be lost (the frames the docs name: in
// the dead bridge's hands, or in flight on the dead game streams) but never
// duplicated or reordered, and the bridge's lost-frame metric never counts
// more than went missing. The contract has no acknowledgement, so the part
// that died on the old gRPC connections cannot be counted.
TEST(WorkerChaos, KilledBridgeCostsNoConnection) {
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  FakeGameService game({.echo = true});
  GatewayProcess gateway(chaos_gateway(game, {"--rpm-limit", "0"}));
  std::uint64_t total = 0, lost = 0;
  const int kills = kill_bridges(gateway, game, clients, total, &lost);
  // What the bridges counted as lost (their log lines carry the numbers).
  std::uint64_t counted = 0;
  const std::string log = gateway.log();
  static const std::regex line(R"re(([0-9]+) frames were in a dead bridge's hands)re");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it) {
    counted += std::stoull((*it)[1].str());
  }
  EXPECT_LE(counted, lost) << "the metric counts only frames that really went missing";
  std::printf(
      "bridge chaos (gonet2): %d bridge kills, %llu echoes, %llu lost, %llu of them counted by "
      "the bridge (the rest died on the old gRPC connections)\n",
      kills, static_cast<unsigned long long>(total), static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(counted));
}

// The same behind a batched link, which acknowledges both ways: nothing is
// lost. Every echo comes once and in order (the game dropped the events the
// new bridge sent again, the workers the replies the game sent again), and
// the loss metrics stay at zero, which is exactly the loss.
void kill_bridges_of_batched_links(std::uint32_t bridges) {
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  FakeGameService game({.echo = true});
  GatewayOptions options = chaos_gateway(game, {"--rpm-limit", "0"}, /*batched=*/true);
  options.bridges = bridges;
  GatewayProcess gateway(std::move(options));
  std::uint64_t total = 0;
  const int kills = kill_bridges(gateway, game, clients, total, /*lost=*/nullptr);
  const std::string text = http_get(gateway.metrics_port(), "/metrics");
  EXPECT_EQ(metric_sample(text, "gatehouse_game_frames_lost_total"), 0) << text;
  EXPECT_EQ(metric_sample(text, R"(gatehouse_frames_dropped_total{direction="to_game"})"), 0)
      << text;
  EXPECT_EQ(metric_sample(text, R"(gatehouse_frames_dropped_total{direction="to_client"})"), 0)
      << text;
  const double resent = metric_sample(text, "gatehouse_game_events_resent_total");
  const double duplicates = metric_sample(text, "gatehouse_game_duplicates_dropped_total");
  EXPECT_GT(resent, 0) << "the kills must have caught events the game had not acknowledged";
  std::printf(
      "bridge chaos (batched, %u bridges): %d bridge kills, %llu echoes verified, none lost; %.0f "
      "events re-sent to the game, %.0f repeated replies dropped by the workers\n",
      bridges, kills, static_cast<unsigned long long>(total), resent, duplicates);
}

TEST(WorkerChaos, KilledBridgeLosesNothingOnABatchedLink) {
  kill_bridges_of_batched_links(1);
}

// Issue 18: two bridges killed in turn, each re-sending only its own users'
// events on its own links; the other's sessions are not even re-attached.
TEST(WorkerChaos, KilledBridgesLoseNothingOnBatchedLinksWithTwoBridges) {
  kill_bridges_of_batched_links(2);
}

}  // namespace
}  // namespace gatehouse::testing
