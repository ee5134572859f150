#include "gatehouse/supervisor/config.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <boost/program_options.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "gatehouse/base/log.h"
#include "gatehouse/net/endpoint.h"

namespace gatehouse::supervisor {
namespace po = boost::program_options;

namespace {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class T>
T in_range(const po::variables_map& vm, const char* name, T lo, T hi) {
  const T v = vm[name].as<T>();
  if (v < lo || v > hi) {
    throw ConfigError("--" + std::string(name) + " = " + std::to_string(v) + " is out of range [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

void copy_string(char* out, std::size_t size, const std::string& value, const char* name) {
  if (value.size() >= size) {
    throw ConfigError("--" + std::string(name) + " is longer than " + std::to_string(size - 1) +
                      " characters");
  }
  std::memset(out, 0, size);
  std::memcpy(out, value.data(), value.size());
}

/// Throws naming the setting when `address` is not HOST:PORT / [V6]:PORT.
void check_endpoint(const std::string& address, const char* name) {
  try {
    parse_endpoint(address, /*allow_port_zero=*/true);
  } catch (const std::invalid_argument& e) {
    throw ConfigError("--" + std::string(name) + ": " + e.what());
  }
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
  for (std::size_t i = 0; i < c.listen.size(); ++i) {
    out << "listen = " << c.listen[i]
        << ",crypto=" << crypto_modes_text(c.settings.listener_crypto[i]) << "\n";
  }
  for (std::uint32_t i = 0; i < c.settings.backend_count; ++i) {
    out << "backend = " << c.settings.backends[i] << "\n";
  }
  for (const auto& [name, value] : vm) {
    if (name == "listen" || name == "backend" || name == "check" || name == "config") continue;
    out << name << " = " << text_of(value.value()) << (value.defaulted() ? "  # default" : "")
        << "\n";
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

std::string own_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

}  // namespace

ParseResult parse_config(int argc, const char* const* argv) {
  // clang-format off
  po::options_description general("General");
  general.add_options()
      ("help,h", "print this help and exit")
      ("check", "check the configuration and that the child binaries are there, print the "
       "effective settings, and exit (0: ok)")
      ("config,c", po::value<std::string>(), "config file (INI: key = value, keys as below)")
      ("instance", po::value<std::string>()->default_value("main"),
       "instance name; the shared-memory segment is /dev/shm/gatehouse-<instance>")
      ("log-level", po::value<std::string>()->default_value("info"),
       "trace, debug, info, warn, error")
      ("bin-dir", po::value<std::string>()->default_value(""),
       "directory of gatehouse-frontend/-worker/-bridge (default: next to this binary)")
      ("ready-file", po::value<std::string>()->default_value(""),
       "write 'listen=<addr>' and 'metrics=<addr>' lines here once serving")
      ("metrics-listen", po::value<std::string>()->default_value("127.0.0.1:9477"),
       "Prometheus /metrics endpoint host:port (loopback by default)");
  po::options_description clients("Clients");
  clients.add_options()
      ("listen", po::value<std::vector<std::string>>()->composing(),
       "client listener host:port[,crypto=MODES], repeatable (default 0.0.0.0:8888). MODES: what "
       "its clients may speak, 'any' (the default: gonet2 clients work unchanged) or modern, "
       "legacy and clear joined by '+'; e.g. crypto=modern for a listener of new clients only")
      ("reuse-port", po::value<bool>()->default_value(false)->implicit_value(true),
       "share the listen ports with other gateway instances (SO_REUSEPORT; each its own "
       "--instance and --metrics-listen): the kernel spreads new connections over them, and "
       "one can drain while the others take the new ones")
      ("max-connections", po::value<std::uint32_t>()->default_value(65536),
       "most concurrent client connections (sizes the session table)")
      ("max-connections-per-ip", po::value<std::uint32_t>()->default_value(0),
       "most concurrent connections from one client address (an IPv4 address, an IPv6 /64); "
       "more are refused at accept. 0: no limit. Players behind one NAT share an address: "
       "leave room for them")
      ("max-frame", po::value<std::uint32_t>()->default_value(65535),
       "largest client payload in bytes; larger frames kick (frame_too_large)")
      ("read-timeout", po::value<double>()->default_value(15.0),
       "seconds without a frame before a connection is closed (read_timeout)")
      ("rpm-limit", po::value<std::uint32_t>()->default_value(200),
       "client frames allowed per minute per session, 0 = no limit (rpm_exceeded)")
      ("txqueuelen", po::value<std::uint32_t>()->default_value(128),
       "frames queued to a client that is not reading before it is kicked (slow_consumer)")
      ("sockbuf", po::value<std::uint32_t>()->default_value(32767),
       "SO_RCVBUF/SO_SNDBUF per connection in bytes, 0 = kernel default")
      ("linger", po::value<double>()->default_value(2.0),
       "seconds a kicked connection waits for the client's FIN after the last byte")
      ("login", po::value<std::string>()->default_value("any"),
       "login provider: 'any' (user id derived from open_udid) or 'tokens:<file>' "
       "(lines '<token> <user id>', token = client_certificate)");
  po::options_description backends("Game services");
  backends.add_options()
      ("backend", po::value<std::vector<std::string>>()->composing(),
       "game service gRPC address host:port, repeatable (default 127.0.0.1:50051); "
       "sessions are spread by user id. host:port speaks the gonet2 contract (a stream per "
       "session); batch:host:port the batched one (proto/batch.proto, one stream for all)")
      ("backend-numbering", po::value<std::string>()->default_value("gonet2"),
       "Game.FrameType numbering of the game services: 'gonet2' (Kick=1) or 'later' (Kick=2)")
      ("backend-wait", po::value<double>()->default_value(60.0),
       "seconds logged-in sessions wait for a game service that went away (after a bridge "
       "restart, or a batched link that broke) before they are kicked (backend_unavailable); "
       "sessions that log in while it is away are kicked at once");
  po::options_description processes("Processes");
  processes.add_options()
      ("workers", po::value<std::uint32_t>()->default_value(0),
       "agent-worker processes, 0 = one per two CPUs, at least one (the frontend, the "
       "bridge and the game services need the rest; docs/benchmarks.md item 14)")
      ("idle-spin-us", po::value<std::int32_t>()->default_value(-1),
       "microseconds an idle frontend/worker/bridge spins before it sleeps; spinning "
       "saves a wakeup only where every gateway process has a core of its own "
       "(-1 = auto: 50 when there are at least workers + 4 CPUs, else 0)")
      ("ring-bytes", po::value<std::uint64_t>()->default_value(1 << 20),
       "bytes per shared-memory ring (power of two, >= 1 MiB)")
      ("drain-wait", po::value<double>()->default_value(0.0),
       "seconds SIGTERM lets sessions end on their own (no new connections; with "
       "reuse-port they go to the other instances) before it closes them; 0 = at once")
      ("drain-timeout", po::value<double>()->default_value(10.0),
       "seconds SIGTERM waits for sessions to close before cutting them")
      ("hang-timeout", po::value<double>()->default_value(3.0),
       "seconds without a heartbeat after which a child is considered hung, killed and "
       "restarted")
      ("restart-backoff-max", po::value<double>()->default_value(5.0),
       "seconds: most a crash-looping child waits before its next restart (the first "
       "restart is immediate, then 0.1 s doubling up to this)");
  // clang-format on
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

    Config c;
    c.instance = vm["instance"].as<std::string>();
    if (c.instance.empty() || c.instance.find('/') != std::string::npos) {
      throw ConfigError("--instance must be a non-empty name without '/'");
    }
    const auto listeners = vm.count("listen") != 0 ? vm["listen"].as<std::vector<std::string>>()
                                                   : std::vector<std::string>{"0.0.0.0:8888"};
    if (listeners.size() > kMaxListeners) {
      throw ConfigError("--listen: at most " + std::to_string(kMaxListeners) + " listeners");
    }
    for (const auto& l : listeners) {
      // host:port[,crypto=MODES]
      const std::size_t comma = l.find(',');
      std::uint8_t modes = kCryptoAny;
      if (comma != std::string::npos) {
        const std::string option = l.substr(comma + 1);
        const auto parsed =
            option.starts_with("crypto=") ? parse_crypto_modes(option.substr(7)) : std::nullopt;
        if (!parsed) {
          throw ConfigError("--listen " + l +
                            ": the only option is crypto=MODES, MODES being 'any' or modern, "
                            "legacy and clear joined by '+' (e.g. crypto=modern+legacy)");
        }
        modes = *parsed;
      }
      c.listen.push_back(l.substr(0, comma));
      check_endpoint(c.listen.back(), "listen");
      c.settings.listener_crypto[c.settings.listener_count++] = modes;
    }
    c.reuse_port = vm["reuse-port"].as<bool>();
    c.bin_dir = vm["bin-dir"].as<std::string>();
    if (c.bin_dir.empty()) c.bin_dir = own_dir();
    c.ready_file = vm["ready-file"].as<std::string>();
    c.metrics_listen = vm["metrics-listen"].as<std::string>();
    check_endpoint(c.metrics_listen, "metrics-listen");
    c.drain_wait_ms =
        static_cast<std::uint32_t>(in_range<double>(vm, "drain-wait", 0, 86400) * 1000);
    c.hang_timeout_ms =
        static_cast<std::uint32_t>(in_range<double>(vm, "hang-timeout", 0.5, 3600) * 1000);
    c.restart_backoff_max_ms =
        static_cast<std::uint32_t>(in_range<double>(vm, "restart-backoff-max", 0.01, 600) * 1000);

    Settings& s = c.settings;
    const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    s.workers = in_range<std::uint32_t>(vm, "workers", 0, kMaxWorkers);
    if (s.workers == 0) s.workers = std::clamp(cpus / 2, 1u, kMaxWorkers);
    const auto spin = in_range<std::int32_t>(vm, "idle-spin-us", -1, 10'000);
    s.idle_spin_us =
        spin >= 0 ? static_cast<std::uint32_t>(spin) : (cpus >= s.workers + 4 ? 50 : 0);
    s.max_connections = in_range<std::uint32_t>(vm, "max-connections", 1, 1u << 24);
    s.max_connections_per_ip = in_range<std::uint32_t>(vm, "max-connections-per-ip", 0, 1u << 24);
    if (s.max_connections < s.workers) {
      // Each worker owns a range of the session table.
      throw ConfigError("--max-connections must be at least --workers (" +
                        std::to_string(s.workers) + ")");
    }
    s.max_frame = in_range<std::uint32_t>(vm, "max-frame", 6, 65535);
    s.read_timeout_ms =
        static_cast<std::uint32_t>(in_range<double>(vm, "read-timeout", 0.1, 86400) * 1000);
    s.rpm_limit = vm["rpm-limit"].as<std::uint32_t>();
    s.txqueuelen = in_range<std::uint32_t>(vm, "txqueuelen", 1, 1u << 20);
    s.sockbuf = in_range<std::uint32_t>(vm, "sockbuf", 0, 64u << 20);
    s.linger_ms = static_cast<std::uint32_t>(in_range<double>(vm, "linger", 0, 60) * 1000);
    s.drain_timeout_ms =
        static_cast<std::uint32_t>(in_range<double>(vm, "drain-timeout", 0.1, 3600) * 1000);
    s.ring_bytes = vm["ring-bytes"].as<std::uint64_t>();
    if (!std::has_single_bit(s.ring_bytes) || s.ring_bytes < (1u << 20) ||
        s.ring_bytes > (1ull << 30)) {
      throw ConfigError("--ring-bytes must be a power of two between 1 MiB and 1 GiB");
    }

    const std::string level = vm["log-level"].as<std::string>();
    const auto parsed_level = spdlog::level::from_str(level);
    if (parsed_level == spdlog::level::off && level != "off") {
      throw ConfigError("--log-level '" + level +
                        "' is not one of trace, debug, info, warn, error");
    }
    s.log_level = static_cast<std::uint32_t>(parsed_level);

    const auto backend_list = vm.count("backend") != 0
                                  ? vm["backend"].as<std::vector<std::string>>()
                                  : std::vector<std::string>{"127.0.0.1:50051"};
    if (backend_list.size() > kMaxBackends) {
      throw ConfigError("at most " + std::to_string(kMaxBackends) + " --backend addresses");
    }
    s.backend_count = static_cast<std::uint32_t>(backend_list.size());
    for (std::size_t i = 0; i < backend_list.size(); ++i) {
      copy_string(s.backends[i], kAddressBytes, backend_list[i], "backend");
    }
    const std::string numbering = vm["backend-numbering"].as<std::string>();
    const auto parsed_numbering = parse_frame_numbering(numbering);
    if (!parsed_numbering) {
      throw ConfigError("--backend-numbering must be 'gonet2' or 'later', not '" + numbering + "'");
    }
    s.numbering = *parsed_numbering;
    s.backend_wait_ms =
        static_cast<std::uint32_t>(in_range<double>(vm, "backend-wait", 0, 86400) * 1000);

    const std::string login = vm["login"].as<std::string>();
    if (login == "any") {
      s.login_mode = LoginMode::kAcceptAny;
    } else if (login.rfind("tokens:", 0) == 0 && login.size() > 7) {
      s.login_mode = LoginMode::kStaticTokens;
      const std::string path = std::filesystem::absolute(login.substr(7)).string();
      if (::access(path.c_str(), R_OK) != 0) {
        throw ConfigError("--login token file " + path + " is not readable");
      }
      copy_string(s.login_file, kPathBytes, path, "login");
    } else {
      throw ConfigError("--login must be 'any' or 'tokens:<file>', not '" + login + "'");
    }
    if (vm.count("check") != 0) return check(vm, c);
    result.config = std::move(c);
  } catch (const std::exception& e) {
    result.message = std::string("gatehouse: ") + e.what() + "\n(see gatehouse --help)\n";
    result.exit_code = 2;
  }
  return result;
}

namespace {

std::string text(std::uint32_t v) {
  return std::to_string(v);
}
std::string text(LoginMode m) {
  return m == LoginMode::kStaticTokens ? "tokens" : "any";
}

std::string crypto_text(const Settings& s) {
  std::string out;
  for (std::uint32_t i = 0; i < s.listener_count; ++i) {
    out += (i == 0 ? "" : ",") + crypto_modes_text(s.listener_crypto[i]);
  }
  return out;
}

std::string backends_text(const Settings& s) {
  std::string out;
  for (std::uint32_t i = 0; i < s.backend_count; ++i) {
    out += (i == 0 ? "" : ",") + std::string(s.backends[i]);
  }
  return out + " " + std::to_string(static_cast<int>(s.numbering)) + " " +
         std::to_string(s.backend_wait_ms);
}

}  // namespace

ReloadPlan plan_reload(const Config& running, const Config& fresh) {
  ReloadPlan plan{running, {}, {}};
  const auto live = [&plan](const char* name, auto& to, const auto& from) {
    if (text(to) == text(from)) return;
    plan.applied.push_back(std::string(name) + " " + text(to) + " -> " + text(from));
    to = from;
  };
  const auto fixed = [&plan](const char* name, const auto& now, const auto& asked) {
    if (now != asked) plan.need_restart.emplace_back(name);
  };
  Settings& s = plan.config.settings;
  const Settings& f = fresh.settings;
  // Read by each process where it is used, so they can change at once.
  live("rpm-limit", s.rpm_limit, f.rpm_limit);
  live("read-timeout-ms", s.read_timeout_ms, f.read_timeout_ms);
  live("txqueuelen", s.txqueuelen, f.txqueuelen);
  live("max-frame", s.max_frame, f.max_frame);
  live("sockbuf", s.sockbuf, f.sockbuf);
  live("linger-ms", s.linger_ms, f.linger_ms);
  live("log-level", s.log_level, f.log_level);
  live("max-connections-per-ip", s.max_connections_per_ip, f.max_connections_per_ip);
  live("drain-timeout-ms", s.drain_timeout_ms, f.drain_timeout_ms);
  live("login", s.login_mode, f.login_mode);
  if (std::string(s.login_file) != f.login_file) {
    plan.applied.push_back("login file " + std::string(s.login_file) + " -> " + f.login_file);
    std::memcpy(s.login_file, f.login_file, sizeof s.login_file);
  }
  live("drain-wait-ms", plan.config.drain_wait_ms, fresh.drain_wait_ms);
  live("hang-timeout-ms", plan.config.hang_timeout_ms, fresh.hang_timeout_ms);
  live("restart-backoff-max-ms", plan.config.restart_backoff_max_ms, fresh.restart_backoff_max_ms);
  // The listeners' crypto= changes with them; their addresses do not.
  fixed("listen", running.listen, fresh.listen);
  if (running.listen == fresh.listen && crypto_text(s) != crypto_text(f)) {
    plan.applied.push_back("listen crypto " + crypto_text(s) + " -> " + crypto_text(f));
    std::memcpy(s.listener_crypto, f.listener_crypto, sizeof s.listener_crypto);
  }
  // Sizes of the segment, the processes' start arguments, the bridge's
  // channels: a restart.
  fixed("instance", running.instance, fresh.instance);
  fixed("reuse-port", running.reuse_port, fresh.reuse_port);
  fixed("bin-dir", running.bin_dir, fresh.bin_dir);
  fixed("ready-file", running.ready_file, fresh.ready_file);
  fixed("metrics-listen", running.metrics_listen, fresh.metrics_listen);
  fixed("workers", s.workers, f.workers);
  fixed("max-connections", s.max_connections, f.max_connections);
  fixed("ring-bytes", s.ring_bytes, f.ring_bytes);
  fixed("idle-spin-us", s.idle_spin_us, f.idle_spin_us);
  fixed("backend, backend-numbering, backend-wait", backends_text(s), backends_text(f));
  return plan;
}

}  // namespace gatehouse::supervisor
