// The gateway's configuration: one config file (INI-style `key = value`,
// the same names as the flags) plus command-line flags, flags winning.
// Parsed and checked once, by the supervisor; a bad value fails the start
// with a message naming the setting. The children get the result through
// the segment's control block (gateway_segment.h). Each setting is a row of
// the settings table (settings_table.h), which drives all of this.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gatehouse/contract/gateway_segment.h"

namespace gatehouse::supervisor {

/// One line of the effective configuration: a setting's value as a config
/// file would say it, and where it came from ("file", "flag", "default",
/// "flag (overrides the file)", "file and flags" for a repeatable one).
/// A repeatable setting has a line per value.
struct EffectiveSetting {
  std::string name;
  std::string value;
  std::string origin;
};

struct Config {
  std::string instance;             ///< names the shm segment: gatehouse-<instance>
  std::vector<std::string> listen;  ///< host:port, [v6]:port
  bool reuse_port = false;          ///< SO_REUSEPORT: instances share the listen port
  std::string bin_dir;              ///< where gatehouse-frontend & co. live
  std::string ready_file;           ///< if set: written once listening (for scripts/tests)
  std::string metrics_listen;       ///< Prometheus endpoint, host:port
  std::string admin_socket;         ///< as given; admin_socket_path() is where it is
  std::uint32_t restart_backoff_max_ms = 5000;  ///< ceiling of the crash-loop backoff
  std::uint32_t hang_timeout_ms = 3000;         ///< a child silent this long is killed
  std::uint32_t drain_wait_ms = 0;      ///< a drain lets sessions end on their own this long
  bool login_any_allow_public = false;  ///< `login = any` may serve a non-loopback listener
  Settings settings{};
  /// What the values above came from (gatehousectl config, --check).
  std::vector<EffectiveSetting> effective;
};

/// Where gatehousectl's socket is (admin_server.h): admin-socket, or by
/// default admin::default_socket(instance).
std::string admin_socket_path(const Config& config);

/// The processes of each role as resolved ("workers 4, frontends 2, bridges
/// 1"): --check's and the start line's.
std::string processes_text(const Settings& settings);

/// The effective configuration as `name = value  # origin` lines.
std::vector<std::string> effective_text(const Config& config);

/// The result of parsing: a config, or text to print and an exit code
/// (--help, --version, errors).
struct ParseResult {
  std::optional<Config> config;
  std::string message;
  int exit_code = 0;
};

ParseResult parse_config(int argc, const char* const* argv);

/// What a reload (SIGHUP) does with the configuration read again: the
/// settings that can change while the gateway runs are taken from `fresh`
/// (the workers take them as they are replaced, the frontend and the
/// supervisor at once); the others keep their running values until a
/// restart.
struct ReloadPlan {
  Config config;                          ///< what to run with from now on
  std::vector<std::string> applied;       ///< "rpm-limit 200 -> 100", ...
  std::vector<std::string> need_restart;  ///< changed, kept: "workers", ...
};
ReloadPlan plan_reload(const Config& running, const Config& fresh);

/// The first listener that is not loopback when the login provider is
/// `any`; "" otherwise. `any` proves nothing (docs/security.md): the
/// supervisor refuses to start (and a reload to switch to it) with such a
/// listener unless login_any_allow_public, and warns when it is allowed.
std::string any_login_public_listener(const Config& config);

}  // namespace gatehouse::supervisor
