// gatehouse-bench: a load generator for the gateway.
//
//   gatehouse-bench --connections 1000 --window 16 --crypto modern --gateway-key KEY.pub
//                   --rss-tree <supervisor pid> 127.0.0.1:8888
//   gatehouse-bench --transport wss --tls-ca cert.pem --tls-name localhost 127.0.0.1:8443
//
// Opens the connections, runs the key exchange asked for (--crypto clear: none,
// legacy: get_seed_req + DH + RC4, the same as --encrypt; modern:
// key_exchange2_req, X25519 + an AEAD, the gateway proving the key pinned
// with --gateway-key, docs/protocol-modern.md), logs them in, runs verified
// echo traffic through the demo game service (or holds them idle with --idle)
// and prints one JSON summary line on stdout; progress and error details go
// to stderr.
// Exit status: 0 = no errors, 1 = errors were counted, 2 = bad usage or the
// run could not start.
#include <boost/program_options.hpp>
#include <chrono>

#include <cstdint>
#include <exception>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gatehouse/bench/load.h"
#include "gatehouse/bench/process_memory.h"
#include "gatehouse/crypto/gateway_key_file.h"
#include "gatehouse/crypto/modern_crypto.h"
#include "gatehouse/net/endpoint.h"
#include "gatehouse/token/key_files.h"
#include "gatehouse/token/signed_token.h"

namespace po = boost::program_options;
namespace gb = gatehouse::bench;

namespace {

constexpr int kExitErrors = 1;
constexpr int kExitUsage = 2;

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void parse_endpoint(const std::string& endpoint, gb::LoadOptions& o) {
  try {
    const gatehouse::Endpoint e = gatehouse::parse_endpoint(endpoint);
    o.host = e.host;
    o.port = e.port;
  } catch (const std::invalid_argument& bad) {
    throw UsageError(bad.what());
  }
}

std::vector<std::string> split_commas(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& v : values) {
    std::istringstream in(v);
    for (std::string item; std::getline(in, item, ',');) {
      if (!item.empty()) out.push_back(item);
    }
  }
  return out;
}

std::vector<pid_t> parse_pids(const std::vector<std::string>& values, const char* flag) {
  std::vector<pid_t> out;
  for (const auto& item : split_commas(values)) {
    std::size_t used = 0;
    long pid = 0;
    try {
      pid = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || pid <= 0) {
      throw UsageError(std::string("--") + flag + ": bad pid '" + item + "'");
    }
    out.push_back(static_cast<pid_t>(pid));
  }
  return out;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError(message);
}

po::options_description describe_options() {
  po::options_description d(
      "Usage: gatehouse-bench [options] HOST:PORT\n\n"
      "Load generator for the gatehouse gateway. Each connection connects, optionally runs\n"
      "a key exchange (--crypto legacy: DH + RC4; modern: X25519 + ChaCha20-Poly1305),\n"
      "logs in (proto 10, open_udid <udid-prefix><i>, expects 11), then sends 1001\n"
      "proto_ping_req through the demo game service and verifies every 1002 reply\n"
      "(content and order); the round trip of each is recorded.\n"
      "Start the gateway with --rpm-limit 0 (the default 200 frames a minute kicks any\n"
      "real load) and --max-connections above --connections.\n\n"
      "Output: one JSON line on stdout; progress and errors on stderr.\n"
      "Exit status: 0 no errors, 1 errors counted (connect, login, closed, bad_reply,\n"
      "timeout), 2 bad usage or the run could not start.\n\nOptions",
      /*line_length=*/100, /*min_description_length=*/50);
  // clang-format off
  d.add_options()
    ("help,h", "print this help and exit")
    ("connections,c", po::value<std::uint32_t>()->default_value(100),
     "concurrent connections")
    ("transport", po::value<std::string>()->default_value("tcp"),
     "tcp; kcp (KCP over UDP to the same HOST:PORT: a gateway listening with "
     "transport=kcp or tcp+kcp, or gonet2's agent; docs/kcp.md); tls, ws or wss (a listener "
     "with that transport; docs/websocket.md)")
    ("tls-ca", po::value<std::string>()->value_name("FILE"),
     "tls, wss: the CA certificates (PEM) the gateway's certificate must chain to (default: "
     "the system's)")
    ("tls-name", po::value<std::string>()->value_name("NAME"),
     "tls, wss: the name the gateway's certificate must be valid for (default: HOST)")
    ("tls-insecure", po::bool_switch(), "tls, wss: no certificate check at all")
    ("crypto", po::value<std::string>()->default_value("clear"),
     "clear: no key exchange; legacy: get_seed_req, DH and RC4 both ways; modern: "
     "key_exchange2_req (version 2, the gateway proving the key of --gateway-key), X25519 and "
     "an AEAD both ways (docs/protocol-modern.md)")
    ("gateway-key", po::value<std::string>()->value_name("FILE"),
     "with --crypto modern (required): the gateway public key to pin (FILE.pub of "
     "`gatehouse keygen`; the first key of the file)")
    ("encrypt", po::bool_switch(), "the same as --crypto legacy")
    ("aead", po::value<std::string>()->default_value("chacha20-poly1305"),
     "with --crypto modern: the AEAD to ask for, chacha20-poly1305 or aes-256-gcm (the "
     "gateway falls back to chacha20-poly1305 without AES-NI)")
    ("window,w", po::value<std::uint32_t>()->default_value(1),
     "echo messages in flight per connection (1 = ping-pong); due messages go out in one write")
    ("body-bytes", po::value<std::uint32_t>()->default_value(64),
     "echo body size, 8..65529, modern 8..65513 (first 8 bytes: connection index, message "
     "number)")
    ("messages,m", po::value<std::uint64_t>(),
     "echo messages per connection; the run ends when all are answered (or at --duration, if "
     "given)")
    ("duration,d", po::value<double>()->default_value(10),
     "seconds of traffic (or of the --idle hold), counted once every connection is logged in")
    ("connect-rate", po::value<double>()->default_value(2000),
     "new connections per second during the ramp")
    ("timeout", po::value<double>()->default_value(5),
     "seconds allowed for a connect, a login, and each echo or heartbeat reply")
    ("heartbeat", po::value<double>()->default_value(5),
     "send heart_beat_req (proto 0) after this many seconds without sending (the gateway "
     "closes connections silent for its read-timeout, 15 s)")
    ("idle", po::value<std::uint32_t>(),
     "open N logged-in connections, hold them for --duration with heartbeats only, then report "
     "(with --rss-*: gateway memory per connection)")
    ("threads", po::value<std::uint32_t>()->default_value(1),
     "event loops (threads); connection i runs on loop i % threads")
    ("source-addresses", po::value<std::vector<std::string>>()->composing(),
     "local addresses to connect from, round-robin, comma-separated or repeated (e.g. "
     "127.0.0.2,127.0.0.3: each allows ~28k connections to one gateway port)")
    ("udid-prefix", po::value<std::string>()->default_value("bench-"),
     "open_udid (and client_certificate, without --token-key) = prefix + connection index")
    ("token-key", po::value<std::string>(),
     "log in with signed tokens (gateway: login = signed:KEY.pub): mint one per connection "
     "with this secret key file (gatehouse token-keygen), connection i as user i + 1")
    ("token-audience", po::value<std::string>()->default_value(""),
     "the gateway's login-audience, for --token-key")
    ("rss-pids", po::value<std::vector<std::string>>()->composing(),
     "the gateway's processes, for its memory and CPU time: these pids (comma-separated or "
     "repeated)")
    ("rss-tree", po::value<std::vector<std::string>>()->composing(),
     "the gateway's processes: this pid and all its descendants (pass the supervisor's pid)")
    ("rss-pattern", po::value<std::string>(),
     "the gateway's processes: every process whose /proc/<pid>/comm starts with this (e.g. "
     "gatehouse); beware other gateways on the same machine")
    ("quiet,q", po::bool_switch(), "no progress lines on stderr");
  // clang-format on
  return d;
}

struct Parsed {
  gb::LoadOptions load;
  gb::ProcessSelection rss;
};

std::optional<Parsed> parse_args(int argc, char** argv) {
  const po::options_description visible = describe_options();
  po::options_description all = visible;
  all.add_options()("endpoint", po::value<std::string>());
  po::positional_options_description positional;
  positional.add("endpoint", 1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help") != 0) {
    std::cout << visible << "\n";
    return std::nullopt;
  }

  Parsed p;
  gb::LoadOptions& o = p.load;
  require(vm.count("endpoint") != 0, "missing HOST:PORT (see --help)");
  parse_endpoint(vm["endpoint"].as<std::string>(), o);
  o.connections = vm["connections"].as<std::uint32_t>();
  const std::string& transport = vm["transport"].as<std::string>();
  const auto parsed_transport = gb::parse_transport(transport);
  require(parsed_transport.has_value(),
          "--transport must be tcp, kcp, tls, ws or wss, not '" + transport + "'");
  o.transport = *parsed_transport;
  const bool tls = o.transport == gb::Transport::kTls || o.transport == gb::Transport::kWss;
  require(tls || (vm.count("tls-ca") == 0 && vm.count("tls-name") == 0 &&
                  !vm["tls-insecure"].as<bool>()),
          "--tls-ca, --tls-name and --tls-insecure are for --transport tls or wss");
  if (vm.count("tls-ca") != 0) o.tls_ca_file = vm["tls-ca"].as<std::string>();
  if (vm.count("tls-name") != 0) o.tls_name = vm["tls-name"].as<std::string>();
  o.tls_insecure = vm["tls-insecure"].as<bool>();
  const std::string& crypto = vm["crypto"].as<std::string>();
  const auto parsed_crypto = gb::parse_crypto(crypto);
  require(parsed_crypto.has_value(),
          "--crypto must be clear, legacy or modern, not '" + crypto + "'");
  o.crypto = *parsed_crypto;
  if (vm["encrypt"].as<bool>()) {
    require(vm["crypto"].defaulted() || o.crypto == gb::Crypto::kLegacy,
            "--encrypt is --crypto legacy: it conflicts with --crypto " + crypto);
    o.crypto = gb::Crypto::kLegacy;
  }
  const std::string& aead_name = vm["aead"].as<std::string>();
  const auto aead = gatehouse::modern::aead_from_name(aead_name);
  require(aead.has_value(), "--aead must be chacha20-poly1305 or aes-256-gcm");
  require(vm["aead"].defaulted() || o.crypto == gb::Crypto::kModern,
          "--aead is for --crypto modern");
  require(gatehouse::modern::available(*aead), "--aead " + aead_name + ": not available here");
  o.aead = static_cast<std::uint8_t>(*aead);
  o.window = vm["window"].as<std::uint32_t>();
  o.body_bytes = vm["body-bytes"].as<std::uint32_t>();
  o.duration_s = vm["duration"].as<double>();
  o.connect_rate = vm["connect-rate"].as<double>();
  o.timeout_s = vm["timeout"].as<double>();
  o.heartbeat_s = vm["heartbeat"].as<double>();
  o.threads = vm["threads"].as<std::uint32_t>();
  o.udid_prefix = vm["udid-prefix"].as<std::string>();
  o.progress = !vm["quiet"].as<bool>();
  if (vm.count("source-addresses") != 0) {
    o.source_addresses = split_commas(vm["source-addresses"].as<std::vector<std::string>>());
  }
  if (vm.count("messages") != 0) {
    o.messages = vm["messages"].as<std::uint64_t>();
    require(o.messages > 0, "--messages must be at least 1");
    // An explicit count runs to completion unless a duration was asked for too.
    if (vm["duration"].defaulted()) o.duration_s = 0;
  }
  if (vm.count("idle") != 0) {
    require(vm.count("messages") == 0, "--idle sends no echo traffic: drop --messages");
    o.idle = true;
    o.connections = vm["idle"].as<std::uint32_t>();
  }

  require(o.connections >= 1, "need at least one connection");
  if (vm.count("token-key") != 0) {
    // Minted before the ramp (an Ed25519 signature is tens of microseconds:
    // a second for 50k connections), valid for a day.
    const auto key = gatehouse::token::read_secret_key(vm["token-key"].as<std::string>());
    const auto expiry = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count() +
                        86400;
    o.tokens.reserve(o.connections);
    for (std::uint32_t i = 0; i < o.connections; ++i) {
      o.tokens.push_back(gatehouse::token::mint(key, static_cast<std::int32_t>(i + 1), expiry,
                                                vm["token-audience"].as<std::string>()));
    }
  }
  require(o.window >= 1 && o.window <= 1'000'000, "--window must be 1..1000000");
  const std::uint32_t max_body = gb::max_body_bytes(o.crypto);
  require(o.body_bytes >= gb::kMinBodyBytes && o.body_bytes <= max_body,
          "--body-bytes must be " + std::to_string(gb::kMinBodyBytes) + ".." +
              std::to_string(max_body) + " with --crypto " + gb::crypto_name(o.crypto));
  require(o.duration_s >= 0 && o.duration_s <= 1e6, "--duration must be 0..1000000 seconds");
  require(o.duration_s > 0 || o.messages > 0, "--duration must be > 0");
  require(o.connect_rate > 0, "--connect-rate must be > 0");
  require(o.timeout_s > 0 && o.timeout_s <= 1e6, "--timeout must be > 0");
  require(o.heartbeat_s > 0 && o.heartbeat_s <= 1e6, "--heartbeat must be > 0");
  require(o.threads >= 1 && o.threads <= 1024, "--threads must be 1..1024");
  require((vm.count("gateway-key") != 0) == (o.crypto == gb::Crypto::kModern),
          o.crypto == gb::Crypto::kModern
              ? "--crypto modern needs --gateway-key FILE: the gateway's public key to pin"
              : "--gateway-key is for --crypto modern");
  if (o.crypto == gb::Crypto::kModern) {
    try {
      o.gateway_key =
          gatehouse::modern::read_public_key_file(vm["gateway-key"].as<std::string>()).front();
    } catch (const std::runtime_error& e) {
      require(false, std::string("--gateway-key: ") + e.what());
    }
  }

  if (vm.count("rss-pids") != 0) {
    p.rss.pids = parse_pids(vm["rss-pids"].as<std::vector<std::string>>(), "rss-pids");
  }
  if (vm.count("rss-tree") != 0) {
    p.rss.trees = parse_pids(vm["rss-tree"].as<std::vector<std::string>>(), "rss-tree");
  }
  if (vm.count("rss-pattern") != 0) {
    p.rss.comm_prefix = vm["rss-pattern"].as<std::string>();
    require(!p.rss.comm_prefix.empty(), "--rss-pattern must not be empty");
  }
  return p;
}

void report_errors(const gb::LoadResult& r) {
  const gb::ErrorCounts& e = r.errors;
  if (e.total() == 0) return;
  std::cerr << "bench: " << e.total() << " errors: connect " << e.connect << ", login " << e.login
            << ", closed " << e.closed << ", bad_reply " << e.bad_reply << ", timeout " << e.timeout
            << "\n";
  for (const auto& s : r.error_samples) std::cerr << "bench:   " << s << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Parsed> parsed;
  try {
    parsed = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "gatehouse-bench: " << e.what() << "\n";
    return kExitUsage;
  }
  if (!parsed) return 0;  // --help

  gb::GatewayProbe probe;
  if (!parsed->rss.empty()) {
    probe.memory = [selection = parsed->rss]() -> std::optional<gb::MemorySample> {
      return gb::sample_memory(gb::resolve(selection));
    };
    probe.cpu_us = [selection = parsed->rss] { return gb::cpu_time_us(gb::resolve(selection)); };
  }
  try {
    const gb::LoadResult result = gb::run_load(parsed->load, probe, std::cerr);
    report_errors(result);
    std::cout << gb::to_json(parsed->load, result) << std::endl;
    return result.errors.total() > 0 ? kExitErrors : 0;
  } catch (const std::exception& e) {
    std::cerr << "gatehouse-bench: " << e.what() << "\n";
    return kExitUsage;
  }
}
