// Chaos: encrypted and clear clients doing pipelined echo through the game
// service while agent-workers are SIGKILLed at random moments, again and
// again. Every client must keep its connection and receive exactly the byte
// stream it expects: each echo once, in order, its RC4 stream in step.
//
// GATEHOUSE_CHAOS_SECONDS (default 8) and GATEHOUSE_CHAOS_CLIENTS (default
// 16) make it longer or wider.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"

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
};

/// Pipelined echo (window 8) until `stop`, then drains what is in flight.
void run_client(std::uint16_t port, int index, const std::atomic<bool>& stop, ClientResult& out) {
  client::Client c;
  c.connect("127.0.0.1", port);
  if (index % 2 == 0 && !c.key_exchange(10s)) {
    out.error = "key exchange failed";
    return;
  }
  if (!c.login("chaos-" + std::to_string(index), "", 10s).ok()) {
    out.error = "login failed";
    return;
  }
  const auto body = [index](std::uint64_t n) {
    return client::to_bytes("c" + std::to_string(index) + "-" + std::to_string(n) + "-" +
                            std::string(n % 50, 'x'));
  };
  constexpr std::uint64_t kWindow = 8;
  std::uint64_t sent = 0;
  while (!stop.load() || out.echoed < sent) {
    while (!stop.load() && sent - out.echoed < kWindow) {
      if (!c.send(1001, body(sent))) {
        out.error = "send failed after " + std::to_string(sent);
        return;
      }
      ++sent;
    }
    const auto reply = c.receive(15s);
    if (!reply) {
      out.error = c.closed() ? "disconnected" : "no reply in 15 s";
      out.error += " after " + std::to_string(out.echoed) + " echoes";
      return;
    }
    if (reply->proto != 1002 || reply->body != body(out.echoed)) {
      out.error = "echo " + std::to_string(out.echoed) + " wrong or out of order: " +
                  std::string(client::as_text(reply->body));
      return;
    }
    ++out.echoed;
  }
}

/// Runs `clients` pipelined-echo clients for `seconds` against `gateway`
/// while `chaos` runs; every client must end with no error.
void expect_no_client_notices(GatewayProcess& gateway, FakeGameService& game, int clients,
                              int seconds, const std::function<void()>& chaos,
                              std::uint64_t& total) {
  std::atomic<bool> stop{false};
  std::vector<ClientResult> results(static_cast<std::size_t>(clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back(run_client, gateway.port(), i, std::cref(stop),
                         std::ref(results[static_cast<std::size_t>(i)]));
  }
  ASSERT_TRUE(game.wait_for_streams(static_cast<std::size_t>(clients), 20s));
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) chaos();
  stop.store(true);
  for (auto& t : threads) t.join();
  total = 0;
  for (int i = 0; i < clients; ++i) {
    EXPECT_EQ(results[static_cast<std::size_t>(i)].error, "") << "client " << i;
    total += results[static_cast<std::size_t>(i)].echoed;
  }
  EXPECT_GT(total, std::uint64_t(clients) * 10) << "the clients must have been busy";
  EXPECT_EQ(gateway.log_count("kick conn="), 0u) << "no session may be kicked";
}

// Workers SIGKILLed from outside at random moments.
TEST(WorkerChaos, KilledWorkersNeverCostAConnectionOrAByte) {
  const int seconds = env_or("GATEHOUSE_CHAOS_SECONDS", 8);
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  FakeGameService game({.echo = true});
  GatewayProcess gateway({game.port(), 2, {"--rpm-limit", "0", "--restart-backoff-max", "0.2"}, {}});
  std::mt19937 rng(std::random_device{}());
  int kills = 0;
  std::uint64_t total = 0;
  expect_no_client_notices(gateway, game, clients, seconds, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 200));
    const pid_t victim = gateway.worker_pid(static_cast<std::uint32_t>(rng() % 2));
    if (victim > 0 && !process_gone(victim) && ::kill(victim, SIGKILL) == 0) ++kills;
  }, total);
  EXPECT_GE(kills, seconds * 2);
  std::printf("chaos: %d worker kills, %llu echoes verified across %d clients\n", kills,
              static_cast<unsigned long long>(total), clients);
}

// Workers that kill themselves at each crash point of a batch: mid-batch
// (sessions changed, nothing durable), right after the commit point, and
// between publishing outputs and committing inputs.
TEST(WorkerChaos, EveryCrashPointOfABatchRecovers) {
  const int seconds = env_or("GATEHOUSE_CHAOS_SECONDS", 8);
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  ::setenv("GATEHOUSE_FAULT_KILL_PER_MILLE", "4", 1);
  FakeGameService game({.echo = true});
  GatewayProcess gateway({game.port(), 2, {"--rpm-limit", "0", "--restart-backoff-max", "0.05"}, {}});
  ::unsetenv("GATEHOUSE_FAULT_KILL_PER_MILLE");
  std::uint64_t total = 0;
  expect_no_client_notices(gateway, game, clients, seconds,
                           [] { std::this_thread::sleep_for(50ms); }, total);
  const std::size_t kills = gateway.log_count("fault injection: killing");
  for (const char* point : {"before the commit point", "after the commit point",
                            "after publishing, before committing inputs"}) {
    EXPECT_GT(gateway.log_count(std::string("killing this worker ") + point), 0u) << point;
  }
  EXPECT_GT(gateway.log_count("recovered: rolled back"), 0u);
  EXPECT_GT(gateway.log_count("recovered: rolled the last batch of a dead worker forward"), 0u);
  std::printf("chaos: %zu injected worker deaths, %llu echoes verified across %d clients\n", kills,
              static_cast<unsigned long long>(total), clients);
}

// SIGHUP rolls every worker, again and again, under the same load.
TEST(WorkerChaos, RollingReloadsUnderLoadGoUnnoticed) {
  const int seconds = env_or("GATEHOUSE_CHAOS_SECONDS", 8);
  const int clients = env_or("GATEHOUSE_CHAOS_CLIENTS", 16);
  FakeGameService game({.echo = true});
  GatewayProcess gateway({game.port(), 2, {"--rpm-limit", "0"}, {}});
  std::size_t reloads = 0;
  std::uint64_t total = 0;
  expect_no_client_notices(gateway, game, clients, seconds, [&] {
    const pid_t w0 = gateway.worker_pid(0), w1 = gateway.worker_pid(1);
    const std::size_t done = gateway.log_count("reload complete");
    ::kill(gateway.pid(), SIGHUP);
    ASSERT_TRUE(gateway.wait_log_count("reload complete", done + 1, 20s)) << gateway.log();
    EXPECT_NE(gateway.worker_pid(0), w0);
    EXPECT_NE(gateway.worker_pid(1), w1);
    ++reloads;
    std::this_thread::sleep_for(300ms);
  }, total);
  EXPECT_GE(reloads, 2u);
  EXPECT_EQ(gateway.log_count("was killed"), 0u) << "every worker stopped by itself";
  std::printf("reload: %zu rolling reloads, %llu echoes verified across %d clients\n", reloads,
              static_cast<unsigned long long>(total), clients);
}

}  // namespace
}  // namespace gatehouse::testing
