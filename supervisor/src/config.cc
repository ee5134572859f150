#include "gatehouse/supervisor/config.h"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/program_options.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "gatehouse/base/version.h"
#include "gatehouse/net/endpoint.h"
#include "gatehouse/supervisor/admin_protocol.h"
#include "gatehouse/supervisor/manual.h"
#include "gatehouse/supervisor/settings_table.h"

namespace gatehouse::supervisor {
namespace po = boost::program_options;

std::string processes_text(const Settings& settings) {
  return "workers " + std::to_string(settings.workers) + ", frontends " +
         std::to_string(settings.frontends) + ", bridges " + std::to_string(settings.bridges);
}

namespace {

using ConfigError = std::runtime_error;

/// Registers one row of the settings table with program_options; the default
/// is the row's text, so --help shows what the example config says.
void add_option(po::options_description& section, const Setting& s) {
  const std::string help = help_text(s);
  const std::string def = s.default_text;
  const po::value_semantic* semantic = nullptr;
  switch (s.kind) {
    case Kind::kString:
      semantic = po::value<std::string>()->default_value(def);
      break;
    case Kind::kStrings:
      semantic = po::value<std::vector<std::string>>()
                     ->default_value(std::vector<std::string>{def}, def)
                     ->composing();
      break;
    case Kind::kBool:
      semantic = po::value<bool>()->default_value(def == "true", def)->implicit_value(true, "true");
      break;
    case Kind::kUint32:
      semantic = po::value<std::uint32_t>()->default_value(
          static_cast<std::uint32_t>(std::stoul(def)), def);
      break;
    case Kind::kInt32:
      semantic = po::value<std::int32_t>()->default_value(std::stoi(def), def);
      break;
    case Kind::kUint64:
      semantic = po::value<std::uint64_t>()->default_value(std::stoull(def), def);
      break;
    case Kind::kSeconds:
      semantic = po::value<double>()->default_value(std::stod(def), def);
      break;
  }
  section.add_options()(s.name, semantic, help.c_str());
}

/// A setting's value as a config-file line would have it.
std::string text_of(const boost::any& value) {
  if (const auto* v = boost::any_cast<std::string>(&value)) return *v;
  if (const auto* v = boost::any_cast<bool>(&value)) return *v ? "true" : "false";
  if (const auto* v = boost::any_cast<double>(&value)) {
    std::ostringstream out;
    out << *v;
    return out.str();
  }
  if (const auto* v = boost::any_cast<std::uint32_t>(&value)) return std::to_string(*v);
  if (const auto* v = boost::any_cast<std::int32_t>(&value)) return std::to_string(*v);
  if (const auto* v = boost::any_cast<std::uint64_t>(&value)) return std::to_string(*v);
  return "?";
}

/// Where each setting's value came from, by name: the options each source
/// named.
struct Sources {
  std::set<std::string> flags;
  std::set<std::string> file;

  static std::set<std::string> named(const po::parsed_options& parsed) {
    std::set<std::string> names;
    for (const po::option& o : parsed.options) names.insert(o.string_key);
    return names;
  }
  std::string origin(const Setting& s) const {
    const bool flag = flags.contains(s.name);
    const bool in_file = file.contains(s.name);
    if (flag && in_file) {
      return s.kind == Kind::kStrings ? "file and flags" : "flag (overrides the file)";
    }
    return flag ? "flag" : in_file ? "file" : "default";
  }
};

/// The configuration the file and the flags make, as a config file would
/// say it, each value with its origin (Config::effective).
std::vector<EffectiveSetting> effective_settings(const po::variables_map& vm, const Config& c,
                                                 const Sources& sources) {
  std::vector<EffectiveSetting> out;
  for (const Setting& s : settings_table()) {
    const std::string name = s.name;
    const std::string origin = sources.origin(s);
    const auto add = [&](const std::string& value) { out.push_back({name, value, origin}); };
    if (name == "listen") {
      for (std::size_t i = 0; i < c.listen.size(); ++i) {
        add(c.listen[i] + listener_options_text(c.settings, static_cast<std::uint32_t>(i)));
      }
    } else if (name == "backend") {
      for (std::uint32_t i = 0; i < c.settings.backend_count; ++i)
        add(backend_line_text(c.settings, i));
    } else if (name == "route") {
      add(s.value(c));  // one line, the ranges comma-separated
    } else if (name == "gateway-key") {
      for (std::uint32_t i = 0; i < c.settings.gateway_key_count; ++i) {
        add(c.settings.gateway_keys[i]);
      }
      if (c.settings.gateway_key_count == 0) add("");
    } else if (name == "admin-socket") {
      add(admin_socket_path(c));  // its default names the instance
    } else {
      add(text_of(vm[name].value()));
    }
  }
  return out;
}

/// What `gatehouse --check` prints: the effective configuration, then the
/// checks that need more than the values.
ParseResult check(const Config& c) {
  std::ostringstream out;
  out << "# gatehouse --check: the effective configuration (each value's origin: the file, a "
         "flag or the default)\n";
  for (const std::string& line : effective_text(c)) out << line << "\n";
  out << "# resolved: " << processes_text(c.settings) << ", idle-spin-us "
      << c.settings.idle_spin_us << ", bin-dir " << c.bin_dir << "\n";
  ParseResult result;
  for (const char* binary : {"gatehouse-frontend", "gatehouse-worker", "gatehouse-bridge"}) {
    const std::string path = c.bin_dir + "/" + binary;
    if (::access(path.c_str(), X_OK) != 0) {
      out << "# gatehouse: " << path << " is missing or not executable (--bin-dir)\n";
      result.exit_code = 1;
    }
  }
  if (result.exit_code == 0) out << "# gatehouse: configuration ok\n";
  result.message = out.str();
  return result;
}

}  // namespace

ParseResult parse_config(int argc, const char* const* argv) {
  // Commands first, then every setting in its section.
  po::options_description general(section_title(Section::kGeneral));
  general.add_options()("help,h", "print this help and exit")(
      "version", "print the version and the source revision, and exit")(
      "check",
      "check the configuration and that the child binaries are there, print the "
      "effective settings, and exit (0: ok)")(
      "print-example-config",
      "print a config file with every setting, its help and its default "
      "(examples/gatehouse.conf), and exit")("config,c", po::value<std::string>(),
                                             "config file (INI: key = value, keys as below)")(
      "print-manual", po::value<int>(),
      "print the manual page gatehouse(8) (8) or gatehouse.conf(5) (5) as roff, and exit");
  po::options_description clients(section_title(Section::kClients));
  po::options_description backends(section_title(Section::kGameServices));
  po::options_description processes(section_title(Section::kProcesses));
  for (const Setting& s : settings_table()) {
    switch (s.section) {
      case Section::kGeneral:
        add_option(general, s);
        break;
      case Section::kClients:
        add_option(clients, s);
        break;
      case Section::kGameServices:
        add_option(backends, s);
        break;
      case Section::kProcesses:
        add_option(processes, s);
        break;
    }
  }
  po::options_description all("Usage: gatehouse [options]\n\nGatehouse game gateway supervisor");
  all.add(general).add(clients).add(backends).add(processes);

  ParseResult result;
  try {
    po::variables_map vm;
    Sources sources;
    const po::parsed_options flags = po::parse_command_line(argc, argv, all);
    sources.flags = Sources::named(flags);
    po::store(flags, vm);
    if (vm.count("config") != 0) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream file(path);
      if (!file) throw ConfigError("cannot read config file " + path);
      const po::parsed_options in_file = po::parse_config_file(file, all);
      sources.file = Sources::named(in_file);
      po::store(in_file, vm);
    }
    po::notify(vm);
    if (vm.count("help") != 0) {
      std::ostringstream text;
      text << all;
      result.message = text.str();
      return result;
    }
    if (vm.count("print-example-config") != 0) {
      result.message = example_config();
      return result;
    }
    if (vm.count("version") != 0) {
      result.message =
          "gatehouse " + std::string(version()) + " (" + std::string(revision()) + ")\n";
      return result;
    }
    if (vm.count("print-manual") != 0) {
      result.message = manual_page(vm["print-manual"].as<int>());
      if (result.message.empty()) throw ConfigError("--print-manual takes 8 or 5");
      return result;
    }

    Config c;
    for (const Setting& s : settings_table()) s.read(s, vm[s.name], c);
    if (c.settings.max_connections < c.settings.workers * c.settings.frontends) {
      // Each worker owns a range of the session table, one part per frontend.
      throw ConfigError("--max-connections must be at least --workers x --frontends (" +
                        std::to_string(c.settings.workers * c.settings.frontends) + ")");
    }
    c.effective = effective_settings(vm, c, sources);
    if (vm.count("check") != 0) return check(c);
    result.config = std::move(c);
  } catch (const std::exception& e) {
    result.message = std::string("gatehouse: ") + e.what() + "\n(see gatehouse --help)\n";
    result.exit_code = 2;
  }
  return result;
}

std::string any_login_public_listener(const Config& config) {
  if (config.settings.login_mode != LoginMode::kAcceptAny) return {};
  for (const std::string& listener : config.listen) {
    const Endpoint endpoint = parse_endpoint(listener, /*allow_port_zero=*/true);
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(endpoint.host, ec);
    if (ec ? endpoint.host != "localhost" : !address.is_loopback()) return listener;
  }
  return {};
}

std::string admin_socket_path(const Config& config) {
  return config.admin_socket.empty() ? admin::default_socket(config.instance) : config.admin_socket;
}

std::vector<std::string> effective_text(const Config& config) {
  std::vector<std::string> lines;
  for (const EffectiveSetting& e : config.effective) {
    lines.push_back(e.name + " = " + e.value + "  # " + e.origin);
  }
  return lines;
}

/// The running configuration's lines, with the fresh one's for what the
/// reload took: what did not change, and the live settings applied. A
/// setting that needs a restart keeps its running lines, marked.
std::vector<EffectiveSetting> reloaded_effective(const Config& running, const Config& fresh,
                                                 const std::vector<std::string>& need_restart) {
  std::vector<EffectiveSetting> out;
  for (const EffectiveSetting& e : fresh.effective) {
    if (std::find(need_restart.begin(), need_restart.end(), e.name) == need_restart.end()) {
      out.push_back(e);
      continue;
    }
    if (!out.empty() && out.back().name == e.name) continue;  // its running lines are in
    for (const EffectiveSetting& kept : running.effective) {
      if (kept.name != e.name) continue;
      out.push_back(kept);
      out.back().origin += "; the configuration read again changes it: applies at a restart";
    }
  }
  return out;
}

ReloadPlan plan_reload(const Config& running, const Config& fresh) {
  ReloadPlan plan{running, {}, {}};
  for (const Setting& s : settings_table()) {
    if (s.plan != nullptr) {
      s.plan(running, fresh, plan);
      continue;
    }
    const std::string now = s.value(plan.config);
    const std::string asked = s.value(fresh);
    if (now == asked) continue;
    if (s.on_reload == OnReload::kLive) {
      std::string change = plan_name(s);
      change.append(" ").append(now).append(" -> ").append(asked);
      plan.applied.push_back(std::move(change));
      s.take(plan.config, fresh);
    } else {
      plan.need_restart.emplace_back(s.name);
    }
  }
  plan.config.effective = reloaded_effective(running, fresh, plan.need_restart);
  return plan;
}

}  // namespace gatehouse::supervisor
