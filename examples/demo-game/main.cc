// gatehouse-demo-game: the demo game service (see README.md and
// gatehouse/game/demo_game.h). Parses flags, runs a GameServer with the
// DemoGameHandler until SIGINT/SIGTERM, then shuts it down. With --flood it
// is also a game that outruns the gateway (tools/bench/game_flood.py). Unless
// --no-auth, the same port also serves gatehouse.auth.Auth (DemoAuth,
// gatehouse/game/demo_auth.h): the gateway's `login = auth:HOST:PORT`.
//
// Exit status: 0 after a signal, 1 when the server cannot start, 2 on a usage
// error.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>

#include "gatehouse/game/demo_auth.h"
#include "gatehouse/game/demo_game.h"
#include "gatehouse/game/game_server.h"

namespace {

namespace po = boost::program_options;
using gatehouse::game::FrameNumbering;

volatile std::sig_atomic_t g_stop = 0;

/// Only sets the flag; the main thread polls it (no gRPC call is
/// async-signal-safe).
extern "C" void on_stop_signal(int) {
  g_stop = 1;
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

/// The options, or the exit status when main must return at once.
struct Parsed {
  gatehouse::game::GameServerOptions server;
  std::uint32_t flood = 0;  ///< messages a second to every session
  std::uint32_t flood_bytes = 1000;
  bool auth = true;  ///< serve DemoAuth on the same port
  gatehouse::game::demo::DemoAuth::Options auth_options;
  int exit_status = -1;
};

/// The flood's message `n`: proto 1006, its number, padded to `bytes`.
std::vector<std::byte> flood_message(std::uint64_t n, std::uint32_t bytes) {
  std::vector<std::byte> m(std::max<std::size_t>(bytes, 2 + sizeof n));
  m[0] = std::byte{0x03};  // 1006, big-endian
  m[1] = std::byte{0xEE};
  for (std::size_t i = 0; i < sizeof n; ++i) m[2 + i] = static_cast<std::byte>(n >> (8 * i));
  return m;
}

/// Until a signal: every 10 ms, a hundredth of `per_second` messages to
/// every session, whether or not the gateway keeps up (what it does not
/// read waits in this process: max-queued-frames per session).
void flood(gatehouse::game::GameServer& server, std::uint32_t per_second, std::uint32_t bytes) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto report = start + std::chrono::seconds(1);
  std::uint64_t sent = 0;
  while (g_stop == 0) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    for (const auto due = static_cast<std::uint64_t>(elapsed * per_second); sent < due; ++sent) {
      server.broadcast(flood_message(sent, bytes));
    }
    if (Clock::now() >= report) {
      std::cerr << "gatehouse-demo-game: flood: " << sent << " messages to each of "
                << server.stream_count() << " sessions" << std::endl;
      report += std::chrono::seconds(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Parsed parse_options(int argc, char** argv) {
  Parsed parsed;
  std::string numbering;
  bool no_auth = false;
  bool auth_refuse_all = false;
  std::int64_t auth_delay_ms = 0;
  po::options_description description("gatehouse-demo-game: the demo gonet2 game service");
  description.add_options()("help", "show this help")(
      "listen", po::value(&parsed.server.address)->default_value("127.0.0.1:50051"),
      "address to serve GameService on (host:port; port 0 picks one)")(
      "numbering", po::value(&numbering)->default_value("gonet2"),
      "Game.FrameType numbering: gonet2 (Kick=1, Ping=2) or later (Kick=2, Ping=3)")(
      "threads", po::value(&parsed.server.threads)->default_value(parsed.server.threads),
      "threads serving the calls (the handler runs on them)")(
      "max-queued-frames",
      po::value(&parsed.server.max_queued_frames)->default_value(parsed.server.max_queued_frames),
      "frames queued per session (and unacknowledged per batched link) before it is cancelled")(
      "flood", po::value(&parsed.flood)->default_value(0),
      "a game that outruns the gateway: messages a second (proto 1006) to every session, "
      "0 = off; what the gateway does not take queues here")(
      "flood-bytes", po::value(&parsed.flood_bytes)->default_value(parsed.flood_bytes),
      "bytes of each flood message")(
      "auth", po::value(&parsed.auth)->default_value(true, "true")->implicit_value(true, "true"),
      "also serve gatehouse.auth.Auth (the demo user centre: credential NAME:PASSWORD, the "
      "first login of a NAME registers it) for the gateway's login = auth:HOST:PORT; "
      "--auth=false: do not")("no-auth", po::bool_switch(&no_auth),
                              "same as --auth=false (Auth calls: UNIMPLEMENTED)")(
      "auth-delay-ms", po::value(&auth_delay_ms)->default_value(0),
      "send every Auth reply this many ms late (a slow user centre; no thread waits)")(
      "auth-refuse-all", po::bool_switch(&auth_refuse_all), "refuse every login")(
      "auth-max-accounts",
      po::value(&parsed.auth_options.max_accounts)->default_value(parsed.auth_options.max_accounts),
      "accounts at most; a new name beyond them is refused");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, description), vm);
    po::notify(vm);
    if (vm.count("help") != 0) {
      std::cout << description << '\n';
      parsed.exit_status = 0;
      return parsed;
    }
    const auto value = gatehouse::game::parse_frame_numbering(numbering);
    if (!value) throw po::error("--numbering must be gonet2 or later, not '" + numbering + "'");
    parsed.server.numbering = *value;
    if (parsed.server.threads == 0) throw po::error("--threads must be at least 1");
    if (no_auth) parsed.auth = false;
    if (auth_delay_ms < 0 || auth_delay_ms > 3'600'000) {
      throw po::error("--auth-delay-ms must be 0..3600000");
    }
    parsed.auth_options.delay = std::chrono::milliseconds(auth_delay_ms);
    if (parsed.auth_options.max_accounts > 1'000'000'000) {
      throw po::error("--auth-max-accounts must be at most 1000000000");
    }
    if (auth_refuse_all)
      parsed.auth_options.mode = gatehouse::game::demo::DemoAuth::Mode::kRefuseAll;
  } catch (const po::error& e) {
    std::cerr << "gatehouse-demo-game: " << e.what() << "\n" << description << '\n';
    parsed.exit_status = 2;
  }
  return parsed;
}

}  // namespace

int main(int argc, char** argv) {
  Parsed parsed = parse_options(argc, argv);
  if (parsed.exit_status >= 0) return parsed.exit_status;
  install_signal_handlers();

  gatehouse::game::demo::DemoGameHandler handler(&std::cerr);
  try {
    // Before the server, which serves it: it must outlive the server.
    std::optional<gatehouse::game::demo::DemoAuth> auth;
    if (parsed.auth) {
      auth.emplace(parsed.auth_options, &std::cerr);
      parsed.server.services.push_back(auth->service());
    }
    const std::string address = parsed.server.address;
    gatehouse::game::GameServer server(handler, std::move(parsed.server));
    std::cerr << "gatehouse-demo-game: listening on " << address.substr(0, address.rfind(':'))
              << ':' << server.port() << " (numbering "
              << gatehouse::game::to_string(server.numbering()) << "; auth "
              << (auth ? "on" : "off") << ")" << std::endl;
    if (parsed.flood != 0) flood(server, parsed.flood, parsed.flood_bytes);
    while (g_stop == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::cerr << "gatehouse-demo-game: shutting down" << std::endl;
    server.shutdown();
  } catch (const std::exception& e) {
    std::cerr << "gatehouse-demo-game: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
