// A real Prometheus server (Debian's /usr/bin/prometheus) on loopback scrapes
// the gateway and answers a PromQL query about what the test did; it also
// loads the shipped alert rules (examples/monitoring).
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gatehouse/client/client.h"
#include "gateway_process.h"
#include "http_get.h"

namespace gatehouse::testing {
namespace {

using namespace std::chrono_literals;

/// The value of a one-sample instant query, or "" when there is none yet.
std::string query(std::uint16_t port, const std::string& promql_escaped) {
  const std::string body = http_get(port, "/api/v1/query?query=" + promql_escaped);
  static const std::regex value(R"re("value":\[[0-9.]+,"([^"]+)"\])re");
  std::smatch m;
  return std::regex_search(body, m, value) ? m[1].str() : std::string();
}

TEST(PrometheusServer, ScrapesTheGatewayAndAnswersPromQL) {
  FakeGameService game({.echo = true});
  GatewayProcess gateway({game.port(), 1, {}, {}});
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gatehouse-prometheus-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::uint16_t port = free_port();
  {
    std::ofstream config(dir / "prometheus.yml");
    config << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
           << "rule_files:\n  - " << GATEHOUSE_SOURCE_DIR
           << "/examples/monitoring/gatehouse-alerts.yml\n"
           << "scrape_configs:\n  - job_name: gatehouse\n    static_configs:\n"
           << "      - targets: ['127.0.0.1:" << gateway.metrics_port() << "']\n";
  }
  ChildProcess prometheus(
      {PROMETHEUS_PATH, "--config.file=" + (dir / "prometheus.yml").string(),
       "--storage.tsdb.path=" + (dir / "data").string(),
       "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"},
      (dir / "prometheus.log").string());
  for (int i = 0; i < 3; ++i) {
    client::Client c;
    c.connect("127.0.0.1", gateway.port());
    ASSERT_TRUE(c.login("promql-" + std::to_string(i), "").ok());
    ASSERT_TRUE(c.heartbeat(i).has_value());
  }
  std::string logins, up;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline && (logins != "3" || up != "1")) {
    std::this_thread::sleep_for(250ms);
    logins = query(port, "sum(gatehouse_logins_total%7Bresult%3D%22ok%22%7D)");
    up = query(port, "up%7Bjob%3D%22gatehouse%22%7D");
  }
  EXPECT_EQ(up, "1") << "Prometheus never scraped the gateway";
  EXPECT_EQ(logins, "3");
  // The shipped rules loaded (a rule file that fails to parse stops Prometheus).
  const std::string rules = http_get(port, "/api/v1/rules");
  EXPECT_NE(rules.find("GatehouseDown"), std::string::npos) << rules.substr(0, 500);
  prometheus.kill(SIGTERM);
  prometheus.wait(kPatience);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace gatehouse::testing
