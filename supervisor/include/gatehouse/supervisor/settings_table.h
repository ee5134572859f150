// The gateway's settings, described once. Each row says a setting's name
// (flag and config-file key alike), its type, default and help, whether a
// reload (SIGHUP) applies it live or it needs a restart, and where its value
// goes in Config. Everything that lists settings derives from this table:
// parse_config() (Boost.program_options registration, --help, --check), the
// reload plan (plan_reload()) and the example configuration
// (`gatehouse --print-example-config`, checked in as examples/gatehouse.conf).
// The rows and their order (which is the order of --help, of the example and
// of the reload log) are in settings_table.cc.
#pragma once

#include <span>
#include <string>

#include "gatehouse/supervisor/config.h"

namespace boost::program_options {
class variable_value;
}

namespace gatehouse::supervisor {

/// The --help section a setting is listed under (the example's too).
enum class Section { kGeneral, kClients, kGameServices, kProcesses };

/// How program_options reads a setting.
enum class Kind {
  kString,
  kStrings,  ///< repeatable; the flags' and the file's values add up
  kBool,     ///< `--name` alone means true
  kUint32,
  kInt32,
  kUint64,
  kSeconds,  ///< a decimal number of seconds, kept in milliseconds
};

/// What a reload does with a changed value.
enum class OnReload {
  kLive,     ///< applied: the frontend and the supervisor at once, workers as they are replaced
  kRestart,  ///< named in a warning; the running value stays until a restart
};

struct Setting {
  const char* name;
  Section section;
  Kind kind;
  /// As a config file would say it; "" for a string that is not set.
  const char* default_text;
  OnReload on_reload;
  const char* help;
  /// Numbers: the accepted range (out of it: "--name = v is out of range [lo, hi]").
  double lo = 0;
  double hi = 0;
  /// Parses and checks the value into `config`; throws naming the setting.
  void (*read)(const Setting& self, const boost::program_options::variable_value& value,
               Config& config) = nullptr;
  /// The effective value as text, what a reload compares (milliseconds for
  /// kSeconds). Live settings also have `take`.
  std::string (*value)(const Config& config) = nullptr;
  /// Copies the effective value from `from` (a reload applying it live).
  void (*take)(Config& to, const Config& from) = nullptr;
  /// When set, the reload plan of this row instead of comparing `value`
  /// (a setting that is partly live, or changes in two parts).
  void (*plan)(const Config& running, const Config& fresh, ReloadPlan& plan) = nullptr;
  /// Said instead of the "live" or "restart" that `on_reload` implies.
  const char* reload_note = nullptr;
  /// The example configuration's value where the default is not what a
  /// production gateway should run with (login: `any` proves nothing).
  const char* example_text = nullptr;
};

/// Every setting, in the order of --help.
std::span<const Setting> settings_table();

const char* section_title(Section section);

/// What a reload does with the setting: "live", "restart" or the row's note.
std::string reload_text(const Setting& setting);

/// The help text with what a reload does with the setting.
std::string help_text(const Setting& setting);

/// The name a reload's log gives a changed value: "read-timeout-ms" for a
/// kSeconds setting (its values are milliseconds), the setting's name
/// otherwise.
std::string plan_name(const Setting& setting);

/// Listener `i`'s options as --listen says them: ",crypto=any", and
/// ",proxy=v2,proxy-from=10.0.0.0/8+::1/128" when it takes PROXY headers.
std::string listener_options_text(const Settings& settings, std::uint32_t i);
/// Backend line `i` as --backend says it: "[batch:]HOST:PORT[,service=NAME]".
std::string backend_line_text(const Settings& settings, std::uint32_t i);
/// examples/gatehouse.conf: every setting with its help and default (or its
/// example_text, the default named beside it).
std::string example_config();

}  // namespace gatehouse::supervisor
