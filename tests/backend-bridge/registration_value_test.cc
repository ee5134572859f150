// What the gateway's key in etcd says (docs/discovery.md "The gateway in
// etcd"): the JSON value, parsed back as a load balancer would, the key, the
// facts the settings give, and the address clients are told to dial
// (advertised_address(): register-address as given, a HOST with the first
// listener's port, or the listener itself unless it is a wildcard).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "gatehouse/base/version.h"
#include "gatehouse/bridge/etcd_registration.h"
#include "gatehouse/net/endpoint.h"

namespace gatehouse::bridge {
namespace {

namespace json = boost::json;

/// The array of strings `v`, as a vector.
std::vector<std::string> strings(const json::value& v) {
  std::vector<std::string> out;
  for (const json::value& item : v.as_array()) out.emplace_back(item.as_string());
  return out;
}

TEST(RegistrationValue, IsTheDocumentedJson) {
  RegistrationFacts facts;
  facts.id = "host-1/gatehouse-main@1712345678";
  facts.address = "203.0.113.5:7000";
  facts.version = "1.2.3";
  facts.listeners = {{"0.0.0.0:7000", kTransportTcp | kTransportKcp, kCryptoAny},
                     {"0.0.0.0:7443", kTransportWss, kCryptoModern},
                     {"[::1]:7001", kTransportTls, kCryptoModern1 | kCryptoLegacy}};
  facts.sessions = 12;
  facts.connections = 15;
  facts.max_connections = 10000;
  facts.draining = false;

  const json::object v = json::parse(registration_value(facts)).as_object();
  EXPECT_EQ(v.at("id").as_string(), facts.id);
  EXPECT_EQ(v.at("address").as_string(), "203.0.113.5:7000");
  EXPECT_EQ(v.at("version").as_string(), "1.2.3");
  const json::array& listeners = v.at("listeners").as_array();
  ASSERT_EQ(listeners.size(), 3u);
  EXPECT_EQ(listeners[0].at("address").as_string(), "0.0.0.0:7000");
  EXPECT_EQ(strings(listeners[0].at("transports")), (std::vector<std::string>{"tcp", "kcp"}));
  EXPECT_EQ(strings(listeners[0].at("crypto")),
            (std::vector<std::string>{"clear", "legacy", "modern"}));
  EXPECT_EQ(strings(listeners[1].at("transports")), (std::vector<std::string>{"wss"}));
  EXPECT_EQ(strings(listeners[1].at("crypto")), (std::vector<std::string>{"modern"}));
  EXPECT_EQ(listeners[2].at("address").as_string(), "[::1]:7001");
  EXPECT_EQ(strings(listeners[2].at("transports")), (std::vector<std::string>{"tls"}));
  EXPECT_EQ(strings(listeners[2].at("crypto")), (std::vector<std::string>{"legacy", "modern1"}));
  const json::object& load = v.at("load").as_object();
  EXPECT_EQ(load.at("sessions").as_int64(), 12);
  EXPECT_EQ(load.at("connections").as_int64(), 15);
  EXPECT_EQ(load.at("max_connections").to_number<std::int64_t>(), 10000);
  EXPECT_FALSE(load.at("draining").as_bool());
  EXPECT_EQ(v.size(), 5u) << "nothing undocumented";
  EXPECT_EQ(load.size(), 4u) << "nothing undocumented";
}

TEST(RegistrationValue, EscapesWhatJsonMust) {
  RegistrationFacts facts;
  facts.id = "odd\"host\\name/gatehouse-x@1";
  facts.address = "a:1";
  const json::object v = json::parse(registration_value(facts)).as_object();
  EXPECT_EQ(v.at("id").as_string(), facts.id);
  EXPECT_TRUE(v.at("listeners").as_array().empty());
}

TEST(RegistrationKey, IsThePrefixAndTheId) {
  EXPECT_EQ(registration_key("/gateways", "h/gatehouse-a@1"), "/gateways/h/gatehouse-a@1");
  EXPECT_EQ(registration_key("/gateways/", "h/gatehouse-a@1"), "/gateways/h/gatehouse-a@1");
}

Settings settings_with(const char* register_address, const char* first_listener) {
  Settings s{};
  s.frontends = 1;
  s.max_connections = 500;
  s.listener_count = 2;
  std::snprintf(s.register_address, sizeof s.register_address, "%s", register_address);
  std::snprintf(s.listener_addresses[0], sizeof s.listener_addresses[0], "%s", first_listener);
  s.listener_transports[0] = kTransportTcp;
  s.listener_crypto[0] = kCryptoLegacy;
  std::snprintf(s.listener_addresses[1], sizeof s.listener_addresses[1], "127.0.0.1:7002");
  s.listener_transports[1] = kTransportWs | kTransportKcp;
  s.listener_crypto[1] = kCryptoModern;
  return s;
}

TEST(RegistrationFacts, ComeFromTheSettings) {
  const RegistrationFacts f = registration_facts(settings_with("", "10.0.0.5:7000"), "gw");
  EXPECT_EQ(f.id, "gw");
  EXPECT_EQ(f.address, "10.0.0.5:7000") << "the first listener, as bound";
  EXPECT_EQ(f.version, version());
  EXPECT_EQ(f.max_connections, 500u);
  ASSERT_EQ(f.listeners.size(), 2u);
  EXPECT_EQ(f.listeners[1].address, "127.0.0.1:7002");
  EXPECT_EQ(f.listeners[1].transports, kTransportWs | kTransportKcp);
  EXPECT_EQ(f.listeners[1].crypto, kCryptoModern);

  EXPECT_EQ(registration_facts(settings_with("gw.example.com", "0.0.0.0:7000"), "gw").address,
            "gw.example.com:7000");
  EXPECT_THROW(registration_facts(settings_with("", "0.0.0.0:7000"), "gw"), std::invalid_argument);
}

TEST(AdvertisedAddress, GivenHostPortIsKeptAHostTakesTheListenersPort) {
  EXPECT_EQ(advertised_address("gw1.example.com:443", "0.0.0.0:7000"), "gw1.example.com:443");
  EXPECT_EQ(advertised_address("[2001:db8::5]:7000", "[::]:7000"), "[2001:db8::5]:7000");
  EXPECT_EQ(advertised_address("gw1.example.com", "0.0.0.0:7000"), "gw1.example.com:7000");
  EXPECT_EQ(advertised_address("203.0.113.5", "[::]:7001"), "203.0.113.5:7001");
  EXPECT_EQ(advertised_address("[2001:db8::5]", "[::]:7001"), "[2001:db8::5]:7001");
}

TEST(AdvertisedAddress, DefaultIsTheListenerUnlessItIsAWildcard) {
  EXPECT_EQ(advertised_address("", "127.0.0.1:7000"), "127.0.0.1:7000");
  EXPECT_EQ(advertised_address("", "[::1]:7000"), "[::1]:7000");
  EXPECT_EQ(advertised_address("", "gw1.internal:7000"), "gw1.internal:7000");
  for (const char* wildcard : {"0.0.0.0:7000", "[::]:7000"}) {
    try {
      advertised_address("", wildcard);
      ADD_FAILURE() << wildcard << " was taken";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("wildcard"), std::string::npos) << e.what();
    }
  }
}

TEST(AdvertisedAddress, MalformedOnesAreRefusedSayingWhy) {
  for (const char* bad : {"2001:db8::5", "gw1:0", "gw1:http", "gw 1", "gw1/x:7000", "[::1"}) {
    EXPECT_THROW(advertised_address(bad, "127.0.0.1:7000"), std::invalid_argument) << bad;
  }
}

}  // namespace
}  // namespace gatehouse::bridge
