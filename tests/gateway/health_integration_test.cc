// /healthz and /ready on the real gateway's metrics endpoint, as a load
// balancer sees them: ready only with a game service reachable (either
// contract), 503 from the first moment of a drain while its sessions go on,
// a crashed worker named until it is back; and the process_* metrics of
// every gateway process, and the endpoint's bounds against idle peers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;
using client::Client;
using Clock = std::chrono::steady_clock;

/// Waits until GET `path` answers `status` with a body containing `text`;
/// the last response when it never does within kPatience.
HttpResponse wait_for(std::uint16_t port, const std::string& path, int status,
                      const std::string& text = "") {
  const auto deadline = Clock::now() + kPatience;
  HttpResponse r;
  while (Clock::now() < deadline) {
    r = http_request(port, "GET", path);
    if (r.status == status && r.body.find(text) != std::string::npos) return r;
    std::this_thread::sleep_for(10ms);
  }
  ADD_FAILURE() << path << ": expected " << status << " with \"" << text << "\", last got "
                << r.status << " " << r.body;
  return r;
}

/// Waits until the sample `name` of /metrics reads `value`: each process
/// publishes on its own duty cycle.
bool wait_sample(std::uint16_t port, const std::string& name, double value) {
  const auto deadline = Clock::now() + kPatience;
  double last = -1;
  while (Clock::now() < deadline) {
    last = metric_sample(http_get(port, "/metrics"), name);
    if (last == value) return true;
    std::this_thread::sleep_for(10ms);
  }
  ADD_FAILURE() << name << " = " << last << ", expected " << value;
  return false;
}

/// A TCP connection to 127.0.0.1:`port` that never sends a byte.
int silent_connection(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Waits for the peer to close `fd`; the bytes it sent first, or nullopt
/// when it did not close within kPatience.
std::optional<std::string> wait_closed(int fd) {
  const auto deadline = Clock::now() + kPatience;
  std::string got;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buffer[512];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return got;
    got.append(buffer, static_cast<std::size_t>(n));
  }
  return std::nullopt;
}

class HealthTest : public ::testing::TestWithParam<bool> {
 protected:
  bool batched() const { return GetParam(); }
  std::uint16_t metrics() const { return gateway_->metrics_port(); }
  std::string up_sample(int port) const {
    return "gatehouse_game_service_up{backend=\"" + std::string(batched() ? "batch:" : "") +
           "127.0.0.1:" + std::to_string(port) + "\"}";
  }

  std::optional<GatewayProcess> gateway_;
};

TEST_P(HealthTest, ReadyFollowsTheGameService) {
  const int port = free_port();
  GatewayOptions options;
  options.backend_port = port;
  options.workers = 2;
  options.batched = batched();
  gateway_.emplace(options);  // nothing listens on the game service's port yet
  EXPECT_EQ(wait_for(metrics(), "/ready", 503).body, "not ready: no game service reachable\n");
  EXPECT_EQ(metric_sample(http_get(metrics(), "/metrics"), up_sample(port)), 0);
  EXPECT_EQ(http_request(metrics(), "GET", "/healthz").status, 200);

  FakeGameService game({.port = port, .echo = true});
  EXPECT_EQ(wait_for(metrics(), "/ready", 200).body, "ready\n");
  EXPECT_EQ(metric_sample(http_get(metrics(), "/metrics"), up_sample(port)), 1);
  EXPECT_TRUE(gateway_->wait_log(" instance " + std::string(batched() ? "batch:" : "") +
                                 "127.0.0.1:" + std::to_string(port) + ": reachable"));

  game.stop();  // an outage
  wait_for(metrics(), "/ready", 503, "no game service reachable");
  EXPECT_EQ(metric_sample(http_get(metrics(), "/metrics"), up_sample(port)), 0);
  game.start();
  wait_for(metrics(), "/ready", 200);
}

INSTANTIATE_TEST_SUITE_P(Contracts, HealthTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& contract) {
                           return contract.param ? "Batched" : "Gonet2";
                         });

class EndpointTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) {
    GatewayOptions options;
    options.backend_port = game_.port();
    options.workers = 2;
    options.extra_args = std::move(extra);
    gateway_.emplace(options);
    wait_for(metrics(), "/ready", 200);
  }
  std::uint16_t metrics() const { return gateway_->metrics_port(); }

  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
};

TEST_F(EndpointTest, AnswersGetAndHeadOnly) {
  start();
  const HttpResponse healthz = http_request(metrics(), "GET", "/healthz");
  EXPECT_EQ(healthz.status, 200);
  EXPECT_EQ(healthz.body, "ok\n");
  EXPECT_EQ(http_request(metrics(), "HEAD", "/ready").status, 200);
  EXPECT_EQ(http_request(metrics(), "HEAD", "/ready").body, "");
  EXPECT_EQ(http_request(metrics(), "GET", "/").status, 404);
  EXPECT_EQ(http_request(metrics(), "GET", "/metricsx").status, 404);
  EXPECT_EQ(http_request(metrics(), "POST", "/ready").status, 405);
  EXPECT_EQ(http_request(metrics(), "DELETE", "/metrics").status, 405);
}

TEST_F(EndpointTest, NotReadyFromTheStartOfTheDrainWhileSessionsGoOn) {
  start({"--drain-wait", "60"});  // sessions go on for a minute (or until they end)
  Client c;
  c.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(c.login("stays-while-draining", "", kPatience).ok());
  ::kill(gateway_->pid(), SIGTERM);
  EXPECT_EQ(wait_for(metrics(), "/ready", 503, "draining").body.rfind("not ready: draining", 0),
            0u);
  // The connection is still open and served: the balancer heard first.
  EXPECT_TRUE(c.heartbeat(7).has_value());
  EXPECT_FALSE(c.closed());
  EXPECT_EQ(http_request(metrics(), "GET", "/healthz").status, 200);
  EXPECT_EQ(metric_sample(http_get(metrics(), "/metrics"), "gatehouse_draining"), 1);
}

TEST_F(EndpointTest, AKilledWorkerIsNamedUntilItIsBack) {
  // Children from a directory of our own, so that worker-1's replacement
  // can be made to fail until the test puts the binary back.
  const auto bin = std::filesystem::temp_directory_path() /
                   ("gatehouse-health-bin-" + std::to_string(::getpid()));
  std::filesystem::create_directories(bin);
  for (const char* name : {"gatehouse-frontend", "gatehouse-worker", "gatehouse-bridge"}) {
    std::filesystem::copy_file(std::string(GATEHOUSE_BIN_DIR) + "/" + name, bin / name,
                               std::filesystem::copy_options::overwrite_existing);
  }
  start({"--bin-dir", bin.string(), "--restart-backoff-max", "0.2"});
  std::filesystem::rename(bin / "gatehouse-worker", bin / "gatehouse-worker.real");
  std::ofstream(bin / "gatehouse-worker") << "#!/bin/sh\nexit 1\n";
  std::filesystem::permissions(bin / "gatehouse-worker", std::filesystem::perms::owner_all);

  const pid_t victim = gateway_->worker_pid(1);
  ::kill(victim, SIGKILL);
  const HttpResponse named = wait_for(metrics(), "/ready", 503, "worker-1");
  EXPECT_EQ(named.body.find("worker-0"), std::string::npos) << named.body;

  std::filesystem::rename(bin / "gatehouse-worker.real", bin / "gatehouse-worker");
  EXPECT_EQ(wait_for(metrics(), "/ready", 200).body, "ready\n");
  EXPECT_NE(gateway_->worker_pid(1), victim);
  gateway_.reset();
  std::filesystem::remove_all(bin);
}

TEST_F(EndpointTest, ProcessMetricsForEveryProcess) {
  start();
  std::vector<Client> clients(3);
  for (Client& c : clients) c.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(wait_sample(metrics(), "gatehouse_connections_open", 3));
  const auto sample = [&](const std::string& text, const char* metric, const std::string& process) {
    const std::string component = process.starts_with("worker-") ? "worker" : process;
    return metric_sample(text, std::string(metric) + "{component=\"" + component + "\",process=\"" +
                                   process + "\"}");
  };
  const double now = static_cast<double>(std::time(nullptr));
  const std::string text = http_get(metrics(), "/metrics");
  for (const std::string process : {"supervisor", "frontend", "bridge", "worker-0", "worker-1"}) {
    SCOPED_TRACE(process);
    const double fds = sample(text, "process_open_fds", process);
    EXPECT_GT(fds, 2);  // stdin, stdout, stderr at least, and the segment's
    EXPECT_GE(sample(text, "process_max_fds", process), fds);
    EXPECT_GT(sample(text, "process_resident_memory_bytes", process), 1 << 20);
    EXPECT_GE(sample(text, "process_cpu_seconds_total", process), 0);
    const double started = sample(text, "process_start_time_seconds", process);
    EXPECT_GT(started, now - 600);  // this test started them
    EXPECT_LE(started, now + 1);
  }
  // The frontend holds a descriptor per client connection.
  const double with_clients = sample(text, "process_open_fds", "frontend");
  clients.clear();
  ASSERT_TRUE(wait_sample(metrics(), "gatehouse_connections_open", 0));
  EXPECT_EQ(sample(http_get(metrics(), "/metrics"), "process_open_fds", "frontend"),
            with_clients - 3);
}

TEST_F(EndpointTest, CapacityLeftUnderMaxConnections) {
  start();  // GatewayProcess: --max-connections 1024
  Client c;
  c.connect("127.0.0.1", gateway_->port());
  ASSERT_TRUE(c.login("capacity", "", kPatience).ok());
  EXPECT_TRUE(
      wait_sample(metrics(), "gatehouse_capacity_available{setting=\"max-connections\"}", 1023));
  EXPECT_EQ(metric_sample(http_get(metrics(), "/metrics"),
                          "gatehouse_capacity_limit{setting=\"max-connections\"}"),
            1024);
}

TEST_F(EndpointTest, ASilentConnectionIsClosedAfterTheBound) {
  start();
  const auto opened = Clock::now();
  const int fd = silent_connection(metrics());
  ASSERT_GE(fd, 0);
  const auto got = wait_closed(fd);
  ::close(fd);
  ASSERT_TRUE(got.has_value()) << "still open after " << kPatience.count() << " s";
  EXPECT_EQ(*got, "");                   // closed without a word: it asked nothing
  EXPECT_GE(Clock::now() - opened, 2s);  // the bound (docs/operations.md), not before
  EXPECT_EQ(http_request(metrics(), "GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace gatehouse::testing
