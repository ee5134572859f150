// Logging for every Gatehouse process: spdlog to stderr (journald under
// systemd), one line per event, the process name in each line.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace gatehouse {

/// Sets the default logger: "<time> <level> [<process>] <message>".
void init_logging(const std::string& process, spdlog::level::level_enum level);

}  // namespace gatehouse
