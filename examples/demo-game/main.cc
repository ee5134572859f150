// gatehouse-demo-game: the demo game service (see README.md and
// gatehouse/game/demo_game.h). Parses flags, runs a GameServer with the
// DemoGameHandler until SIGINT/SIGTERM, then shuts it down.
//
// Exit status: 0 after a signal, 1 when the server cannot start, 2 on a usage
// error.
#include <signal.h>

#include <chrono>
#include <csignal>
#include <exception>
#include <iostream>
#include <string>
#include <thread>

#include <boost/program_options.hpp>

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
  int exit_status = -1;
};

Parsed parse_options(int argc, char** argv) {
  Parsed parsed;
  std::string numbering;
  po::options_description description("gatehouse-demo-game: the demo gonet2 game service");
  description.add_options()("help", "show this help")(
      "listen", po::value(&parsed.server.address)->default_value("127.0.0.1:50051"),
      "address to serve GameService on (host:port; port 0 picks one)")(
      "numbering", po::value(&numbering)->default_value("gonet2"),
      "Game.FrameType numbering: gonet2 (Kick=1, Ping=2) or later (Kick=2, Ping=3)")(
      "threads", po::value(&parsed.server.threads)->default_value(parsed.server.threads),
      "threads serving the calls (the handler runs on them)");
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
    const std::string address = parsed.server.address;
    gatehouse::game::GameServer server(handler, std::move(parsed.server));
    std::cerr << "gatehouse-demo-game: listening on " << address.substr(0, address.rfind(':'))
              << ':' << server.port() << " (numbering "
              << gatehouse::game::to_string(server.numbering()) << ")" << std::endl;
    while (g_stop == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::cerr << "gatehouse-demo-game: shutting down" << std::endl;
    server.shutdown();
  } catch (const std::exception& e) {
    std::cerr << "gatehouse-demo-game: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
