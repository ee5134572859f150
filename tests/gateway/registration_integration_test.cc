// The gateway registers itself in etcd (register-prefix; docs/discovery.md
// "The gateway in etcd"), end to end: a real etcd (Debian's etcd-server,
// started on free ports), the real gateway (a game service on a backend line:
// registering needs no discovery), clients over TCP:
//   - the key PREFIX/GATEWAY-ID appears with the documented JSON (address,
//     listeners with transports and crypto, version, load), and its load
//     follows the sessions logged in;
//   - a gateway SIGKILLed leaves its key until the lease expires (TTL 2 s);
//   - a drain removes it at once, a client still connected, and it never
//     comes back while the drain runs;
//   - etcd restarted without its data (the lease forgotten): the gateway
//     registers again, having logged the outage once.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

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
namespace json = boost::json;

std::vector<std::string> strings(const json::value& v) {
  std::vector<std::string> out;
  for (const json::value& item : v.as_array()) out.emplace_back(item.as_string());
  return out;
}

class RegistrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdServer::available()) {
      GTEST_SKIP() << EtcdServer::kBinary << " is not installed (etcd-server)";
    }
    ASSERT_TRUE(etcd_.start());
  }

  /// The gateway registering under /gateways with a lease of `ttl` seconds
  /// (and `extra` flags).
  void start_gateway(const std::string& ttl, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--register-prefix", "/gateways", "--register-ttl", ttl,
                                  "--etcd-hosts",      etcd_.url()};
    args.insert(args.end(), extra.begin(), extra.end());
    gateway_.emplace(GatewayOptions{game_.port(), 1, std::move(args), {}});
    // PREFIX/GATEWAY-ID, the id the game services see: host/segment@creation.
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    shm::Segment& segment = gateway_->segment().segment();
    key_ = "/gateways/" + std::string(host) + "/" + segment.name() + "@" +
           std::to_string(segment.header().created_unix_ns);
  }

  /// The key's value parsed once `done` holds for it; nullopt (a failure)
  /// when it never did within kPatience.
  template <class Done>
  std::optional<json::object> wait_value(Done done) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    std::string last = "(no key)";
    while (std::chrono::steady_clock::now() < give_up) {
      if (const auto text = etcd_.get(key_)) {
        last = *text;
        const json::object value = json::parse(*text).as_object();
        if (done(value)) return value;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << key_ << " never became what was expected; last: " << last;
    return std::nullopt;
  }
  std::optional<json::object> wait_registered() {
    return wait_value([](const json::object&) { return true; });
  }
  static std::int64_t sessions(const json::object& v) {
    return v.at("load").at("sessions").as_int64();
  }
  /// How long until the key was gone (nullopt: it stayed kPatience).
  std::optional<std::chrono::steady_clock::duration> wait_gone() {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < start + kPatience) {
      if (!etcd_.get(key_)) return std::chrono::steady_clock::now() - start;
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }

  double metric(const std::string& series) const {
    return metric_sample(http_get(gateway_->metrics_port(), "/metrics"), series);
  }

  EtcdServer etcd_;
  FakeGameService game_{{.echo = true}};
  std::optional<GatewayProcess> gateway_;
  std::string key_;
};

TEST_F(RegistrationTest, TheKeyHoldsTheDocumentedJsonAndItsLoadFollowsTheSessions) {
  start_gateway("10", {"--listen", "127.0.0.1:0,transport=ws,crypto=modern"});
  auto value = wait_registered();
  ASSERT_TRUE(value);
  const std::string first = "127.0.0.1:" + std::to_string(gateway_->port());
  EXPECT_EQ(value->at("address").as_string(), first) << "the first listener, as bound";
  EXPECT_EQ(value->at("id").as_string(), key_.substr(std::string("/gateways/").size()));
  EXPECT_FALSE(value->at("version").as_string().empty());
  const json::array& listeners = value->at("listeners").as_array();
  ASSERT_EQ(listeners.size(), 2u);
  EXPECT_EQ(listeners[0].at("address").as_string(), first);
  EXPECT_EQ(strings(listeners[0].at("transports")), (std::vector<std::string>{"tcp"}));
  EXPECT_EQ(strings(listeners[0].at("crypto")),
            (std::vector<std::string>{"clear", "legacy", "modern"}));
  EXPECT_EQ(listeners[1].at("address").as_string(),
            "127.0.0.1:" + std::to_string(gateway_->port(1)));
  EXPECT_EQ(strings(listeners[1].at("transports")), (std::vector<std::string>{"ws"}));
  EXPECT_EQ(strings(listeners[1].at("crypto")), (std::vector<std::string>{"modern"}));
  EXPECT_EQ(sessions(*value), 0);
  EXPECT_FALSE(value->at("load").at("draining").as_bool());
  EXPECT_GT(value->at("load").at("max_connections").to_number<std::int64_t>(), 0);
  EXPECT_EQ(metric("gatehouse_registration_up"), 1);
  // (an etcd just started may refuse the first calls: counted before this)
  const double failed_before = metric("gatehouse_registration_failures_total");

  auto player = logged_in_client(gateway_->port(), "reg-player", "", false);
  EXPECT_TRUE(echo_works(*player, "hello"));
  value = wait_value([](const json::object& v) { return sessions(v) == 1; });
  ASSERT_TRUE(value);
  EXPECT_GE(value->at("load").at("connections").as_int64(), 1);

  player.reset();  // the client goes: so does its session in the key
  EXPECT_TRUE(wait_value([](const json::object& v) { return sessions(v) == 0; }));
  EXPECT_EQ(metric("gatehouse_registration_failures_total"), failed_before);
}

TEST_F(RegistrationTest, AKilledGatewaysKeyGoesWhenItsLeaseExpires) {
  start_gateway("2");
  ASSERT_TRUE(wait_registered());
  const pid_t bridge = gateway_->bridge_pid();
  ASSERT_GT(bridge, 0);
  ::kill(gateway_->pid(), SIGKILL);  // its children die with it (PR_SET_PDEATHSIG)
  const auto killed = std::chrono::steady_clock::now();
  const auto give_up = killed + kPatience;
  while (!process_gone(bridge) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(process_gone(bridge));
  ASSERT_TRUE(wait_gone()) << "the key outlived its lease";
  // A 2 s lease; etcd looks for expired ones every half second.
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 8s);
}

TEST_F(RegistrationTest, TheDrainRemovesTheKeyAtOnceWhileAClientIsStillConnected) {
  // Sessions go on for a minute of drain, and the lease would last 30 s: a
  // key gone within seconds was removed by the drain's start.
  start_gateway("30", {"--drain-wait", "60"});
  ASSERT_TRUE(wait_registered());
  auto player = logged_in_client(gateway_->port(), "draining-player", "", false);
  ASSERT_TRUE(wait_value([](const json::object& v) { return sessions(v) == 1; }));

  ::kill(gateway_->pid(), SIGTERM);
  const auto took = wait_gone();
  ASSERT_TRUE(took) << "the key stayed in etcd during the drain";
  EXPECT_LT(*took, 10s);
  EXPECT_FALSE(process_gone(gateway_->pid())) << "the drain is still on";
  EXPECT_TRUE(echo_works(*player, "still served")) << "the drain keeps the session";
  EXPECT_EQ(metric("gatehouse_registration_up"), 0);
  EXPECT_TRUE(gateway_->wait_log("removed from etcd"));
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(etcd_.get(key_)) << "a draining gateway registered again";

  player.reset();  // the last player leaves: the drain is over early
  EXPECT_EQ(gateway_->terminate(), 0);
  EXPECT_FALSE(etcd_.get(key_));
}

TEST_F(RegistrationTest, EtcdRestartedWithoutItsDataGetsTheKeyAgain) {
  start_gateway("2");
  ASSERT_TRUE(wait_registered());
  const std::size_t told_before = gateway_->log_count("cannot register");
  etcd_.stop();
  // Several attempts fail while etcd is away; the outage is logged once.
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  const double failed_before = metric("gatehouse_registration_failures_total");
  while (metric("gatehouse_registration_failures_total") < failed_before + 3 &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE(metric("gatehouse_registration_failures_total"), failed_before + 3);
  EXPECT_EQ(metric("gatehouse_registration_up"), 0);
  etcd_.wipe();
  ASSERT_TRUE(etcd_.start());
  ASSERT_TRUE(wait_registered()) << "registered again in the etcd that lost it";
  EXPECT_TRUE(gateway_->wait_log("answering again after"));
  EXPECT_EQ(gateway_->log_count("cannot register"), told_before + 1) << gateway_->log();
  const auto up_by = std::chrono::steady_clock::now() + kPatience;
  while (metric("gatehouse_registration_up") != 1 && std::chrono::steady_clock::now() < up_by) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(metric("gatehouse_registration_up"), 1);
}

}  // namespace
}  // namespace gatehouse::testing
