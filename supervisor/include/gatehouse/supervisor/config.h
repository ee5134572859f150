// The gateway's configuration: one config file (INI-style `key = value`,
// the same names as the flags) plus command-line flags, flags winning.
// Parsed and checked once, by the supervisor; a bad value fails the start
// with a message naming the setting. The children get the result through
// the segment's control block (gateway_segment.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gatehouse/common/gateway_segment.h"

namespace gatehouse::supervisor {

struct Config {
  std::string instance;             ///< names the shm segment: gatehouse-<instance>
  std::vector<std::string> listen;  ///< host:port, [v6]:port
  bool reuse_port = false;          ///< SO_REUSEPORT: instances share the listen port
  std::string bin_dir;              ///< where gatehouse-frontend & co. live
  std::string ready_file;           ///< if set: written once listening (for scripts/tests)
  std::string metrics_listen;       ///< Prometheus endpoint, host:port
  std::uint32_t restart_backoff_max_ms = 5000;  ///< ceiling of the crash-loop backoff
  std::uint32_t hang_timeout_ms = 3000;         ///< a child silent this long is killed
  std::uint32_t drain_wait_ms = 0;  ///< a drain lets sessions end on their own this long
  Settings settings{};
};

/// The result of parsing: a config, or text to print and an exit code
/// (--help, --version, errors).
struct ParseResult {
  std::optional<Config> config;
  std::string message;
  int exit_code = 0;
};

ParseResult parse_config(int argc, const char* const* argv);

}  // namespace gatehouse::supervisor
