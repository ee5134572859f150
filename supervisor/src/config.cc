#include "gatehouse/supervisor/config.h"

#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/program_options.hpp>
#include <fstream>
#include <sstream>

#include "gatehouse/base/version.h"
#include "gatehouse/net/endpoint.h"
#include "gatehouse/supervisor/manual.h"
#include "gatehouse/supervisor/settings_table.h"

namespace gatehouse::supervisor {
namespace po = boost::program_options;

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

/// What `gatehouse --check` prints: the configuration the file and the flags
/// make, as a config file would say it (defaults marked), then the checks
/// that need more than the values.
ParseResult check(const po::variables_map& vm, const Config& c) {
  std::ostringstream out;
  out << "# gatehouse --check: the effective configuration\n";
  for (const Setting& s : settings_table()) {
    const std::string name = s.name;
    if (name == "listen") {
      for (std::size_t i = 0; i < c.listen.size(); ++i) {
        out << "listen = " << c.listen[i]
            << listener_options_text(c.settings, static_cast<std::uint32_t>(i)) << "\n";
      }
    } else if (name == "backend") {
      for (std::uint32_t i = 0; i < c.settings.backend_count; ++i) {
        out << "backend = " << c.settings.backends[i] << "\n";
      }
    } else if (name == "gateway-key") {
      for (std::uint32_t i = 0; i < c.settings.gateway_key_count; ++i) {
        out << "gateway-key = " << c.settings.gateway_keys[i] << "\n";
      }
      if (c.settings.gateway_key_count == 0) out << "gateway-key =   # default: none\n";
    } else {
      const po::variable_value& value = vm[name];
      out << name << " = " << text_of(value.value()) << (value.defaulted() ? "  # default" : "")
          << "\n";
    }
  }
  out << "# resolved: workers " << c.settings.workers << ", idle-spin-us "
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
    po::store(po::parse_command_line(argc, argv, all), vm);
    if (vm.count("config") != 0) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream file(path);
      if (!file) throw ConfigError("cannot read config file " + path);
      po::store(po::parse_config_file(file, all), vm);
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
    if (c.settings.max_connections < c.settings.workers) {
      // Each worker owns a range of the session table.
      throw ConfigError("--max-connections must be at least --workers (" +
                        std::to_string(c.settings.workers) + ")");
    }
    if (vm.count("check") != 0) return check(vm, c);
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
  return plan;
}

}  // namespace gatehouse::supervisor
