// gatehouse: the supervisor, the one process an operator starts.
#include <cstdio>
#include <string>
#include <vector>

#include "gatehouse/base/log.h"
#include "gatehouse/supervisor/config.h"
#include "gatehouse/supervisor/keygen.h"
#include "gatehouse/supervisor/supervisor.h"
#include "gatehouse/supervisor/token_commands.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "keygen") {
    const auto result =
        gatehouse::supervisor::keygen_command(std::vector<std::string>(argv + 2, argv + argc));
    std::fputs(result.output.c_str(), result.exit_code == 0 ? stdout : stderr);
    return result.exit_code;
  }
  if (const auto code = gatehouse::supervisor::run_token_command(argc, argv)) return *code;
  auto parsed = gatehouse::supervisor::parse_config(argc, argv);
  if (!parsed.config) {
    std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  gatehouse::init_logging(
      "supervisor", static_cast<spdlog::level::level_enum>(parsed.config->settings.log_level));
  // Kept to read the configuration again on SIGHUP.
  std::vector<std::string> args(argv, argv + argc);
  gatehouse::supervisor::Supervisor supervisor(std::move(*parsed.config), std::move(args));
  return supervisor.run();
}
