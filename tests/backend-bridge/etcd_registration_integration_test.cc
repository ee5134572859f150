// EtcdRegistration against a real etcd (Debian's etcd-server, started by the
// test on free loopback ports) and a real segment whose gauges and drain flag
// the test sets as the gateway's processes would: the key is put under a
// lease with the documented value and follows the load; it goes at once when
// the drain starts and never comes back; a stop revokes it; an etcd that lost
// its data (the lease with it) gets it again; an etcd that is not there yet
// is retried, counted, and registered with once it comes.
#include "gatehouse/bridge/etcd_registration.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "etcd_server.h"
#include "patience.h"
#include "test_segment.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using ::gatehouse::testing::EtcdServer;
using ::gatehouse::testing::kPatience;

constexpr const char* kId = "test-host/gatehouse-reg@1";
constexpr const char* kKey = "/gateways/test-host/gatehouse-reg@1";

class EtcdRegistrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdServer::available()) {
      GTEST_SKIP() << EtcdServer::kBinary << " is not installed (etcd-server)";
    }
  }

  /// A segment whose settings register the gateway on etcd_ with `ttl_s`.
  void make_segment(std::uint32_t ttl_s) {
    Settings s = testing::test_settings(1);
    std::snprintf(s.etcd_hosts, sizeof s.etcd_hosts, "%s", etcd_.url().c_str());
    std::snprintf(s.register_prefix, sizeof s.register_prefix, "/gateways");
    s.register_ttl_s = ttl_s;
    s.listener_count = 1;
    std::snprintf(s.listener_addresses[0], sizeof s.listener_addresses[0], "127.0.0.1:7000");
    s.listener_transports[0] = kTransportTcp;
    s.listener_crypto[0] = kCryptoAny;
    segment_.emplace(testing::make_segment(s));
  }

  /// The key's value parsed, once `done` holds for it; nullopt (a failure)
  /// when it never did within kPatience.
  template <class Done>
  std::optional<boost::json::object> wait_value(Done done, std::int64_t* lease = nullptr) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < give_up) {
      if (const auto text = etcd_.get(kKey, lease)) {
        const boost::json::object value = boost::json::parse(*text).as_object();
        if (done(value)) return value;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "the key never became what was expected";
    return std::nullopt;
  }
  std::optional<boost::json::object> wait_registered(std::int64_t* lease = nullptr) {
    return wait_value([](const boost::json::object&) { return true; }, lease);
  }
  /// Waits until the key is gone; how long that took.
  std::optional<std::chrono::steady_clock::duration> wait_gone() {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < start + kPatience) {
      if (!etcd_.get(kKey)) return std::chrono::steady_clock::now() - start;
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }

  std::int64_t up() const {
    return segment_->metrics().bridges[0].gauges[metrics::kRegistrationUp].load();
  }
  std::uint64_t failures() const {
    return segment_->metrics().bridges[0].counters[metrics::kRegistrationFailures].load();
  }

  EtcdServer etcd_;
  std::optional<GatewaySegment> segment_;
};

TEST_F(EtcdRegistrationTest, PutsTheKeyUnderALeaseAndFollowsTheLoad) {
  ASSERT_TRUE(etcd_.start());
  make_segment(10);
  EtcdRegistration registration(*segment_, kId);
  std::int64_t lease = 0;
  const auto value = wait_registered(&lease);
  ASSERT_TRUE(value);
  EXPECT_NE(lease, 0) << "the key is attached to a lease";
  EXPECT_EQ(value->at("id").as_string(), kId);
  EXPECT_EQ(value->at("address").as_string(), "127.0.0.1:7000");
  EXPECT_EQ(value->at("load").at("sessions").as_int64(), 0);
  EXPECT_EQ(value->at("load").at("max_connections").to_number<std::int64_t>(), 16);
  // The gauge follows the put's answer, which the test may see in etcd first.
  for (const auto give_up = std::chrono::steady_clock::now() + kPatience;
       up() != 1 && std::chrono::steady_clock::now() < give_up;) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(up(), 1);
  // (an etcd just started may refuse the first calls: counted before this)
  const std::uint64_t failed_before = failures();

  // The workers' and the frontend's gauges, as they count sessions.
  segment_->metrics().workers[0].gauges[metrics::kSessionsLoggedIn].store(3);
  segment_->metrics().frontends[0].gauges[metrics::kConnectionsOpen].store(5);
  std::int64_t lease_after = 0;
  ASSERT_TRUE(wait_value(
      [](const boost::json::object& v) {
        return v.at("load").at("sessions").as_int64() == 3 &&
               v.at("load").at("connections").as_int64() == 5;
      },
      &lease_after));
  EXPECT_EQ(lease_after, lease) << "the load is put on the same lease";
  EXPECT_EQ(failures(), failed_before);
}

TEST_F(EtcdRegistrationTest, KeptAliveWellPastItsTtl) {
  ASSERT_TRUE(etcd_.start());
  make_segment(2);
  EtcdRegistration registration(*segment_, kId);
  std::int64_t lease = 0;
  ASSERT_TRUE(wait_registered(&lease));
  const std::uint64_t failed_before = failures();
  const auto until = std::chrono::steady_clock::now() + 7s;  // over three TTLs
  while (std::chrono::steady_clock::now() < until) {
    std::int64_t now_lease = 0;
    ASSERT_TRUE(etcd_.get(kKey, &now_lease)) << "the key went while the gateway ran";
    EXPECT_EQ(now_lease, lease);
    std::this_thread::sleep_for(250ms);
  }
  EXPECT_EQ(failures(), failed_before) << "every keepalive was answered";
}

TEST_F(EtcdRegistrationTest, TheKeyGoesAtOnceWhenTheDrainStartsAndNeverComesBack) {
  ASSERT_TRUE(etcd_.start());
  make_segment(30);  // expiry would take 30 s: a quick removal is the revoke
  EtcdRegistration registration(*segment_, kId);
  ASSERT_TRUE(wait_registered());
  segment_->control().draining.store(kDrainNoNewConnections);
  const auto took = wait_gone();
  ASSERT_TRUE(took) << "the key stayed through the drain";
  EXPECT_LT(*took, 10s) << "removed at the drain's start, not by the lease's expiry";
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(etcd_.get(kKey)) << "a draining gateway registered again";
  EXPECT_EQ(up(), 0);
}

TEST_F(EtcdRegistrationTest, AStopRevokesTheKey) {
  ASSERT_TRUE(etcd_.start());
  make_segment(30);
  {
    EtcdRegistration registration(*segment_, kId);
    ASSERT_TRUE(wait_registered());
  }
  EXPECT_FALSE(etcd_.get(kKey)) << "the stop revoked the lease before it returned";
  EXPECT_EQ(up(), 0);
}

TEST_F(EtcdRegistrationTest, AnEtcdThatLostItsDataGetsTheKeyAgain) {
  ASSERT_TRUE(etcd_.start());
  make_segment(2);
  EtcdRegistration registration(*segment_, kId);
  std::int64_t first_lease = 0;
  ASSERT_TRUE(wait_registered(&first_lease));
  etcd_.wipe();
  ASSERT_TRUE(etcd_.start());
  std::int64_t lease = 0;
  ASSERT_TRUE(wait_registered(&lease));
  EXPECT_NE(lease, 0);
  EXPECT_GT(failures(), 0u) << "the outage and the lost lease are counted";
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (up() != 1 && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(up(), 1);
}

TEST_F(EtcdRegistrationTest, AnEtcdNotThereYetIsRetriedAndRegisteredWithOnceItComes) {
  make_segment(10);  // etcd_ is not started: nothing answers on its port
  EtcdRegistration registration(*segment_, kId);
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (failures() < 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(failures(), 2u) << "each failed attempt is counted";
  EXPECT_EQ(up(), 0);
  ASSERT_TRUE(etcd_.start());
  ASSERT_TRUE(wait_registered());
}

}  // namespace
}  // namespace gatehouse::bridge
