// Logging for every Gatehouse process: spdlog to stderr (journald under
// systemd), one line per event, the process name in each line.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace gatehouse {

/// Sets the default logger: "<time> <level> [<process>] <message>"; when
/// stderr is the journal (stderr_is_journal()), "<N><level> [<process>]
/// <message>" with N the syslog priority, which journald keeps as the
/// line's priority.
void init_logging(const std::string& process, spdlog::level::level_enum level);

/// True when systemd connected stderr to the journal: JOURNAL_STREAM names
/// its device and inode (children inherit both).
bool stderr_is_journal();

}  // namespace gatehouse
