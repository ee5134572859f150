// Configuration: defaults, file + flags precedence, and bad values failing at
// start with the setting's name.
#include "gatehouse/supervisor/config.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "gatehouse/supervisor/keygen.h"
#include "gatehouse/supervisor/settings_table.h"
#include "gatehouse/token/token_file.h"
#include "test_certificate.h"

#include <gmock/gmock.h>

#include <gtest/gtest.h>
#include <boost/asio/ip/address_v6.hpp>

namespace gatehouse::supervisor {
namespace {

using ::testing::HasSubstr;

/// This process's directory of key files, removed at exit.
const std::filesystem::path& key_dir() {
  static const struct Dir {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("gatehouse-config-keys-" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() { std::filesystem::remove_all(path); }
  } dir;
  return dir.path;
}

/// A fresh gateway key pair made by `gatehouse keygen`; returns its private file.
std::string new_key(const std::string& name) {
  const auto path = key_dir() / name;
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + ".pub");
  const KeygenResult made = keygen_command({"--out", path.string()});
  EXPECT_EQ(made.exit_code, 0) << made.output;
  return path.string();
}

ParseResult parse(std::vector<std::string> args) {
  args.insert(args.begin(), "gatehouse");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_config(static_cast<int>(argv.size()), argv.data());
}

TEST(Config, DefaultsAreTheGonet2Ones) {
  const auto r = parse({});
  ASSERT_TRUE(r.config.has_value()) << r.message;
  const Settings& s = r.config->settings;
  EXPECT_EQ(s.read_timeout_ms, 15000u);
  EXPECT_EQ(s.rpm_limit, 200u);
  EXPECT_EQ(s.txqueuelen, 128u);
  EXPECT_EQ(s.sockbuf, 32767u);
  EXPECT_EQ(s.max_frame, 65535u);
  // One worker per two CPUs, at least one.
  EXPECT_EQ(s.workers, std::clamp(std::thread::hardware_concurrency() / 2, 1u, kMaxWorkers));
  EXPECT_EQ(r.config->listen, std::vector<std::string>{"0.0.0.0:8888"});
  EXPECT_FALSE(r.config->reuse_port);
  EXPECT_EQ(r.config->drain_wait_ms, 0u) << "SIGTERM closes the sessions at once, as gonet2 did";
  EXPECT_EQ(parse({"--drain-wait", "30"}).config->drain_wait_ms, 30000u);
  EXPECT_EQ(std::string(s.backends[0]), "127.0.0.1:50051");
  EXPECT_EQ(s.login_mode, LoginMode::kAcceptAny);
}

TEST(Config, LogConnectionsIsAllNoneOrASample) {
  const auto value = [](const std::string& text) {
    const auto r = parse({"--log-connections", text});
    EXPECT_TRUE(r.config.has_value()) << r.message;
    return r.config ? r.config->settings.log_connections : 12345u;
  };
  EXPECT_EQ(parse({}).config->settings.log_connections, kLogConnectionsAll);
  EXPECT_EQ(value("all"), kLogConnectionsAll);
  EXPECT_EQ(value("none"), kLogConnectionsNone);
  EXPECT_EQ(value("sample:100"), 100u);
  EXPECT_EQ(value("sample:1000000"), 1'000'000u);
  EXPECT_FALSE(parse({"--log-connections", "sample:1000001"}).config.has_value());
}

TEST(Config, FlagsOverrideTheFile) {
  const auto path = std::filesystem::temp_directory_path() / "gatehouse-config-test.conf";
  std::ofstream(path) << "rpm-limit = 50\nread-timeout = 3.5\nbackend = 10.0.0.1:1\n"
                         "backend = 10.0.0.2:2\nbackend-numbering = later\n";
  const auto r = parse({"--config", path.string(), "--rpm-limit", "60"});
  ASSERT_TRUE(r.config.has_value()) << r.message;
  EXPECT_EQ(r.config->settings.rpm_limit, 60u);
  EXPECT_EQ(r.config->settings.read_timeout_ms, 3500u);
  EXPECT_EQ(r.config->settings.backend_count, 2u);
  EXPECT_EQ(r.config->settings.numbering, FrameNumbering::kLaterGeneration);
  std::filesystem::remove(path);
}

TEST(Config, ReusePortIsASwitchInFlagsAndFile) {
  EXPECT_TRUE(parse({"--reuse-port"}).config->reuse_port);
  EXPECT_FALSE(parse({"--reuse-port=false"}).config->reuse_port);
  const auto path = std::filesystem::temp_directory_path() / "gatehouse-config-reuse.conf";
  std::ofstream(path) << "reuse-port = true\n";
  const auto r = parse({"--config", path.string()});
  std::filesystem::remove(path);
  ASSERT_TRUE(r.config.has_value()) << r.message;
  EXPECT_TRUE(r.config->reuse_port);
  const auto bad = parse({"--reuse-port=maybe"});
  EXPECT_FALSE(bad.config.has_value());
  EXPECT_THAT(bad.message, HasSubstr("reuse-port"));
}

/// A directory holding stand-ins for the child binaries (`present` of them).
std::filesystem::path fake_bin_dir(const char* name, bool present) {
  auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::create_directories(dir);
  for (const char* binary : {"gatehouse-frontend", "gatehouse-worker", "gatehouse-bridge"}) {
    const auto path = dir / binary;
    if (!present) {
      std::filesystem::remove(path);
      continue;
    }
    std::ofstream(path) << "#!/bin/sh\n";
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  }
  return dir;
}

TEST(Config, CheckPrintsTheEffectiveConfigurationAsAConfigFile) {
  const auto bin = fake_bin_dir("gatehouse-check-ok", true);
  const auto r = parse({"--check", "--bin-dir", bin.string(), "--rpm-limit", "60", "--backend",
                        "batch:10.0.0.1:1", "--listen", "127.0.0.1:9000", "--listen",
                        "127.0.0.1:9001,crypto=legacy+modern"});
  EXPECT_FALSE(r.config.has_value()) << "--check starts nothing";
  EXPECT_EQ(r.exit_code, 0) << r.message;
  EXPECT_THAT(r.message, HasSubstr("rpm-limit = 60  # flag\n"));
  EXPECT_THAT(r.message, HasSubstr("txqueuelen = 128  # default\n"));
  EXPECT_THAT(r.message, HasSubstr("listen = 127.0.0.1:9000,crypto=any  # flag\n"));
  EXPECT_THAT(r.message, HasSubstr("listen = 127.0.0.1:9001,crypto=legacy+modern  # flag\n"));
  EXPECT_THAT(r.message, HasSubstr("backend = batch:10.0.0.1:1  # flag\n"));
  EXPECT_THAT(r.message, HasSubstr("configuration ok"));
  // What it prints reads back as the same configuration.
  const auto path = std::filesystem::temp_directory_path() / "gatehouse-check-again.conf";
  std::ofstream(path) << r.message;
  const auto again = parse({"--config", path.string()});
  std::filesystem::remove(path);
  ASSERT_TRUE(again.config.has_value()) << again.message;
  EXPECT_EQ(again.config->settings.rpm_limit, 60u);
  EXPECT_EQ(again.config->listen, (std::vector<std::string>{"127.0.0.1:9000", "127.0.0.1:9001"}));
  EXPECT_EQ(again.config->settings.listener_crypto[1], kCryptoLegacy | kCryptoModern);
  EXPECT_EQ(std::string(again.config->settings.backends[0]), "batch:10.0.0.1:1");
  EXPECT_EQ(again.config->bin_dir, bin.string());
  std::filesystem::remove_all(bin);
}

// bridges = 0 (the default) is one per eight CPUs, at least one; a number is
// taken as it is, up to kMaxBridges; --check says what 0 resolved to.
TEST(Config, BridgesDefaultToOnePerEightCpus) {
  const unsigned automatic = std::clamp(std::thread::hardware_concurrency() / 8, 1u, kMaxBridges);
  EXPECT_EQ(parse({}).config->settings.bridges, automatic);
  EXPECT_EQ(parse({"--bridges", "0"}).config->settings.bridges, automatic);
  EXPECT_EQ(parse({"--bridges", "3"}).config->settings.bridges, 3u);
  EXPECT_EQ(parse({"--bridges", "8"}).config->settings.bridges, kMaxBridges);
  const auto over = parse({"--bridges", "9"});
  EXPECT_FALSE(over.config.has_value());
  EXPECT_THAT(over.message, HasSubstr("--bridges = 9 is out of range [0, 8]"));
  const auto bin = fake_bin_dir("gatehouse-check-bridges", true);
  const auto check = parse({"--check", "--bin-dir", bin.string(), "--bridges", "3"});
  const auto automatic_check = parse({"--check", "--bin-dir", bin.string()});
  std::filesystem::remove_all(bin);
  EXPECT_THAT(check.message, HasSubstr("\nbridges = 3  # flag\n"));
  EXPECT_THAT(check.message, HasSubstr(", bridges 3, "));
  EXPECT_THAT(automatic_check.message, HasSubstr("\nbridges = 0  # default\n"));
  EXPECT_THAT(automatic_check.message, HasSubstr(", bridges " + std::to_string(automatic) + ", "));
}

// --listen HOST:PORT,crypto=MODES (docs/protocol-modern.md): per listener,
// 'any' by default so that gonet2 clients work unchanged.
TEST(Config, ListenersSayWhichCryptoTheirClientsMaySpeak) {
  const auto r =
      parse({"--listen", "127.0.0.1:9000", "--listen", "[::1]:9001,crypto=modern", "--listen",
             "127.0.0.1:9002,crypto=modern+legacy", "--gateway-key", new_key("listeners.key")});
  ASSERT_TRUE(r.config.has_value()) << r.message;
  EXPECT_EQ(r.config->listen,
            (std::vector<std::string>{"127.0.0.1:9000", "[::1]:9001", "127.0.0.1:9002"}));
  const Settings& s = r.config->settings;
  ASSERT_EQ(s.listener_count, 3u);
  EXPECT_EQ(s.listener_crypto[0], kCryptoAny);
  EXPECT_EQ(s.listener_crypto[1], kCryptoModern);
  EXPECT_EQ(s.listener_crypto[2], kCryptoModern | kCryptoLegacy);
  EXPECT_EQ(parse({}).config->settings.listener_crypto[0], kCryptoAny);
  for (const char* bad : {"127.0.0.1:9000,crypto=", "127.0.0.1:9000,crypto=rot13",
                          "127.0.0.1:9000,crypto=modern+", "127.0.0.1:9000,tls=on"}) {
    const auto e = parse({"--listen", bad});
    EXPECT_FALSE(e.config.has_value()) << bad;
    EXPECT_NE(e.exit_code, 0) << bad;
    EXPECT_THAT(e.message, HasSubstr("--listen")) << bad;
  }
  EXPECT_EQ(crypto_modes_text(kCryptoModern | kCryptoClear), "clear+modern");
  EXPECT_EQ(parse_crypto_modes("clear+modern"), kCryptoModern | kCryptoClear);
}

// Each value says where it came from (--check, gatehousectl config): the
// file, a flag (which wins over the file), both for a repeatable setting,
// or the default; admin-socket's default names the instance.
TEST(Config, EachValueSaysWhereItCameFrom) {
  const auto file = std::filesystem::temp_directory_path() / "gatehouse-origins.conf";
  std::ofstream(file) << "rpm-limit = 150\ntxqueuelen = 64\nbackend = 10.0.0.1:1\n";
  const auto r = parse({"--config", file.string(), "--instance", "blue", "--txqueuelen", "32",
                        "--backend", "10.0.0.2:2"});
  std::filesystem::remove(file);
  ASSERT_TRUE(r.config) << r.message;
  const std::vector<std::string> lines = effective_text(*r.config);
  const auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  EXPECT_TRUE(has("rpm-limit = 150  # file"));
  EXPECT_TRUE(has("txqueuelen = 32  # flag (overrides the file)"));
  EXPECT_TRUE(has("instance = blue  # flag"));
  EXPECT_TRUE(has("max-frame = 65535  # default"));
  EXPECT_TRUE(has("backend = 10.0.0.2:2  # file and flags"));
  EXPECT_TRUE(has("backend = 10.0.0.1:1  # file and flags"));
  EXPECT_TRUE(has("admin-socket = /run/gatehouse/blue/admin.sock  # default"));
}

// After a reload the running configuration's origins are the fresh ones for
// what it took, and a value that waits for a restart says so.
TEST(Config, AReloadKeepsTheOriginsOfWhatItTook) {
  const auto running = parse({"--rpm-limit", "100", "--workers", "2"});
  const auto fresh = parse({"--rpm-limit", "50", "--workers", "4"});
  ASSERT_TRUE(running.config && fresh.config);
  const ReloadPlan plan = plan_reload(*running.config, *fresh.config);
  const std::vector<std::string> lines = effective_text(plan.config);
  EXPECT_NE(std::find(lines.begin(), lines.end(), "rpm-limit = 50  # flag"), lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "workers = 2  # flag; the configuration read again changes it: applies at "
                      "a restart"),
            lines.end());
  EXPECT_EQ(lines.size(), effective_text(*running.config).size());
}

// proxy= and proxy-from= (docs/proxy-protocol.md): per listener, the
// sources trusted by default the loopback ones; printed back by --check and
// changed live by a reload.
TEST(Config, ListenersTakePROXYHeadersFromTheirTrustedSources) {
  const auto r =
      parse({"--check", "--bin-dir", fake_bin_dir("gatehouse-check-proxy", true).string(),
             "--listen", "127.0.0.1:9000", "--listen", "127.0.0.1:9001,proxy=v2", "--listen",
             "127.0.0.1:9002,proxy=optional,proxy-from=10.0.0.0/8+fd00::/8"});
  EXPECT_EQ(r.exit_code, 0) << r.message;
  EXPECT_THAT(r.message, HasSubstr("listen = 127.0.0.1:9000,crypto=any  # flag\n"));
  EXPECT_THAT(
      r.message,
      HasSubstr(
          "listen = 127.0.0.1:9001,crypto=any,proxy=v2,proxy-from=127.0.0.0/8+::1/128  # flag\n"));
  EXPECT_THAT(r.message, HasSubstr("listen = 127.0.0.1:9002,crypto=any,proxy=optional,"
                                   "proxy-from=10.0.0.0/8+fd00::/8  # flag\n"));

  const auto c = parse({"--listen", "127.0.0.1:9000", "--listen", "127.0.0.1:9001,proxy=v1",
                        "--listen", "127.0.0.1:9002,proxy-from=192.0.2.7/32,proxy=optional"});
  ASSERT_TRUE(c.config.has_value()) << c.message;
  const Settings& s = c.config->settings;
  EXPECT_EQ(s.listener_proxy[0], ProxyMode::kNone);
  EXPECT_EQ(s.listener_proxy[1], ProxyMode::kV1);
  EXPECT_EQ(s.listener_proxy[2], ProxyMode::kOptional);
  ASSERT_EQ(s.listener_proxy_from_count[1], 2u) << "loopback by default";
  const std::uint8_t loopback4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 3, 2, 1};
  const std::uint8_t loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const std::uint8_t other[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 7};
  EXPECT_TRUE(s.listener_proxy_from[1][0].contains(loopback4));
  EXPECT_TRUE(s.listener_proxy_from[1][1].contains(loopback6));
  ASSERT_EQ(s.listener_proxy_from_count[2], 1u);
  EXPECT_TRUE(s.listener_proxy_from[2][0].contains(other));
  EXPECT_FALSE(s.listener_proxy_from[2][0].contains(loopback4)) << "named ranges replace loopback";

  constexpr const char* kNineRanges =  // one over kMaxProxyNetworks
      "127.0.0.1:9000,proxy=v1,proxy-from=1.0.0.0/8+2.0.0.0/8+3.0.0.0/8+4.0.0.0/8+5.0.0.0/8+"
      "6.0.0.0/8+7.0.0.0/8+8.0.0.0/8+9.0.0.0/8";
  for (const char* bad :
       {"127.0.0.1:9000,proxy=v3", "127.0.0.1:9000,proxy=", "127.0.0.1:9000,proxy-from=10.0.0.0/8",
        "127.0.0.1:9000,proxy=v1,proxy-from=10.0.0.1/8",
        "127.0.0.1:9000,proxy=v1,proxy-from=", "127.0.0.1:9000,proxy=v1,proxy-from=10.0.0.0/8+",
        "127.0.0.1:9000,proxy=v1,proxy-from=bogus", kNineRanges}) {
    const auto e = parse({"--listen", bad});
    EXPECT_FALSE(e.config.has_value()) << bad;
    EXPECT_EQ(e.exit_code, 2) << bad;
    EXPECT_THAT(e.message, HasSubstr("--listen")) << bad;
  }
  EXPECT_THAT(parse({"--listen", "127.0.0.1:9000,proxy-from=10.0.0.0/8"}).message,
              HasSubstr("proxy-from= without proxy="));

  const ReloadPlan plan =
      plan_reload(*parse({"--listen", "127.0.0.1:9000"}).config,
                  *parse({"--listen", "127.0.0.1:9000,proxy=v2,proxy-from=10.1.0.0/16"}).config);
  EXPECT_THAT(plan.applied,
              ::testing::Contains("listen proxy none -> proxy=v2,proxy-from=10.1.0.0/16"));
  EXPECT_EQ(plan.config.settings.listener_proxy[0], ProxyMode::kV2);
  EXPECT_EQ(plan.config.settings.listener_proxy_from_count[0], 1u);
  EXPECT_TRUE(plan.need_restart.empty());
}

// --listen HOST:PORT,transport=T (docs/kcp.md): tcp by default, kcp (UDP on
// the same address) or both; a change needs a restart (new sockets).
TEST(Config, ListenersSayWhichTransportsServeThem) {
  const auto r = parse({"--listen", "127.0.0.1:9000", "--listen", "127.0.0.1:9001,transport=kcp",
                        "--listen", "127.0.0.1:9002,crypto=any,transport=tcp+kcp"});
  ASSERT_TRUE(r.config.has_value()) << r.message;
  const Settings& s = r.config->settings;
  EXPECT_EQ(s.listener_transports[0], kTransportTcp);
  EXPECT_EQ(s.listener_transports[1], kTransportKcp);
  EXPECT_EQ(s.listener_transports[2], kTransportTcp | kTransportKcp);
  EXPECT_EQ(s.udp_mtu, 1280u);
  EXPECT_EQ(s.kcp_interval_ms, 20u);
  EXPECT_EQ(s.udp_dscp, 46u);
  for (const char* bad : {"127.0.0.1:9000,transport=", "127.0.0.1:9000,transport=quic",
                          "127.0.0.1:9000,transport=tcp+"}) {
    const auto e = parse({"--listen", bad});
    EXPECT_FALSE(e.config.has_value()) << bad;
    EXPECT_THAT(e.message, HasSubstr("transport=")) << bad;
  }
  for (const char* bad : {"127.0.0.1:9000,transport=tcp+ws", "127.0.0.1:9000,transport=tls+wss",
                          "127.0.0.1:9000,transport=http"}) {
    const auto e = parse({"--listen", bad});
    EXPECT_FALSE(e.config.has_value()) << bad;
    EXPECT_THAT(e.message, HasSubstr("one of tcp, tls, ws, wss")) << bad;
  }
  const auto ws = parse({"--listen", "127.0.0.1:9000,transport=ws+kcp"});
  ASSERT_TRUE(ws.config.has_value()) << ws.message;
  EXPECT_EQ(ws.config->settings.listener_transports[0], kTransportWs | kTransportKcp);
  EXPECT_EQ(listener_options_text(ws.config->settings, 0), ",crypto=any,transport=ws+kcp");
  const auto tcp = parse({"--listen", "127.0.0.1:9000"});
  const auto kcp = parse({"--listen", "127.0.0.1:9000,transport=tcp+kcp"});
  ASSERT_TRUE(tcp.config && kcp.config);
  EXPECT_EQ(plan_reload(*tcp.config, *kcp.config).need_restart, std::vector<std::string>{"listen"});
}

// tls and wss listeners (docs/websocket.md): the certificate and key are
// loaded and matched at parse time (start, reload, --check), the key kept
// from others; ws-origins takes origins.
TEST(Config, TlsListenersNeedACertificateAndAKeyThatLoad) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gatehouse-config-tls-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const gatehouse::testing::TestCertificate one =
      gatehouse::testing::make_test_certificate(dir.string(), "one");
  const gatehouse::testing::TestCertificate two =
      gatehouse::testing::make_test_certificate(dir.string(), "two");
  const std::string listen = "127.0.0.1:9443,transport=wss";

  const auto ok = parse({"--listen", listen, "--tls-cert", one.cert, "--tls-key", one.key});
  ASSERT_TRUE(ok.config.has_value()) << ok.message;
  EXPECT_EQ(std::string(ok.config->settings.tls_cert), one.cert);

  const auto missing = parse({"--listen", listen});
  EXPECT_FALSE(missing.config.has_value());
  EXPECT_THAT(missing.message, HasSubstr("tls-cert and tls-key are both needed"));

  const auto mismatched = parse({"--listen", listen, "--tls-cert", one.cert, "--tls-key", two.key});
  EXPECT_FALSE(mismatched.config.has_value());
  EXPECT_THAT(mismatched.message, HasSubstr("the key of the certificate"));

  std::filesystem::permissions(one.key, std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  const auto readable = parse({"--listen", listen, "--tls-cert", one.cert, "--tls-key", one.key});
  EXPECT_FALSE(readable.config.has_value());
  EXPECT_THAT(readable.message, HasSubstr("others may read it"));

  // Not checked where no listener serves TLS.
  EXPECT_TRUE(parse({"--tls-cert", "/nonexistent.pem"}).config.has_value());

  EXPECT_TRUE(parse({"--ws-origins", "https://a.example,http://b.example:8080"}).config);
  const auto bad_origin = parse({"--ws-origins", "a.example"});
  EXPECT_FALSE(bad_origin.config.has_value());
  EXPECT_THAT(bad_origin.message, HasSubstr("is not an origin"));
  std::filesystem::remove_all(dir);
}

TEST(Config, ModernOneIsNamedOnlyWhereAllowedAndAnyIsTheOtherThree) {
  EXPECT_EQ(parse_crypto_modes("any+modern1"), kCryptoAny | kCryptoModern1);
  EXPECT_EQ(crypto_modes_text(kCryptoAny | kCryptoModern1), "any+modern1");
  EXPECT_EQ(crypto_modes_text(kCryptoModern | kCryptoModern1), "modern+modern1");
  EXPECT_EQ(kCryptoAny & kCryptoModern1, 0) << "any does not take the unauthenticated version";
}

TEST(Config, GatewayKeysAreCheckedAtStart) {
  const std::string a = new_key("a.key");
  const std::string b = new_key("b.key");
  const auto ok =
      parse({"--listen", "127.0.0.1:1,crypto=modern", "--gateway-key", a, "--gateway-key", b});
  ASSERT_TRUE(ok.config) << ok.message;
  EXPECT_EQ(ok.config->settings.gateway_key_count, 2u);
  EXPECT_EQ(std::string(ok.config->settings.gateway_keys[1]), b);

  const auto keyless = parse({"--listen", "127.0.0.1:1,crypto=modern"});
  EXPECT_EQ(keyless.exit_code, 2);
  EXPECT_THAT(keyless.message, HasSubstr("needs a --gateway-key"));
  EXPECT_THAT(keyless.message, HasSubstr("gatehouse keygen --out FILE"));
  EXPECT_TRUE(parse({}).config) << "the default listener (any) starts without a key, warned";

  std::filesystem::permissions(a, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  const auto readable = parse({"--gateway-key", a});
  EXPECT_EQ(readable.exit_code, 2);
  EXPECT_THAT(readable.message, HasSubstr("--gateway-key: gateway key " + a));
  EXPECT_THAT(readable.message, HasSubstr("chmod 600"));
  EXPECT_EQ(parse({"--gateway-key", b, "--gateway-key", b}).exit_code, 2) << "the same key twice";
  EXPECT_EQ(parse({"--gateway-key", "/nonexistent.key"}).exit_code, 2);
  std::vector<std::string> five;
  for (int i = 0; i < 5; ++i)
    five.insert(five.end(), {"--gateway-key", new_key(std::to_string(i))});
  EXPECT_THAT(parse(five).message, HasSubstr("at most 4"));
}

TEST(Keygen, WritesAPrivateFileOthersCannotReadAndNeverOverwrites) {
  const std::string path = new_key("keygen.key");
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_TRUE(std::filesystem::exists(path + ".pub"));
  const KeygenResult again = keygen_command({"--out", path});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.output, HasSubstr("File exists"));
  EXPECT_EQ(keygen_command({}).exit_code, 2);
  EXPECT_THAT(keygen_command({"--bogus"}).output, HasSubstr("usage: gatehouse keygen --out FILE"));
}

// A reload takes what can change live from the file read again and keeps
// (and names) what needs a restart.
TEST(Config, ReloadAppliesLiveSettingsAndNamesTheRest) {
  const auto running = parse(
      {"--rpm-limit", "200", "--workers", "2", "--listen", "127.0.0.1:9000", "--login", "any"});
  const auto fresh =
      parse({"--rpm-limit", "50", "--workers", "4", "--listen", "127.0.0.1:9000,crypto=modern",
             "--drain-wait", "30", "--max-connections-per-ip", "8", "--login", "any",
             "--gateway-key", new_key("reload-applies.key")});
  ASSERT_TRUE(running.config && fresh.config) << running.message << fresh.message;
  const ReloadPlan plan = plan_reload(*running.config, *fresh.config);
  EXPECT_EQ(plan.config.settings.rpm_limit, 50u);
  EXPECT_EQ(plan.config.settings.max_connections_per_ip, 8u);
  EXPECT_EQ(plan.config.settings.listener_crypto[0], kCryptoModern);
  EXPECT_EQ(plan.config.drain_wait_ms, 30000u);
  EXPECT_EQ(plan.config.settings.workers, 2u) << "the running number of workers stays";
  EXPECT_THAT(plan.applied, ::testing::Contains("rpm-limit 200 -> 50"));
  EXPECT_THAT(plan.applied, ::testing::Contains("listen crypto any -> modern"));
  EXPECT_THAT(plan.applied, ::testing::Contains("drain-wait-ms 0 -> 30000"));
  EXPECT_EQ(plan.need_restart, std::vector<std::string>{"workers"});

  const auto moved = parse(
      {"--rpm-limit", "200", "--workers", "2", "--listen", "127.0.0.1:9001", "--login", "any"});
  const ReloadPlan second = plan_reload(*running.config, *moved.config);
  EXPECT_TRUE(second.applied.empty());
  EXPECT_EQ(second.need_restart, std::vector<std::string>{"listen"});
  EXPECT_EQ(second.config.listen, running.config->listen);
}

TEST(Config, CheckFailsWhenAChildBinaryIsMissing) {
  const auto bin = fake_bin_dir("gatehouse-check-missing", false);
  const auto r = parse({"--check", "--bin-dir", bin.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.message, HasSubstr((bin / "gatehouse-worker").string() + " is missing"));
  EXPECT_THAT(r.message, ::testing::Not(HasSubstr("configuration ok")));
  std::filesystem::remove_all(bin);
}

TEST(Config, BadValuesNameTheSetting) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--max-frame", "70000"}, "--max-frame"},
      {{"--rpm-limit", "lots"}, "--rpm-limit"},
      {{"--ring-bytes", "1000000"}, "--ring-bytes"},
      {{"--backend-numbering", "v3"}, "--backend-numbering"},
      {{"--listen", "nowhere"}, "--listen"},
      {{"--drain-wait", "-1"}, "--drain-wait"},
      {{"--metrics-listen", "localhost"}, "--metrics-listen"},
      {{"--login", "ldap"}, "--login"},
      {{"--login", "auth:"}, "--login"},
      {{"--login", "auth:users.example"}, "--login auth:users.example: expected HOST:PORT"},
      {{"--auth-timeout", "0"}, "--auth-timeout"},
      {{"--auth-max-inflight", "0"}, "--auth-max-inflight"},
      {{"--log-level", "loud"}, "--log-level"},
      {{"--instance", "a/b"}, "--instance"},
      {{"--workers", "1000"}, "--workers"},
      {{"--config", "/nonexistent.conf"}, "/nonexistent.conf"},
      {{"--no-such-flag"}, "no-such-flag"},
      {{"--log-connections", "some"}, "--log-connections"},
      {{"--log-connections", "sample:1"}, "--log-connections"},
      {{"--log-connections", "sample:x"}, "--log-connections"},
      {{"--log-connections", "sample:"}, "--log-connections"},
      {{"--etcd-hosts", "https://127.0.0.1:2379"}, "--etcd-hosts: https://127.0.0.1:2379: https"},
      {{"--etcd-hosts", ","}, "--etcd-hosts names no endpoint"},
      {{"--etcd-root", "backends"}, "--etcd-root must start with '/'"},
      {{"--etcd-api", "v4"}, "--etcd-api must be 'v3' or 'v2', not 'v4'"},
      {{"--services", "a/b"}, "--services: 'a/b' is not a service name"},
      {{"--services", "a,b,c,d,e,f,g,h,i"}, "--services: at most 8 services"},
      {{"--services", "chat,news"}, "--game-service"},
      {{"--services", "game-10000", "--game-service", "chat"},
       "--game-service chat is not one of --services"},
      {{"--services", "game-10000", "--rebind", "chat"}, "--rebind: 'chat' is not a service"},
      {{"--services", "game-10000,chat", "--game-service", "game-10000", "--route", "2000:chat"},
       "--route 2000:chat: not a range and a service"},
      {{"--services", "game-10000,chat", "--game-service", "game-10000", "--route",
        "2000-1999:chat"},
       "--route 2000-1999:chat: proto numbers go from FIRST to LAST"},
      {{"--services", "game-10000,chat", "--game-service", "game-10000", "--route", "1-70000:chat"},
       "proto numbers go from FIRST to LAST <= 65535"},
      {{"--services", "game-10000", "--route", "2000-2999:chat"},
       "'chat' is not one of --services"},
      {{"--services", "game-10000,chat", "--game-service", "game-10000", "--route",
        "2000-2999:game-10000"},
       "messages go to the game service unless routed elsewhere"},
      {{"--services", "game-10000,chat,news", "--game-service", "game-10000", "--route",
        "2000-2999:chat,2500-2600:news"},
       "--route 2500-2600:news: overlaps 2000-2999:chat"},
      {{"--route", "2000-2999:chat"}, "no backend line names service 'chat'"},
      {{"--backend", "127.0.0.1:1,service=a/b"}, "is not a service name"},
      {{"--services", "game-10000", "--game-instance", "game/1"},
       "--game-instance 'game/1': an instance name"},
  };
  for (const auto& [args, name] : cases) {
    const auto r = parse(args);
    EXPECT_FALSE(r.config.has_value()) << args[0];
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.message, HasSubstr(name));
  }
}

// gonet2's flags: its default service list names two services, and its
// login went to game-10000; a single service is the game service.
TEST(Config, TheGameServiceIsTheOneNamedTheOnlyOneOrGonet2s) {
  const auto gonet2 = parse({"--services", "snowflake-10000,game-10000"});
  ASSERT_TRUE(gonet2.config) << gonet2.message;
  EXPECT_EQ(game_service_of(gonet2.config->settings.services, ""), "game-10000");
  EXPECT_STREQ(gonet2.config->settings.services, "snowflake-10000,game-10000");
  EXPECT_STREQ(gonet2.config->settings.etcd_hosts, "http://127.0.0.1:2379");
  EXPECT_STREQ(gonet2.config->settings.etcd_root, "/backends");
  EXPECT_EQ(gonet2.config->settings.etcd_api, EtcdApi::kV3);
  const auto v2 = parse({"--services", "game-10000", "--etcd-api", "v2"});
  ASSERT_TRUE(v2.config) << v2.message;
  EXPECT_EQ(v2.config->settings.etcd_api, EtcdApi::kV2);
  const auto one = parse({"--services", " chat "});
  ASSERT_TRUE(one.config) << one.message;
  EXPECT_EQ(game_service_of(one.config->settings.services, ""), "chat");
  const auto named = parse({"--services", "a,b", "--game-service", "b"});
  ASSERT_TRUE(named.config) << named.message;
  EXPECT_STREQ(named.config->settings.game_instance, "") << "hashing by default";
  const auto pinned = parse({"--services", "game-10000", "--game-instance", "game1"});
  ASSERT_TRUE(pinned.config) << pinned.message;
  EXPECT_STREQ(pinned.config->settings.game_instance, "game1") << "gonet2's DEFAULT_GSID";
  EXPECT_EQ(game_service_of(named.config->settings.services, named.config->settings.game_service),
            "b");
  // The backend lines: a fallback only when given.
  EXPECT_EQ(one.config->settings.backends_given, 0u);
  const auto given = parse({"--services", "chat", "--backend", "10.0.0.1:5000"});
  ASSERT_TRUE(given.config) << given.message;
  EXPECT_EQ(given.config->settings.backends_given, 1u);
}

// Several services per session: proto ranges to services (repeatable or
// comma-separated), each watched through etcd or named by backend lines;
// the services in rebind mode.
TEST(Config, RoutesAndRebindNameKnownServices) {
  const auto etcd =
      parse({"--services", "game-10000,chat,news", "--game-service", "game-10000", "--route",
             "2000-2999:chat, 3000-3000:news", "--route", "10-19:chat", "--rebind", "chat"});
  ASSERT_TRUE(etcd.config) << etcd.message;
  const Settings& s = etcd.config->settings;
  ASSERT_EQ(s.route_count, 3u);
  EXPECT_EQ(s.routes[0].first, 2000);
  EXPECT_EQ(s.routes[0].last, 2999);
  EXPECT_STREQ(s.routes[0].service, "chat");
  EXPECT_EQ(s.routes[1].first, 3000);
  EXPECT_STREQ(s.routes[1].service, "news");
  EXPECT_EQ(s.routes[2].last, 19);
  EXPECT_STREQ(s.rebind_services, "chat");

  const auto lines =
      parse({"--backend", "127.0.0.1:5000", "--backend", "batch:127.0.0.1:6000,service=chat",
             "--route", "2000-2999:chat", "--rebind", "*"});
  ASSERT_TRUE(lines.config) << lines.message;
  EXPECT_STREQ(lines.config->settings.backends[1], "batch:127.0.0.1:6000");
  EXPECT_STREQ(lines.config->settings.backend_services[1], "chat");
  EXPECT_STREQ(lines.config->settings.backend_services[0], "");
  EXPECT_STREQ(lines.config->settings.rebind_services, "*");
}

TEST(Config, HelpListsEverySettingWithItsDefault) {
  const auto r = parse({"--help"});
  EXPECT_FALSE(r.config.has_value());
  EXPECT_EQ(r.exit_code, 0);
  for (const char* name : {"--listen", "--max-connections", "--max-frame", "--read-timeout",
                           "--rpm-limit", "--txqueuelen", "--sockbuf", "--login", "--backend",
                           "--backend-numbering", "--workers", "--drain-timeout", "--ring-bytes"}) {
    EXPECT_THAT(r.message, HasSubstr(name));
  }
  EXPECT_THAT(r.message, HasSubstr("(=200)"));
}

// ------------------------------------------------- the settings table

/// examples/gatehouse.conf is what the table generates, byte for byte, so it
/// cannot drift from the settings the gateway has.
TEST(ConfigTable, ExampleConfigIsGeneratedFromTheTable) {
  const auto r = parse({"--print-example-config"});
  EXPECT_FALSE(r.config.has_value());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.message, example_config());
  std::ifstream in(std::string(GATEHOUSE_SOURCE_DIR) + "/examples/gatehouse.conf");
  ASSERT_TRUE(in) << "examples/gatehouse.conf is missing";
  std::ostringstream checked_in;
  checked_in << in.rdbuf();
  EXPECT_EQ(checked_in.str(), example_config())
      << "examples/gatehouse.conf is out of date: "
         "build/bin/gatehouse --print-example-config > examples/gatehouse.conf";
}

/// The manual pages come from the same table: every setting is in both, as
/// an option in gatehouse(8) and a key in gatehouse.conf(5), with roff's
/// minus signs (copyable options).
TEST(ConfigTable, ManualPagesListEverySetting) {
  const auto page8 = parse({"--print-manual", "8"});
  const auto page5 = parse({"--print-manual", "5"});
  ASSERT_EQ(page8.exit_code, 0);
  ASSERT_EQ(page5.exit_code, 0);
  EXPECT_THAT(page8.message, HasSubstr(".TH GATEHOUSE 8"));
  EXPECT_THAT(page5.message, HasSubstr(".TH GATEHOUSE.CONF 5"));
  for (const Setting& setting : settings_table()) {
    std::string name;
    for (const char c : std::string_view(setting.name))
      name += c == '-' ? "\\-" : std::string(1, c);
    EXPECT_THAT(page8.message, HasSubstr("\\fB\\-\\-" + name + "\\fR")) << setting.name;
    EXPECT_THAT(page5.message, HasSubstr(".TP\n\\fB" + name + "\\fR")) << setting.name;
  }
  EXPECT_EQ(parse({"--print-manual", "3"}).exit_code, 2);
}

TEST(ConfigTable, VersionNamesTheProjectVersionAndRevision) {
  const auto r = parse({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(r.message, ::testing::MatchesRegex("gatehouse [0-9]+\\.[0-9]+\\.[0-9]+ \\(.+\\)\n"));
}

// `login = any` on a listener that is not loopback is what the supervisor
// refuses (or, allowed, warns about): which listeners count as loopback.
TEST(Config, AnyLoginNamesTheFirstListenerThatIsNotLoopback) {
  for (const char* loopback : {"127.0.0.1:1", "127.0.0.2:1", "[::1]:1", "localhost:1"}) {
    const auto r = parse({"--listen", loopback});
    ASSERT_TRUE(r.config) << r.message;
    EXPECT_EQ(any_login_public_listener(*r.config), "") << loopback;
  }
  for (const char* open : {"0.0.0.0:1", "[::]:1", "10.1.2.3:1", "example.com:1"}) {
    const auto r = parse({"--listen", "127.0.0.1:2", "--listen", open});
    ASSERT_TRUE(r.config) << r.message;
    EXPECT_EQ(any_login_public_listener(*r.config), open) << open;
  }
  const auto key = std::filesystem::temp_directory_path() /
                   ("gatehouse-any-" + std::to_string(::getpid()) + ".pub");
  std::ofstream(key) << std::string(64, 'a') << "\n";
  std::filesystem::permissions(key, std::filesystem::perms::owner_read |
                                        std::filesystem::perms::owner_write |
                                        std::filesystem::perms::group_read |
                                        std::filesystem::perms::others_read);  // whatever the umask
  const auto signed_login = parse({"--listen", "0.0.0.0:1", "--login", "signed:" + key.string()});
  std::filesystem::remove(key);
  ASSERT_TRUE(signed_login.config) << signed_login.message;
  EXPECT_EQ(any_login_public_listener(*signed_login.config), "") << "not any: nothing to refuse";
}

TEST(Config, AuthLoginNamesTheServiceAndItsBounds) {
  const auto r = parse({"--listen", "0.0.0.0:1", "--login", "auth:users.internal:7000",
                        "--auth-timeout", "1.5", "--auth-max-inflight", "64"});
  ASSERT_TRUE(r.config) << r.message;
  EXPECT_EQ(r.config->settings.login_mode, LoginMode::kAuthService);
  EXPECT_STREQ(r.config->settings.login_file, "users.internal:7000");
  EXPECT_EQ(r.config->settings.auth_timeout_ms, 1500u);
  EXPECT_EQ(r.config->settings.auth_max_inflight, 64u);
  EXPECT_EQ(any_login_public_listener(*r.config), "") << "a real provider on a public listener";
  const auto defaults = parse({"--login", "auth:127.0.0.1:50051"});
  ASSERT_TRUE(defaults.config) << defaults.message;
  EXPECT_EQ(defaults.config->settings.auth_timeout_ms, 3000u);
  EXPECT_EQ(defaults.config->settings.auth_max_inflight, 1000u);
}

TEST(ConfigTable, ExampleConfigReadsBackAsTheDefaults) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("gatehouse-example-" + std::to_string(::getpid()) + ".conf");
  // Rows whose example is not their default (login: signed:<key file>,
  // which this machine has not) read back as their default.
  std::string example = example_config();
  for (const Setting& s : settings_table()) {
    if (s.example_text == nullptr) continue;
    const std::string shown = std::string("\n") + s.name + " = " + s.example_text;
    const auto at = example.find(shown);
    ASSERT_NE(at, std::string::npos) << s.name;
    example.replace(at, shown.size(), std::string("\n") + s.name + " = " + s.default_text);
  }
  std::ofstream(path) << example;
  const auto from_file = parse({"--config", path.string()});
  std::filesystem::remove(path);
  const auto defaults = parse({});
  ASSERT_TRUE(from_file.config && defaults.config) << from_file.message << defaults.message;
  const ReloadPlan plan = plan_reload(*defaults.config, *from_file.config);
  EXPECT_THAT(plan.applied, ::testing::IsEmpty());
  EXPECT_THAT(plan.need_restart, ::testing::IsEmpty());
  for (const Setting& s : settings_table()) {
    if (s.value != nullptr) {
      EXPECT_EQ(s.value(*from_file.config), s.value(*defaults.config)) << s.name;
    }
  }
}

TEST(ConfigTable, EverySettingIsInHelpTheExampleAndCheck) {
  const std::string help = parse({"--help"}).message;
  const std::string example = example_config();
  const auto bin = fake_bin_dir("gatehouse-check-table", true);
  const std::string check = parse({"--check", "--bin-dir", bin.string()}).message;
  std::filesystem::remove_all(bin);
  for (const Setting& s : settings_table()) {
    const std::string name = s.name;
    EXPECT_THAT(help, HasSubstr("--" + name + " ")) << name;
    EXPECT_THAT(help, HasSubstr("[reload: ")) << name;
    const std::string def = s.default_text;
    std::string line = (def.empty() ? "\n# " : "\n") + name + " =" +
                       (def.empty() ? "" : " " + def) + "  # reload: " + reload_text(s) + "\n";
    if (s.example_text != nullptr) {  // the example's value, the default beside it
      line = "\n" + name + " = ";
      line.append(s.example_text).append("  # reload: ").append(reload_text(s));
      line.append(" (default: ").append(def.empty() ? "none" : def).append(")\n");
    }
    EXPECT_NE(example.find(line), std::string::npos) << line;
    EXPECT_NE(check.find("\n" + name + " = "), std::string::npos) << name;
  }
  EXPECT_THAT(example, HasSubstr("\nmetrics-listen = 127.0.0.1:9477  # reload: restart\n"));
  EXPECT_THAT(example, HasSubstr("\nrpm-limit = 200  # reload: live\n"));
}

// Each setting, changed alone, is applied by a reload when its row says live
// and named (its running value kept) when it says restart.
TEST(ConfigTable, ReloadTreatsEachSettingAsItsRowSays) {
  const auto tokens =
      std::filesystem::temp_directory_path() / ("gatehouse-tokens-" + std::to_string(::getpid()));
  std::ofstream(tokens) << token::hash_token("t") << " 1\n";
  const unsigned default_workers =
      std::clamp(std::thread::hardware_concurrency() / 2, 1u, kMaxWorkers);
  const unsigned default_bridges =
      std::clamp(std::thread::hardware_concurrency() / 8, 1u, kMaxBridges);
  // A value other than the default, for every row: a new setting needs one.
  const std::map<std::string, std::string> other = {
      {"instance", "other"},
      {"log-level", "debug"},
      {"bin-dir", "/nonexistent"},
      {"ready-file", "/tmp/ready"},
      {"metrics-listen", "127.0.0.1:1"},
      {"listen", "127.0.0.1:1"},
      {"reuse-port", "true"},
      {"max-connections", "1000"},
      {"max-frame", "100"},
      {"read-timeout", "3"},
      {"rpm-limit", "5"},
      {"rpm-burst", "3"},
      {"bpm-limit", "100000"},
      {"bpm-burst", "5000"},
      {"max-connections-per-ip", "3"},
      {"txqueuelen", "5"},
      {"sockbuf", "0"},
      {"linger", "1"},
      {"login", "tokens:" + tokens.string()},
      {"backend", "10.0.0.1:1"},
      {"backend-numbering", "later"},
      {"backend-wait", "5"},
      {"game-backlog-bytes", "1048576"},
      {"workers", std::to_string(default_workers + 1)},
      {"frontends", "2"},
      {"frontend-affinity", "connection"},
      {"bridges", std::to_string(default_bridges % kMaxBridges + 1)},
      {"idle-spin-us", "7"},
      {"ring-bytes", "2097152"},
      {"drain-wait", "1"},
      {"drain-timeout", "1"},
      {"hang-timeout", "1"},
      {"restart-backoff-max", "1"},
      {"log-connections", "sample:10"},
      {"txqueue-bytes", "65536"},
      {"write-timeout", "2"},
      {"login-timeout", "2"},
      {"prelogin-frames", "4"},
      {"prelogin-bytes", "4096"},
      {"connect-rate", "10"},
      {"connect-rate-per-ip", "5"},
      {"duplicate-login", "refuse"},
      {"address-limits-exempt", "10.0.0.0/8, 2001:db8::/32"},
      {"gateway-key", new_key("reload.key")},
      {"login-audience", "eu"},
      {"login-any-allow-public", "true"},
      {"login-failures-per-ip", "3"},
      {"login-failures-per-user", "2"},
      {"login-failure-window", "5"},
      {"auth-timeout", "0.5"},
      {"auth-max-inflight", "7"},
      {"udp-sockbuf", "65536"},
      {"udp-sndwnd", "64"},
      {"udp-rcvwnd", "128"},
      {"udp-mtu", "1400"},
      {"nodelay", "0"},
      {"interval", "10"},
      {"resend", "2"},
      {"nc", "0"},
      {"dscp", "0"},
      {"udp-sessions-per-ip", "4"},
      {"udp-pending-sessions", "10"},
      {"tls-cert", "/etc/gatehouse/tls.pem"},
      {"tls-key", "/etc/gatehouse/tls.key"},
      {"ws-origins", "https://play.example.com"},
      {"services", "game-10000"},
      {"game-service", "chat"},
      {"etcd-hosts", "http://10.0.0.1:2379"},
      {"etcd-root", "/games"},
      {"etcd-api", "v2"},
      {"discovery-wait", "2"},
      {"register-prefix", "/gateways"},
      {"register-ttl", "3"},
      {"register-address", "gw1.example.com"},
      {"rebind", "*"},
      {"game-instance", "game1"},
      {"route", "2000-2999:chat"},
      {"admin-socket", "/run/gatehouse/other.sock"},
  };
  // What a row's other value needs: in both configurations (`needs`: the
  // default listener is a wildcard, which no client can dial), or beside it
  // in the new one only (`beside`: a route names a service of a backend line).
  const std::map<std::string, std::vector<std::string>> needs = {
      {"register-prefix", {"--register-address", "gw1.example.com"}}};
  const std::map<std::string, std::vector<std::string>> beside{
      {"route", {"--backend", "127.0.0.1:5000,service=chat"}}};
  for (const Setting& s : settings_table()) {
    const auto it = other.find(s.name);
    ASSERT_NE(it, other.end()) << s.name << ": give the test a value other than the default";
    const auto need = needs.find(s.name);
    std::vector<std::string> args = need == needs.end() ? std::vector<std::string>{} : need->second;
    const auto running = parse(args);
    ASSERT_TRUE(running.config) << running.message;
    args.insert(args.end(), {"--" + it->first, it->second});
    if (const auto b = beside.find(s.name); b != beside.end()) {
      args.insert(args.end(), b->second.begin(), b->second.end());
    }
    const auto fresh = parse(args);
    ASSERT_TRUE(fresh.config) << fresh.message;
    const ReloadPlan plan = plan_reload(*running.config, *fresh.config);
    if (s.on_reload == OnReload::kLive) {
      EXPECT_THAT(plan.need_restart, ::testing::IsEmpty()) << s.name;
      ASSERT_FALSE(plan.applied.empty()) << s.name;
      EXPECT_THAT(plan.applied[0], ::testing::StartsWith(plan_name(s) + " ")) << s.name;
      if (s.value != nullptr) {
        EXPECT_EQ(s.value(plan.config), s.value(*fresh.config)) << s.name;
      }
    } else {
      EXPECT_THAT(plan.applied, ::testing::IsEmpty()) << s.name;
      if (beside.contains(s.name)) {  // and what it needed beside it
        EXPECT_THAT(plan.need_restart, ::testing::Contains(std::string(s.name)));
      } else {
        EXPECT_EQ(plan.need_restart, std::vector<std::string>{s.name});
      }
      if (s.value != nullptr) {
        EXPECT_EQ(s.value(plan.config), s.value(*running.config)) << s.name;
      }
    }
  }
  EXPECT_EQ(other.size(), settings_table().size());
  std::filesystem::remove(tokens);
}

// Address ranges: IPv4 ones kept IPv4-mapped, as the frontend sees clients;
// "none" empties the list; a range with host bits set, or not a range, is
// refused naming the setting.
TEST(ConfigTable, AddressLimitsExemptTakesRanges) {
  const auto parsed = parse({"--address-limits-exempt", "10.1.0.0/16,::1/128, 192.0.2.7/32"});
  ASSERT_TRUE(parsed.config) << parsed.message;
  const Settings& s = parsed.config->settings;
  ASSERT_EQ(s.address_limits_exempt_count, 3u);
  const auto v6 = [](const char* text) {
    return boost::asio::ip::make_address_v6(text).to_bytes();
  };
  EXPECT_EQ(s.address_limits_exempt[0].prefix, 96u + 16u);
  EXPECT_TRUE(s.address_limits_exempt[0].contains(v6("::ffff:10.1.200.3").data()));
  EXPECT_FALSE(s.address_limits_exempt[0].contains(v6("::ffff:10.2.0.1").data()));
  EXPECT_TRUE(s.address_limits_exempt[1].contains(v6("::1").data()));
  EXPECT_FALSE(s.address_limits_exempt[1].contains(v6("::2").data()));
  EXPECT_TRUE(s.address_limits_exempt[2].contains(v6("::ffff:192.0.2.7").data()));
  EXPECT_FALSE(s.address_limits_exempt[2].contains(v6("::ffff:192.0.2.6").data()));
  const Setting& row = *std::find_if(
      settings_table().begin(), settings_table().end(),
      [](const Setting& r) { return std::string(r.name) == "address-limits-exempt"; });
  EXPECT_EQ(row.value(*parsed.config), "10.1.0.0/16,::1/128,192.0.2.7/32");

  const auto defaults = parse({});
  ASSERT_TRUE(defaults.config);
  EXPECT_EQ(row.value(*defaults.config), "127.0.0.1/32,::1/128");
  const auto none = parse({"--address-limits-exempt", "none"});
  ASSERT_TRUE(none.config);
  EXPECT_EQ(none.config->settings.address_limits_exempt_count, 0u);

  for (const char* bad : {"10.1.0.1/16", "10.0.0.0", "example.com/8", "::1/129", ""}) {
    const auto refused = parse({"--address-limits-exempt", bad});
    EXPECT_FALSE(refused.config) << bad;
    EXPECT_THAT(refused.message, ::testing::HasSubstr("address-limits-exempt")) << bad;
  }
}

TEST(ConfigTable, SecondsAreReportedInMilliseconds) {
  const auto running = parse({});
  const auto fresh = parse({"--read-timeout", "3.5", "--linger", "0.25"});
  ASSERT_TRUE(running.config && fresh.config);
  const ReloadPlan plan = plan_reload(*running.config, *fresh.config);
  EXPECT_THAT(plan.applied,
              ::testing::ElementsAre("read-timeout-ms 15000 -> 3500", "linger-ms 2000 -> 250"));
}

// The gateway's key in etcd says what clients dial: register-address, or
// the first listener when it is not a wildcard (docs/discovery.md).
TEST(Config, RegisteringNeedsAnAddressClientsCanDial) {
  const auto off = parse({"--listen", "0.0.0.0:7000"});
  ASSERT_TRUE(off.config) << off.message;
  EXPECT_STREQ(off.config->settings.register_prefix, "") << "not registered by default";
  EXPECT_EQ(off.config->settings.register_ttl_s, 10u);

  const auto wildcard = parse({"--listen", "0.0.0.0:7000", "--register-prefix", "/gateways"});
  EXPECT_EQ(wildcard.exit_code, 2);
  EXPECT_THAT(wildcard.message, HasSubstr("--register-address: the first listener 0.0.0.0:7000 "
                                          "is on a wildcard address"));
  const auto named = parse({"--listen", "0.0.0.0:7000", "--register-prefix", "/gateways",
                            "--register-address", "gw1.example.com", "--register-ttl", "5"});
  ASSERT_TRUE(named.config) << named.message;
  EXPECT_STREQ(named.config->settings.register_prefix, "/gateways");
  EXPECT_STREQ(named.config->settings.register_address, "gw1.example.com");
  EXPECT_EQ(named.config->settings.register_ttl_s, 5u);
  const auto loopback = parse({"--listen", "127.0.0.1:7000", "--register-prefix", "/gateways"});
  ASSERT_TRUE(loopback.config) << loopback.message;

  for (const auto& [args, why] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--register-prefix", "gateways"}, "--register-prefix must start with '/'"},
           {{"--register-prefix", "/"}, "--register-prefix must start with '/'"},
           {{"--register-prefix", "/gateways", "--register-ttl", "1"}, "--register-ttl"},
           {{"--listen", "127.0.0.1:7000", "--register-address", "2001:db8::1"},
            "--register-address: expected HOST or HOST:PORT"},
       }) {
    const auto r = parse(args);
    EXPECT_EQ(r.exit_code, 2) << args[0];
    EXPECT_THAT(r.message, HasSubstr(why));
  }
}

}  // namespace
}  // namespace gatehouse::supervisor
