// gatehousectl: an operator's commands to a running gateway, over its admin
// socket (admin_protocol.h; docs/operations.md). Exit status: 0 done, 1 the
// gateway answered with an error (say, a reload refused), 2 no answer (a
// bad command line, no gateway at the socket).
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <variant>

#include "gatehouse/supervisor/admin_protocol.h"

namespace {

namespace admin = gatehouse::supervisor::admin;

constexpr const char* kUsage =
    "usage: gatehousectl [--instance NAME | --socket PATH] [--timeout SECONDS] COMMAND [ARGS]\n"
    "\n"
    "  --instance NAME     the gateway instance (default main): its socket is\n"
    "                      /run/gatehouse/NAME/admin.sock\n"
    "  --socket PATH       the gateway's admin-socket, where it is set\n"
    "  --timeout SECONDS   how long to wait for the answer (default 120: a reload\n"
    "                      answers once every worker is replaced)\n"
    "\n"
    "commands:\n";

int usage_error(const std::string& why) {
  std::fprintf(stderr, "gatehousectl: %s\n%s%s", why.c_str(), kUsage, admin::usage().data());
  return 2;
}

int run(int argc, char** argv) {
  std::string instance = "main";
  std::string socket;
  long timeout_s = 120;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s%s", kUsage, admin::usage().data());
      return 0;
    }
    if (!arg.starts_with("--")) break;  // the command
    if (i + 1 == argc) return usage_error(std::string(arg) + " needs a value");
    const std::string value = argv[++i];
    if (arg == "--instance") {
      instance = value;
    } else if (arg == "--socket") {
      socket = value;
    } else if (arg == "--timeout") {
      try {
        timeout_s = std::stol(value);
      } catch (const std::exception&) {
        timeout_s = 0;
      }
      if (timeout_s <= 0) return usage_error("--timeout takes a number of seconds");
    } else {
      return usage_error("unknown option " + std::string(arg));
    }
  }
  if (i == argc) return usage_error("no command");
  // The command's words as the request line: the gateway parses it (and
  // says what is wrong with it).
  std::string line;
  for (; i < argc; ++i) line += (line.empty() ? "" : " ") + std::string(argv[i]);
  if (socket.empty()) socket = admin::default_socket(instance);

  const auto answer = admin::call(socket, line, std::chrono::seconds(timeout_s));
  if (const auto* why = std::get_if<std::string>(&answer)) {
    std::fprintf(stderr, "gatehousectl: %s\n", why->c_str());
    return 2;
  }
  const admin::Response& response = std::get<admin::Response>(answer);
  // An error's first line says why; the lines after it are its details.
  for (std::size_t n = 0; n < response.lines.size(); ++n) {
    const bool why = !response.ok && n == 0;
    std::fprintf(response.ok ? stdout : stderr, "%s%s\n", why ? "gatehousectl: " : "",
                 response.lines[n].c_str());
  }
  return response.ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // out of memory, say: no answer either
    std::fprintf(stderr, "gatehousectl: %s\n", e.what());
    return 2;
  }
}
