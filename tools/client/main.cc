// gatehouse-client: talk to a gateway from a shell.
//
//   gatehouse-client --modern --gateway-key run/gateway.key.pub --echo hello 127.0.0.1:8888
//
// Connects, optionally runs a key exchange (--modern or the legacy --encrypt), logs in, performs
// the actions in command-line order and prints one line per packet:
//   -> 1001 proto_ping_req "hello"      (sent)
//   <- 1002 proto_ping_ack "hello"      (received)
// Exit status: 0 on success, 1 on any failure (with a message on stderr).
#include <boost/program_options.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gatehouse/client/client.h"
#include "gatehouse/codec/byte_io.h"
#include "gatehouse/crypto/gateway_key_file.h"
#include "gatehouse/net/endpoint.h"

namespace po = boost::program_options;
namespace gc = gatehouse::client;
namespace proto = gatehouse::protocol;

namespace {

using Clock = std::chrono::steady_clock;

/// A usage or runtime failure: main prints it and exits 1.
class Failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Action {
  enum class Kind { kHeartbeat, kEcho, kSay, kKickMe } kind;
  std::string text;
};

struct Options {
  std::string host;
  std::uint16_t port = 0;
  bool encrypt = false;  ///< legacy
  bool modern = false;
  std::vector<gatehouse::modern::PublicKey> gateway_keys;  ///< pinned, in order of preference
  gatehouse::modern::Aead aead = gatehouse::modern::Aead::kChaCha20Poly1305;
  bool login = true;
  std::string udid = "demo-player";
  std::string token;
  std::vector<Action> actions;
  double listen_seconds = 0;
  gc::Duration timeout{5000};
  gc::TransportOptions transport;
};

gc::Duration seconds(double s, const char* what) {
  if (!(s >= 0) || s > 1e6) throw Failure(std::string("--") + what + " must be 0..1000000 seconds");
  return gc::Duration(static_cast<std::int64_t>(s * 1000));
}

void parse_endpoint(const std::string& endpoint, Options& o) {
  try {
    const gatehouse::Endpoint e = gatehouse::parse_endpoint(endpoint);
    o.host = e.host;
    o.port = e.port;
  } catch (const std::invalid_argument& bad) {
    throw Failure(bad.what());
  }
}

/// Parses the command line; nullopt after printing --help.
std::optional<Options> parse_options(int argc, char** argv) {
  po::options_description visible(
      "Usage: gatehouse-client [options] HOST:PORT\n"
      "Connects to a gateway, optionally runs a key exchange, logs in and performs\n"
      "the actions in the order given, printing each packet received as one line.\n\n"
      "Options");
  // clang-format off
  visible.add_options()
      ("help,h", "show this help")
      ("transport", po::value<std::string>()->value_name("NAME")->default_value("tcp"),
       "tcp; kcp (KCP over UDP to the same HOST:PORT, as a gateway listening with "
       "transport=kcp or tcp+kcp serves it; docs/kcp.md); tls; ws or wss (WebSocket, "
       "docs/websocket.md)")
      ("tls-ca", po::value<std::string>()->value_name("FILE"),
       "tls, wss: the CA certificates (PEM) the gateway's certificate must chain to "
       "(default: the system's)")
      ("tls-name", po::value<std::string>()->value_name("NAME"),
       "tls, wss: the name the certificate must carry (default: HOST)")
      ("tls-insecure", "tls, wss: do not check the gateway's certificate at all")
      ("ws-path", po::value<std::string>()->value_name("PATH")->default_value("/"),
       "ws, wss: the upgrade request's target")
      ("ws-origin", po::value<std::string>()->value_name("ORIGIN"),
       "ws, wss: the Origin header to send, as a browser page of ORIGIN would")
      ("modern", "run the modern key exchange first (version 2, key_exchange2_req/ack: X25519 + "
       "an AEAD, the gateway proving it holds a pinned key; docs/protocol-modern.md); needs "
       "--gateway-key")
      ("gateway-key", po::value<std::string>()->value_name("FILE"),
       "with --modern: the gateway public key(s) to pin, one hex key a line (FILE.pub of "
       "`gatehouse keygen --out FILE`); the first is named, then the next on a new connection "
       "if the gateway does not hold it")
      ("aead", po::value<std::string>()->value_name("NAME"),
       "with --modern: the AEAD to ask for, chacha20-poly1305 (default) or aes-256-gcm")
      ("encrypt", "run the legacy key exchange first (get_seed_req/ack, DH + RC4)")
      ("udid", po::value<std::string>()->value_name("ID"),
       "open_udid to log in with (default demo-player)")
      ("token", po::value<std::string>()->value_name("T"),
       "client_certificate to log in with: a token from `gatehouse token` (login = signed:) "
       "or of the token table (login = tokens:); default empty (login = any)")
      ("no-login", "do not log in (to see what the gateway does with a session that has not)")
      ("heartbeat", "action: send heart_beat_req and wait for the ack")
      ("echo", po::value<std::vector<std::string>>()->value_name("TEXT"),
       "action: send proto_ping_req TEXT and wait for the proto_ping_ack echo")
      ("say", po::value<std::vector<std::string>>()->value_name("TEXT"),
       "action: send chat say TEXT and wait (without failing) for the chat message it causes")
      ("kick-me", "action: ask the game to kick this session and wait for the gateway to close it")
      ("listen", po::value<double>()->value_name("SECONDS"),
       "after the actions, keep printing pushed packets for this long")
      ("timeout", po::value<double>()->value_name("SECONDS")->default_value(5.0),
       "how long to wait for connect and for each reply");
  // clang-format on
  po::options_description all;
  all.add(visible).add_options()("endpoint", po::value<std::string>(), "HOST:PORT");
  po::positional_options_description positional;
  positional.add("endpoint", 1);

  po::parsed_options parsed =
      po::command_line_parser(argc, argv).options(all).positional(positional).run();
  // Actions keep their command-line order and may repeat, so they are read
  // from the parsed list; everything else goes through the variables map.
  Options o;
  po::parsed_options settings(&all);
  for (const po::basic_option<char>& option : parsed.options) {
    const std::string& key = option.string_key;
    const std::string value = option.value.empty() ? std::string() : option.value.front();
    if (key == "heartbeat") {
      o.actions.push_back({Action::Kind::kHeartbeat, {}});
    } else if (key == "echo") {
      o.actions.push_back({Action::Kind::kEcho, value});
    } else if (key == "say") {
      o.actions.push_back({Action::Kind::kSay, value});
    } else if (key == "kick-me") {
      o.actions.push_back({Action::Kind::kKickMe, {}});
    } else {
      settings.options.push_back(option);
    }
  }
  po::variables_map vm;
  po::store(settings, vm);
  po::notify(vm);

  if (vm.count("help") != 0) {
    std::cout
        << visible << "\n"
        << "Actions (--heartbeat, --echo, --say, --kick-me) may repeat and run in order.\n"
        << "Lines printed: '-> ...' sent, '<- ...' received, 'connection closed by gateway'.\n"
        << "Exit status: 0 on success, 1 on failure.\n";
    return std::nullopt;
  }
  if (vm.count("endpoint") == 0) throw Failure("missing HOST:PORT (see --help)");
  parse_endpoint(vm["endpoint"].as<std::string>(), o);
  o.encrypt = vm.count("encrypt") != 0;
  o.modern = vm.count("modern") != 0;
  if (o.encrypt && o.modern) throw Failure("--encrypt and --modern: one key exchange only");
  if (o.modern != (vm.count("gateway-key") != 0)) {
    throw Failure(o.modern ? "--modern needs --gateway-key FILE: the gateway's public key to pin"
                           : "--gateway-key is for --modern");
  }
  if (o.modern) {
    try {
      o.gateway_keys = gatehouse::modern::read_public_key_file(vm["gateway-key"].as<std::string>());
    } catch (const std::runtime_error& e) {
      throw Failure(std::string("--gateway-key: ") + e.what());
    }
  }
  if (vm.count("aead") != 0) {
    const auto aead = gatehouse::modern::aead_from_name(vm["aead"].as<std::string>());
    if (!aead || !o.modern) {
      throw Failure("--aead takes chacha20-poly1305 or aes-256-gcm, with --modern");
    }
    if (!gatehouse::modern::available(*aead)) {
      throw Failure("--aead " + vm["aead"].as<std::string>() + ": not available on this CPU");
    }
    o.aead = *aead;
  }
  const auto transport = gc::parse_transport(vm["transport"].as<std::string>());
  if (!transport) throw Failure("--transport takes tcp, kcp, tls, ws or wss");
  o.transport.kind = *transport;
  if (vm.count("tls-ca") != 0) o.transport.tls_ca_file = vm["tls-ca"].as<std::string>();
  if (vm.count("tls-name") != 0) o.transport.tls_name = vm["tls-name"].as<std::string>();
  o.transport.tls_insecure = vm.count("tls-insecure") != 0;
  o.transport.ws_path = vm["ws-path"].as<std::string>();
  if (vm.count("ws-origin") != 0) o.transport.ws_origin = vm["ws-origin"].as<std::string>();
  o.login = vm.count("no-login") == 0;
  if (vm.count("udid") != 0) o.udid = vm["udid"].as<std::string>();
  if (vm.count("token") != 0) o.token = vm["token"].as<std::string>();
  if (vm.count("listen") != 0) {
    o.listen_seconds = vm["listen"].as<double>();
    seconds(o.listen_seconds, "listen");
  }
  o.timeout = seconds(vm["timeout"].as<double>(), "timeout");
  if (o.udid.size() > 65535 || o.token.size() > 65535) throw Failure("--udid/--token too long");
  return o;
}

void print_line(const std::string& line) {
  std::cout << line << std::endl;
}

class Session {
 public:
  explicit Session(const Options& options) : options_(options) {}

  /// Runs everything; returns the exit status.
  int run() {
    client_.connect(options_.host, options_.port, options_.timeout, options_.transport);
    if (options_.encrypt) exchange_keys();
    if (options_.modern) exchange_modern_keys();
    if (options_.login) log_in();
    for (const Action& action : options_.actions) {
      if (!perform(action)) return 0;  // kicked on request: done
    }
    if (options_.listen_seconds > 0) listen();
    return 0;
  }

 private:
  void send(std::int16_t proto, const std::vector<std::byte>& body) {
    print_line("-> " + gc::describe({proto, body}));
    if (!client_.send(proto, body)) connection_lost();
  }

  /// Prints packets as they arrive until one matches; nullopt on timeout.
  /// Throws Failure if the gateway closes the connection.
  std::optional<gc::Packet> await(const std::function<bool(const gc::Packet&)>& match) {
    const auto deadline = Clock::now() + options_.timeout;
    for (;;) {
      const auto left = std::chrono::ceil<gc::Duration>(deadline - Clock::now());
      auto packet = client_.receive(std::max(left, gc::Duration(0)));
      if (!packet) {
        if (client_.closed()) connection_lost();
        return std::nullopt;
      }
      print_line("<- " + gc::describe(*packet));
      if (match(*packet)) return packet;
    }
  }

  [[noreturn]] void connection_lost() {
    print_closed();
    throw Failure("the gateway closed the connection");
  }

  void print_closed() {
    std::string line = "connection closed by gateway";
    if (client_.close_error()) line += " (" + client_.close_error().message() + ")";
    print_line(line);
  }

  std::string waited() const {
    char text[32];
    std::snprintf(text, sizeof text, "%g s", static_cast<double>(options_.timeout.count()) / 1000);
    return text;
  }

  void exchange_keys() {
    print_line("-> 30 get_seed_req (legacy DH key exchange)");
    const auto keys = client_.key_exchange(options_.timeout);
    if (!keys) {
      if (client_.closed()) connection_lost();
      throw Failure("no get_seed_ack within " + waited());
    }
    print_line("<- 31 get_seed_ack: RC4 on, send_key=" + std::to_string(keys->send_key) +
               " receive_key=" + std::to_string(keys->receive_key));
  }

  /// Names the pinned keys in order: a gateway that does not hold one
  /// closes the connection (unknown_gateway_key), and the next is tried on a
  /// new connection. An ack that fails the proof throws (ClientError).
  void exchange_modern_keys() {
    namespace modern = gatehouse::modern;
    const auto& keys = options_.gateway_keys;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i > 0) {
        client_.close();
        client_.connect(options_.host, options_.port, options_.timeout, options_.transport);
      }
      print_line("-> 34 key_exchange2_req (X25519, gateway key id " +
                 modern::to_hex(modern::key_id_of(keys[i])) + ", asking for " +
                 std::string(modern::name_of(options_.aead)) + ")");
      if (client_.modern_key_exchange(keys[i], options_.timeout, options_.aead)) {
        print_line("<- 35 key_exchange2_ack: gateway key verified, " +
                   std::string(modern::name_of(*client_.aead())) + " on");
        return;
      }
      if (!client_.closed()) throw Failure("no key_exchange2_ack within " + waited());
      print_closed();
    }
    throw Failure(
        "the gateway closed the connection at the key exchange: it holds none of the pinned "
        "keys (its log says unknown_gateway_key) or its listener refuses the modern exchange");
  }

  void log_in() {
    std::vector<std::byte> body;
    proto::encode_login(gc::Client::make_login_request(options_.udid, options_.token), body);
    send(proto::kUserLoginReq, body);
    const auto reply = await([](const gc::Packet& p) {
      return p.proto == proto::kUserLoginSucceedAck || p.proto == proto::kUserLoginFaildAck;
    });
    if (!reply) throw Failure("no login reply within " + waited());
    if (reply->proto == proto::kUserLoginFaildAck) {
      throw Failure("login refused for udid '" + options_.udid + "'");
    }
    const auto uid = proto::parse_heartbeat(reply->body);  // a bare int32 body
    if (!uid) throw Failure("malformed login reply");
    uid_ = *uid;
  }

  /// False when the action ended the session as asked (kick-me).
  bool perform(const Action& action) {
    switch (action.kind) {
      case Action::Kind::kHeartbeat: {
        const std::int32_t id = ++heartbeat_id_;
        std::vector<std::byte> body;
        gatehouse::ByteWriter(body).i32(id);
        send(proto::kHeartBeatReq, body);
        const auto ack = await([](const gc::Packet& p) { return p.proto == proto::kHeartBeatAck; });
        if (!ack) throw Failure("no heart_beat_ack within " + waited());
        if (proto::parse_heartbeat(ack->body) != id) {
          throw Failure("heart_beat_ack does not carry id " + std::to_string(id));
        }
        return true;
      }
      case Action::Kind::kEcho: {
        const auto body = gc::to_bytes(action.text);
        send(gc::demo::kPingReq, body);
        const auto ack = await([](const gc::Packet& p) { return p.proto == gc::demo::kPingAck; });
        if (!ack) throw Failure("no proto_ping_ack within " + waited());
        if (ack->body != body) throw Failure("proto_ping_ack does not echo the ping");
        return true;
      }
      case Action::Kind::kSay: {
        send(gc::demo::kChatSay, gc::demo::encode_chat_say(action.text));
        const gc::demo::ChatMessage mine{uid_, action.text};
        const auto echo = await([&mine](const gc::Packet& p) {
          return p.proto == gc::demo::kChatMessage && gc::demo::parse_chat_message(p.body) == mine;
        });
        if (!echo) {
          std::cerr << "gatehouse-client: (no chat message back within " << waited() << ")\n";
        }
        return true;
      }
      case Action::Kind::kKickMe: {
        send(gc::demo::kKickMe, {});
        const auto deadline = Clock::now() + options_.timeout;
        while (Clock::now() < deadline) {
          const auto left = std::chrono::duration_cast<gc::Duration>(deadline - Clock::now());
          if (auto packet = client_.receive(left)) {
            print_line("<- " + gc::describe(*packet));
          } else if (client_.closed()) {
            print_closed();
            return false;
          }
        }
        throw Failure("still connected " + waited() + " after kick me");
      }
    }
    return true;
  }

  void listen() {
    const auto deadline =
        Clock::now() + std::chrono::duration_cast<gc::Duration>(
                           std::chrono::duration<double>(options_.listen_seconds));
    for (auto now = Clock::now(); now < deadline; now = Clock::now()) {
      const auto left = std::chrono::ceil<gc::Duration>(deadline - now);
      if (auto packet = client_.receive(left)) {
        print_line("<- " + gc::describe(*packet));
      } else if (client_.closed()) {
        connection_lost();
      }
    }
  }

  const Options& options_;
  gc::Client client_;
  std::int32_t uid_ = 0;
  std::int32_t heartbeat_id_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto options = parse_options(argc, argv);
    if (!options) return 0;
    return Session(*options).run();
  } catch (const po::error& e) {
    std::cerr << "gatehouse-client: " << e.what() << " (see --help)\n";
  } catch (const std::exception& e) {
    std::cerr << "gatehouse-client: " << e.what() << "\n";
  }
  return 1;
}
