// Logging for every Gatehouse process: spdlog to stderr, or to journald
// with structured fields under systemd; one line per event, the process
// name in each line.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace gatehouse {

/// Sets the default logger: "<time> <level> [<process>] <message>" to
/// stderr; when stderr is the journal (stderr_is_journal()), each line goes
/// to journald natively instead, as "<level> [<process>] <message>" with its
/// priority (`journalctl -p err`), GATEHOUSE_PROCESS=<process> and one
/// GATEHOUSE_<KEY> field per key=value word of the message (log_fields()).
void init_logging(const std::string& process, spdlog::level::level_enum level);

/// True when systemd connected stderr to the journal: JOURNAL_STREAM names
/// its device and inode (children inherit both).
bool stderr_is_journal();

}  // namespace gatehouse
