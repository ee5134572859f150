#include "gatehouse/supervisor/settings_table.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <boost/program_options/variables_map.hpp>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <boost/asio/error.hpp>
#include <boost/asio/ip/address_v6.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include "gatehouse/base/log.h"
#include "gatehouse/crypto/gateway_key_file.h"
#include "gatehouse/kcp/connection.h"
#include "gatehouse/net/endpoint.h"
#include "gatehouse/net/tls_context.h"
#include "gatehouse/supervisor/admin_protocol.h"
#include "gatehouse/token/key_files.h"
#include "gatehouse/token/signed_token.h"
#include "gatehouse/token/token_file.h"

namespace gatehouse::supervisor {
namespace po = boost::program_options;
namespace asio = boost::asio;

namespace {

/// A configuration error: parse_config() prints it and exits 2.
using ConfigError = std::runtime_error;

// Where a row's value lives: a Config member or a Settings member.
template <class T>
T& field(Config& c, T Config::*member) {
  return c.*member;
}
template <class T>
const T& field(const Config& c, T Config::*member) {
  return c.*member;
}
template <class T>
T& field(Config& c, T Settings::*member) {
  return c.settings.*member;
}
template <class T>
const T& field(const Config& c, T Settings::*member) {
  return c.settings.*member;
}

std::string text(std::uint32_t v) {
  return std::to_string(v);
}
std::string text(std::uint64_t v) {
  return std::to_string(v);
}
std::string text(bool v) {
  return v ? "true" : "false";
}
std::string text(const std::string& v) {
  return v;
}

template <auto M>
std::string value_of(const Config& c) {
  return text(field(c, M));
}
template <auto M>
void take(Config& to, const Config& from) {
  field(to, M) = field(from, M);
}

template <class T>
T in_range(const Setting& s, const po::variable_value& v) {
  const T x = v.as<T>();
  const T lo = static_cast<T>(s.lo);
  const T hi = static_cast<T>(s.hi);
  if (x < lo || x > hi) {
    throw ConfigError("--" + std::string(s.name) + " = " + std::to_string(x) +
                      " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return x;
}

template <auto M>
void read_uint(const Setting& s, const po::variable_value& v, Config& c) {
  field(c, M) = in_range<std::uint32_t>(s, v);
}
template <auto M>
void read_seconds(const Setting& s, const po::variable_value& v, Config& c) {
  field(c, M) = static_cast<std::uint32_t>(in_range<double>(s, v) * 1000);
}
template <auto M>
void read_plain(const Setting&, const po::variable_value& v, Config& c) {
  field(c, M) = v.as<std::remove_reference_t<decltype(field(c, M))>>();
}

// Rows of the common shapes.
template <auto M>
constexpr Setting number(const char* name, Section section, const char* default_text,
                         OnReload on_reload, double lo, double hi, const char* help) {
  return {.name = name,
          .section = section,
          .kind = Kind::kUint32,
          .default_text = default_text,
          .on_reload = on_reload,
          .help = help,
          .lo = lo,
          .hi = hi,
          .read = read_uint<M>,
          .value = value_of<M>,
          .take = take<M>};
}
template <auto M>
constexpr Setting seconds(const char* name, Section section, const char* default_text,
                          OnReload on_reload, double lo, double hi, const char* help) {
  return {.name = name,
          .section = section,
          .kind = Kind::kSeconds,
          .default_text = default_text,
          .on_reload = on_reload,
          .help = help,
          .lo = lo,
          .hi = hi,
          .read = read_seconds<M>,
          .value = value_of<M>,
          .take = take<M>};
}
template <auto M>
constexpr Setting plain(const char* name, Section section, Kind kind, const char* default_text,
                        OnReload on_reload, const char* help) {
  return {.name = name,
          .section = section,
          .kind = kind,
          .default_text = default_text,
          .on_reload = on_reload,
          .help = help,
          .read = read_plain<M>,
          .value = value_of<M>,
          .take = take<M>};
}

void copy_string(char* out, std::size_t size, const std::string& value, const char* name) {
  if (value.size() >= size) {
    throw ConfigError("--" + std::string(name) + " is longer than " + std::to_string(size - 1) +
                      " characters");
  }
  std::memset(out, 0, size);
  std::memcpy(out, value.c_str(), value.size() + 1);  // with its terminator
}

/// Throws naming the setting when `address` is not HOST:PORT / [V6]:PORT.
void check_endpoint(const std::string& address, const char* name) {
  try {
    parse_endpoint(address, /*allow_port_zero=*/true);
  } catch (const std::invalid_argument& e) {
    throw ConfigError("--" + std::string(name) + ": " + e.what());
  }
}

std::string own_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

unsigned cpus() {
  return std::max(1u, std::thread::hardware_concurrency());
}

// ------------------------------------------------------------ the odd rows

void read_instance(const Setting&, const po::variable_value& v, Config& c) {
  c.instance = v.as<std::string>();
  if (c.instance.empty() || c.instance.find('/') != std::string::npos) {
    throw ConfigError("--instance must be a non-empty name without '/'");
  }
}

void read_log_level(const Setting&, const po::variable_value& v, Config& c) {
  const std::string& level = v.as<std::string>();
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    throw ConfigError("--log-level '" + level + "' is not one of trace, debug, info, warn, error");
  }
  c.settings.log_level = static_cast<std::uint32_t>(parsed);
}

/// all | none | sample:N (one session in N, 2 <= N <= 1,000,000).
void read_log_connections(const Setting&, const po::variable_value& v, Config& c) {
  const std::string& text = v.as<std::string>();
  constexpr std::string_view kSample = "sample:";
  std::uint32_t& out = c.settings.log_connections;
  if (text == "all") {
    out = kLogConnectionsAll;
  } else if (text == "none") {
    out = kLogConnectionsNone;
  } else {
    std::uint32_t n = 0;
    const char* end = text.data() + text.size();
    const bool sample = text.starts_with(kSample) && text.size() > kSample.size() &&
                        std::from_chars(text.data() + kSample.size(), end, n).ptr == end;
    if (!sample || n < 2 || n > 1'000'000) {
      throw ConfigError("--log-connections '" + text +
                        "' is not one of all, none, sample:N (N from 2 to 1000000)");
    }
    out = n;
  }
}

std::string log_connections_value(const Config& c) {
  switch (const std::uint32_t n = c.settings.log_connections; n) {
    case kLogConnectionsAll:
      return "all";
    case kLogConnectionsNone:
      return "none";
    default:
      return "sample:" + std::to_string(n);
  }
}

/// Unset: beside this binary (a build tree: build/bin), else where the
/// package installs the children (GATEHOUSE_LIBEXEC_DIR, /usr/libexec/gatehouse).
void read_bin_dir(const Setting&, const po::variable_value& v, Config& c) {
  c.bin_dir = v.as<std::string>();
  if (!c.bin_dir.empty()) return;
  c.bin_dir = own_dir();
  std::error_code ec;
  if (!std::filesystem::exists(c.bin_dir + "/gatehouse-frontend", ec) &&
      std::filesystem::exists(GATEHOUSE_LIBEXEC_DIR "/gatehouse-frontend", ec)) {
    c.bin_dir = GATEHOUSE_LIBEXEC_DIR;
  }
}

void read_metrics_listen(const Setting& s, const po::variable_value& v, Config& c) {
  c.metrics_listen = v.as<std::string>();
  check_endpoint(c.metrics_listen, s.name);
}

/// Kept as given ("": the instance's default, admin_socket_path()); the
/// path must fit a sockaddr_un.
void read_admin_socket(const Setting& s, const po::variable_value& v, Config& c) {
  c.admin_socket = v.as<std::string>();
  const std::string path = admin_socket_path(c);
  if (path.front() != '/' || path.size() >= admin::kSocketPathBytes) {
    throw ConfigError("--" + std::string(s.name) + " '" + path +
                      "' is not an absolute path of fewer than " +
                      std::to_string(admin::kSocketPathBytes) + " bytes");
  }
}

/// "10.0.0.0/8" or "fd00::/8" into `range` (IPv4 ones IPv4-mapped); false
/// when it is not a range, or has bits set past its prefix.
bool parse_range(const std::string& item, AddressRange& range) {
  boost::system::error_code ec;
  if (item.find(':') == std::string::npos) {
    const auto net = asio::ip::make_network_v4(item, ec);
    if (ec || net.address() != net.network()) return false;
    const auto mapped = asio::ip::make_address_v6(asio::ip::v4_mapped, net.network());
    std::memcpy(range.address, mapped.to_bytes().data(), 16);
    range.prefix = 96 + net.prefix_length();
    return true;
  }
  const auto net = asio::ip::make_network_v6(item, ec);
  if (ec || net.address() != net.network()) return false;
  std::memcpy(range.address, net.network().to_bytes().data(), 16);
  range.prefix = net.prefix_length();
  return true;
}

std::string bad_range(const std::string& item) {
  return "'" + item +
         "' is not an address range such as 127.0.0.1/32 or ::1/128 (bits past the prefix must "
         "be zero)";
}

/// The inverse of parse_range() for `count` ranges, joined by `separator`.
std::string ranges_text(const AddressRange* ranges, std::uint32_t count, const char* separator) {
  std::string out;
  for (std::uint32_t i = 0; i < count; ++i) {
    const AddressRange& r = ranges[i];
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), r.address, bytes.size());
    const asio::ip::address_v6 a(bytes);
    out += i == 0 ? "" : separator;
    out += a.is_v4_mapped() && r.prefix >= 96
               ? asio::ip::make_address_v4(asio::ip::v4_mapped, a).to_string() + "/" +
                     std::to_string(r.prefix - 96)
               : a.to_string() + "/" + std::to_string(r.prefix);
  }
  return out;
}

/// One `,KEY=VALUE` option of a --listen entry: reads VALUE into listener
/// `i`'s settings, or throws ConfigError saying what VALUE may be. Options
/// a listener does not name keep their defaults (set before the options).
struct ListenOption {
  std::string_view key;
  void (*read)(std::string_view value, std::uint32_t i, Config& c);
};

void read_crypto_option(std::string_view value, std::uint32_t i, Config& c) {
  const auto modes = parse_crypto_modes(std::string(value));
  if (!modes) {
    throw ConfigError(
        "crypto= takes 'any' or modern, modern1, legacy and clear joined by '+' "
        "(e.g. crypto=modern+legacy)");
  }
  c.settings.listener_crypto[i] = *modes;
}

void read_proxy_option(std::string_view value, std::uint32_t i, Config& c) {
  const auto mode = parse_proxy_mode(value);
  if (!mode) throw ConfigError("proxy= takes v1, v2, optional or none");
  c.settings.listener_proxy[i] = *mode;
}

/// Ranges joined by '+' (',' separates the options).
void read_proxy_from_option(std::string_view value, std::uint32_t i, Config& c) {
  Settings& s = c.settings;
  s.listener_proxy_from_count[i] = 0;
  std::memset(s.listener_proxy_from[i], 0, sizeof s.listener_proxy_from[i]);
  for (;;) {
    const std::size_t plus = value.find('+');
    const std::string item(value.substr(0, plus));
    if (s.listener_proxy_from_count[i] == kMaxProxyNetworks) {
      throw ConfigError("proxy-from= takes at most " + std::to_string(kMaxProxyNetworks) +
                        " ranges");
    }
    if (!parse_range(item, s.listener_proxy_from[i][s.listener_proxy_from_count[i]++])) {
      throw ConfigError("proxy-from=: " + bad_range(item) + "; join ranges with '+'");
    }
    if (plus == std::string_view::npos) break;
    value = value.substr(plus + 1);
  }
}

/// transport=tcp (the default), tls, ws or wss (one of them: they take the
/// TCP port), and kcp (KCP over UDP on the same address and port,
/// docs/kcp.md), alone or added: tcp+kcp.
void read_transport_option(std::string_view value, std::uint32_t i, Config& c) {
  std::uint8_t transports = 0;
  const bool dangling = !value.empty() && (value.front() == '+' || value.back() == '+');
  while (!value.empty() && !dangling) {
    const std::string_view name = value.substr(0, value.find('+'));
    value = name.size() == value.size() ? std::string_view() : value.substr(name.size() + 1);
    const auto* known = std::find_if(std::begin(kTransportNames), std::end(kTransportNames),
                                     [&](const auto& t) { return t.second == name; });
    if (known == std::end(kTransportNames)) {
      transports = 0;
      break;
    }
    transports |= known->first;
  }
  if (transports == 0 || std::popcount(static_cast<unsigned>(transports & kTransportStreams)) > 1) {
    throw ConfigError(
        "transport= takes one of tcp, tls, ws, wss (they share the TCP port), kcp, or one of "
        "them + kcp");
  }
  c.settings.listener_transports[i] = transports;
}

constexpr ListenOption kListenOptions[] = {
    {"crypto", read_crypto_option},
    {"proxy", read_proxy_option},
    {"proxy-from", read_proxy_from_option},
    {"transport", read_transport_option},
};

/// proxy-from's default: the loopback addresses (a load balancer on the host).
void default_proxy_from(Settings& s, std::uint32_t i) {
  std::memset(s.listener_proxy_from[i], 0, sizeof s.listener_proxy_from[i]);
  s.listener_proxy_from_count[i] = 2;
  parse_range("127.0.0.0/8", s.listener_proxy_from[i][0]);
  parse_range("::1/128", s.listener_proxy_from[i][1]);
}

/// host:port[,KEY=VALUE...], repeated (kListenOptions).
void read_listen(const Setting& s, const po::variable_value& v, Config& c) {
  const auto& listeners = v.as<std::vector<std::string>>();
  if (listeners.size() > kMaxListeners) {
    throw ConfigError("--listen: at most " + std::to_string(kMaxListeners) + " listeners");
  }
  c.listen.clear();
  c.settings.listener_count = 0;
  for (const auto& l : listeners) {
    const std::uint32_t i = c.settings.listener_count++;
    c.settings.listener_crypto[i] = kCryptoAny;
    c.settings.listener_proxy[i] = ProxyMode::kNone;
    default_proxy_from(c.settings, i);
    bool proxy_from_named = false;
    c.settings.listener_transports[i] = kTransportTcp;
    const std::size_t comma = l.find(',');
    c.listen.push_back(l.substr(0, comma));
    check_endpoint(c.listen.back(), s.name);
    std::string_view rest =
        comma == std::string::npos ? std::string_view() : std::string_view(l).substr(comma + 1);
    while (!rest.empty()) {
      const std::string_view option = rest.substr(0, rest.find(','));
      rest = option.size() == rest.size() ? std::string_view() : rest.substr(option.size() + 1);
      const std::size_t equals = option.find('=');
      const std::string_view key = option.substr(0, equals);
      const auto* known = std::find_if(std::begin(kListenOptions), std::end(kListenOptions),
                                       [&](const ListenOption& o) { return o.key == key; });
      if (equals == std::string_view::npos || known == std::end(kListenOptions)) {
        std::string message =
            "--listen " + l + ": unknown option '" + std::string(option) + "' (options: ";
        for (const ListenOption& o : kListenOptions) {
          message += o.key;
          message += &o == std::end(kListenOptions) - 1 ? "=)" : "=, ";
        }
        throw ConfigError(message);
      }
      try {
        known->read(option.substr(equals + 1), i, c);
      } catch (const ConfigError& e) {
        throw ConfigError("--listen " + l + ": " + e.what());
      }
      proxy_from_named = proxy_from_named || key == "proxy-from";
    }
    if (proxy_from_named && c.settings.listener_proxy[i] == ProxyMode::kNone) {
      throw ConfigError("--listen " + l +
                        ": proxy-from= without proxy= (v1, v2 or optional) trusts no header");
    }
  }
}

std::string crypto_text(const Settings& s) {
  std::string out;
  for (std::uint32_t i = 0; i < s.listener_count; ++i) {
    out += (i == 0 ? "" : ",") + crypto_modes_text(s.listener_crypto[i]);
  }
  return out;
}

/// "none,proxy=v2,proxy-from=10.0.0.0/8": each listener's proxy options.
std::string proxy_text(const Settings& s) {
  std::string out;
  for (std::uint32_t i = 0; i < s.listener_count; ++i) {
    const std::string options = listener_options_text(s, i);
    const std::size_t proxy = options.find(",proxy=");
    out += (i == 0 ? "" : " ") + (proxy == std::string::npos ? "none" : options.substr(proxy + 1));
  }
  return out;
}

/// The addresses and transports need a restart; each listener's crypto=,
/// proxy= and proxy-from= change live (a connection keeps what it was
/// accepted with).
void plan_listen(const Config& running, const Config& fresh, ReloadPlan& plan) {
  if (running.listen != fresh.listen ||
      std::memcmp(running.settings.listener_transports, fresh.settings.listener_transports,
                  sizeof running.settings.listener_transports) != 0) {
    plan.need_restart.emplace_back("listen");
    return;
  }
  Settings& s = plan.config.settings;
  if (crypto_text(s) != crypto_text(fresh.settings)) {
    plan.applied.push_back("listen crypto " + crypto_text(s) + " -> " +
                           crypto_text(fresh.settings));
    std::memcpy(s.listener_crypto, fresh.settings.listener_crypto, sizeof s.listener_crypto);
  }
  if (proxy_text(s) != proxy_text(fresh.settings)) {
    plan.applied.push_back("listen proxy " + proxy_text(s) + " -> " + proxy_text(fresh.settings));
    std::memcpy(s.listener_proxy, fresh.settings.listener_proxy, sizeof s.listener_proxy);
    std::memcpy(s.listener_proxy_from_count, fresh.settings.listener_proxy_from_count,
                sizeof s.listener_proxy_from_count);
    std::memcpy(s.listener_proxy_from, fresh.settings.listener_proxy_from,
                sizeof s.listener_proxy_from);
  }
}

/// any | tokens:FILE | signed:FILE[,FILE...] | auth:HOST:PORT. The files are
/// read here, so that a missing, too open or malformed one fails the start
/// (or the reload) naming itself rather than every worker that would read it.
/// The auth service's address goes in login_file too.
void read_login(const Setting&, const po::variable_value& v, Config& c) {
  Settings& s = c.settings;
  const std::string& login = v.as<std::string>();
  std::memset(s.login_file, 0, sizeof s.login_file);
  const auto files = [&](std::size_t prefix) {
    std::string joined;
    std::string_view rest = std::string_view(login).substr(prefix);
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      if (!joined.empty()) joined += ',';
      joined += std::filesystem::absolute(std::string(rest.substr(0, comma))).string();
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    copy_string(s.login_file, kLoginFileBytes, joined, "login");
    return joined;
  };
  try {
    if (login == "any") {
      s.login_mode = LoginMode::kAcceptAny;
    } else if (login.starts_with("tokens:") && login.size() > 7) {
      s.login_mode = LoginMode::kStaticTokens;
      token::read_token_file(files(7));
    } else if (login.starts_with("signed:") && login.size() > 7) {
      s.login_mode = LoginMode::kSignedTokens;
      const token::Verifier keys(token::read_public_keys(files(7)), "");
    } else if (login.starts_with("auth:") && login.size() > 5) {
      s.login_mode = LoginMode::kAuthService;
      const std::string address = login.substr(5);
      parse_endpoint(address);
      copy_string(s.login_file, kLoginFileBytes, address, "login");
    } else {
      throw ConfigError(
          "must be 'any', 'tokens:<file>', 'signed:<public key file>[,<file>...]' or "
          "'auth:<host>:<port>'");
    }
  } catch (const std::exception& e) {
    throw ConfigError("--login " + login + ": " + e.what());
  }
}

void read_duplicate_login(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& text = v.as<std::string>();
  if (text == "replace") {
    c.settings.duplicate_login = DuplicateLogin::kReplace;
  } else if (text == "refuse") {
    c.settings.duplicate_login = DuplicateLogin::kRefuse;
  } else if (text == "allow") {
    c.settings.duplicate_login = DuplicateLogin::kAllow;
  } else {
    throw ConfigError("--" + std::string(s.name) + " must be replace, refuse or allow, not '" +
                      text + "'");
  }
}

std::string duplicate_login_value(const Config& c) {
  switch (c.settings.duplicate_login) {
    case DuplicateLogin::kRefuse:
      return "refuse";
    case DuplicateLogin::kAllow:
      return "allow";
    case DuplicateLogin::kReplace:
      break;
  }
  return "replace";
}

std::string login_mode_text(LoginMode m) {
  switch (m) {
    case LoginMode::kStaticTokens:
      return "tokens";
    case LoginMode::kSignedTokens:
      return "signed";
    case LoginMode::kAuthService:
      return "auth";
    case LoginMode::kAcceptAny:
      break;
  }
  return "any";
}

/// Live, in two parts: the provider, and its files.
void plan_login(const Config&, const Config& fresh, ReloadPlan& plan) {
  Settings& s = plan.config.settings;
  const Settings& f = fresh.settings;
  if (s.login_mode != f.login_mode) {
    plan.applied.push_back("login " + login_mode_text(s.login_mode) + " -> " +
                           login_mode_text(f.login_mode));
    s.login_mode = f.login_mode;
  }
  if (std::string(s.login_file) != f.login_file) {
    plan.applied.push_back("login file " + std::string(s.login_file) + " -> " + f.login_file);
    std::memcpy(s.login_file, f.login_file, sizeof s.login_file);
  }
}

/// FILE, repeatable: each a private key file, checked (owner, mode, one key)
/// here so that a bad file fails the start or the reload, not a worker.
void read_gateway_key(const Setting&, const po::variable_value& v, Config& c) {
  Settings& s = c.settings;
  std::vector<std::string> paths;
  for (const std::string& path : v.as<std::vector<std::string>>()) {
    if (!path.empty()) paths.push_back(std::filesystem::absolute(path).string());
  }
  if (paths.size() > kMaxGatewayKeys) {
    throw ConfigError("--gateway-key: at most " + std::to_string(kMaxGatewayKeys) + " keys");
  }
  try {
    (void)modern::GatewayKeyring::load(paths);
  } catch (const std::runtime_error& e) {
    throw ConfigError(std::string("--gateway-key: ") + e.what());
  }
  std::memset(s.gateway_keys, 0, sizeof s.gateway_keys);
  s.gateway_key_count = static_cast<std::uint32_t>(paths.size());
  for (std::size_t i = 0; i < paths.size(); ++i) {
    copy_string(s.gateway_keys[i], kPathBytes, paths[i], "gateway-key");
  }
  // The listen row is read before this one.
  for (std::uint32_t i = 0; i < s.listener_count && paths.empty(); ++i) {
    const std::uint8_t modes = s.listener_crypto[i];
    if ((modes & kCryptoModern) != 0 && (modes & (kCryptoClear | kCryptoLegacy)) == 0) {
      throw ConfigError("--listen " + c.listen[i] + ",crypto=" + crypto_modes_text(modes) +
                        " needs a --gateway-key: the modern exchange (version 2) proves the "
                        "gateway's key (create one with: gatehouse keygen --out FILE)");
    }
  }
}

std::string gateway_key_value(const Config& c) {
  std::string out;
  for (std::uint32_t i = 0; i < c.settings.gateway_key_count; ++i) {
    out += (i == 0 ? "" : ",") + std::string(c.settings.gateway_keys[i]);
  }
  return out;
}

/// Live: the files are read again by each new worker (a reload rolls them).
void take_gateway_key(Config& to, const Config& from) {
  to.settings.gateway_key_count = from.settings.gateway_key_count;
  std::memcpy(to.settings.gateway_keys, from.settings.gateway_keys,
              sizeof to.settings.gateway_keys);
}

void read_login_audience(const Setting& row, const po::variable_value& v, Config& c) {
  const std::string& audience = v.as<std::string>();
  if (audience.size() > token::kMaxAudienceBytes) {
    throw ConfigError("--login-audience is longer than " +
                      std::to_string(token::kMaxAudienceBytes) + " bytes");
  }
  copy_string(c.settings.login_audience, kAddressBytes, audience, row.name);
}
std::string login_audience_value(const Config& c) {
  return c.settings.login_audience;
}
void take_login_audience(Config& to, const Config& from) {
  std::memcpy(to.settings.login_audience, from.settings.login_audience,
              sizeof to.settings.login_audience);
}

void read_backend(const Setting& s, const po::variable_value& v, Config& c) {
  const auto& list = v.as<std::vector<std::string>>();
  if (list.size() > kMaxBackends) {
    throw ConfigError("at most " + std::to_string(kMaxBackends) + " --backend addresses");
  }
  c.settings.backend_count = static_cast<std::uint32_t>(list.size());
  std::memset(c.settings.backend_services, 0, sizeof c.settings.backend_services);
  for (std::size_t i = 0; i < list.size(); ++i) {
    // [batch:]HOST:PORT[,service=NAME]: the line is an instance of NAME (a
    // service proto ranges are routed to, docs/discovery.md), else of the
    // game service.
    constexpr std::string_view kService = ",service=";
    std::string address = list[i];
    if (const std::size_t at = address.find(kService); at != std::string::npos) {
      const std::string name = address.substr(at + kService.size());
      if (name.empty() || name.find_first_of("/,= ") != std::string::npos ||
          name.size() >= kServiceNameBytes) {
        throw ConfigError("--backend " + list[i] + ": '" + name +
                          "' is not a service name (no '/', ',', '=' or space, at most " +
                          std::to_string(kServiceNameBytes - 1) + " characters)");
      }
      copy_string(c.settings.backend_services[i], kServiceNameBytes, name, s.name);
      address.erase(at);
    }
    if (address.find(',') != std::string::npos) {
      throw ConfigError("--backend " + list[i] + ": expected [batch:]HOST:PORT[,service=NAME]");
    }
    copy_string(c.settings.backends[i], kAddressBytes, address, s.name);
  }
  // With discovery, lines given are the fallback while etcd does not answer
  // at start; the default line is not.
  c.settings.backends_given = v.defaulted() ? 0 : 1;
}

std::string backend_value(const Config& c) {
  std::string out;
  for (std::uint32_t i = 0; i < c.settings.backend_count; ++i) {
    out += (i == 0 ? "" : " ") + backend_line_text(c.settings, i);
  }
  return out;
}

void read_etcd_hosts(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& hosts = v.as<std::string>();
  std::string error;
  if (parse_etcd_endpoints(hosts, &error).empty()) throw ConfigError("--" + error);
  copy_string(c.settings.etcd_hosts, kListBytes, hosts, s.name);
}

void read_etcd_root(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& root = v.as<std::string>();
  if (!root.starts_with('/')) throw ConfigError("--etcd-root must start with '/'");
  copy_string(c.settings.etcd_root, kPathBytes, root, s.name);
}

void read_etcd_api(const Setting&, const po::variable_value& v, Config& c) {
  const std::string& api = v.as<std::string>();
  const auto parsed = parse_etcd_api(api);
  if (!parsed) throw ConfigError("--etcd-api must be 'v3' or 'v2', not '" + api + "'");
  c.settings.etcd_api = *parsed;
}

std::string etcd_api_value(const Config& c) {
  return std::string(etcd_api_text(c.settings.etcd_api));
}

/// Service names (etcd directories under etcd-root), kept as "a,b".
void read_services(const Setting& s, const po::variable_value& v, Config& c) {
  const std::vector<std::string> names = split_list(v.as<std::string>());
  if (names.size() > kMaxServices) {
    throw ConfigError("--services: at most " + std::to_string(kMaxServices) + " services");
  }
  std::string list;
  for (const std::string& name : names) {
    if (name.find('/') != std::string::npos || name.size() >= kServiceNameBytes) {
      throw ConfigError("--services: '" + name + "' is not a service name (no '/', at most " +
                        std::to_string(kServiceNameBytes - 1) + " characters)");
    }
    list += (list.empty() ? "" : ",") + name;
  }
  copy_string(c.settings.services, kListBytes, list, s.name);
}

/// The service sessions go to (game_service_of(); the services row is read
/// before), checked here.
void read_game_service(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& game = v.as<std::string>();
  const std::vector<std::string> services = split_list(c.settings.services);
  if (!services.empty() && game_service_of(c.settings.services, game).empty()) {
    throw ConfigError(game.empty()
                          ? "--services names several services: say which one sessions go to with "
                            "--game-service"
                          : "--game-service " + game + " is not one of --services");
  }
  copy_string(c.settings.game_service, kServiceNameBytes, game, s.name);
}

/// An instance name: an etcd key's last part.
void read_game_instance(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& name = v.as<std::string>();
  for (const char ch : name) {
    if (ch == '/' || ch == ',' || static_cast<unsigned char>(ch) <= ' ') {
      throw ConfigError("--game-instance '" + name +
                        "': an instance name (the last part of its etcd key) has no '/', ',', "
                        "space or control character");
    }
  }
  copy_string(c.settings.game_instance, kServiceNameBytes, name, s.name);
}

template <auto M>
std::string text_value(const Config& c) {
  return field(c, M);
}

void read_register_prefix(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& prefix = v.as<std::string>();
  if (!prefix.empty() && (!prefix.starts_with('/') || prefix == "/")) {
    throw ConfigError("--register-prefix must start with '/' and name a directory, e.g. /gateways");
  }
  copy_string(c.settings.register_prefix, kPathBytes, prefix, s.name);
}

/// Checked against the first listener (the listen row is read before) when
/// the gateway registers: the default needs one that is not a wildcard.
void read_register_address(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& address = v.as<std::string>();
  if (c.settings.register_prefix[0] != '\0' || !address.empty()) {
    try {
      advertised_address(address, c.listen.empty() ? "127.0.0.1:0" : c.listen.front());
    } catch (const std::invalid_argument& e) {
      throw ConfigError("--" + std::string(s.name) + ": " + e.what());
    }
  }
  copy_string(c.settings.register_address, kAddressBytes, address, s.name);
}

/// The services of the proto routes and of rebind: those watched (with
/// discovery) or named by backend lines (without). The services and backend
/// rows are read before.
bool service_known(const Config& c, const std::string& name) {
  const std::vector<std::string> services = split_list(c.settings.services);
  if (!services.empty()) return std::find(services.begin(), services.end(), name) != services.end();
  for (std::uint32_t b = 0; b < c.settings.backend_count; ++b) {
    if (name == c.settings.backend_services[b]) return true;
  }
  return false;
}

/// SERVICE,... or "*": the services in rebind mode.
void read_rebind(const Setting& s, const po::variable_value& v, Config& c) {
  std::string list;
  for (const std::string& name : split_list(v.as<std::string>())) {
    if (name != "*" && !service_known(c, name)) {
      throw ConfigError("--rebind: '" + name + "' is not a service of " +
                        (c.settings.services[0] != '\0'
                             ? std::string("--services")
                             : std::string("a backend line (,service=NAME); '*' names the backend "
                                           "lines' game service")));
    }
    list += (list.empty() ? "" : ",") + name;
  }
  copy_string(c.settings.rebind_services, kListBytes, list, s.name);
}

/// FIRST-LAST:SERVICE, repeatable, each value a comma-separated list.
void read_route(const Setting&, const po::variable_value& v, Config& c) {
  Settings& s = c.settings;
  s.route_count = 0;
  std::memset(s.routes, 0, sizeof s.routes);
  const std::string game = game_service_of(s.services, s.game_service);
  for (const std::string& value : v.as<std::vector<std::string>>()) {
    for (const std::string& item : split_list(value)) {
      const auto bad = [&](const std::string& why) {
        std::string text = "--route " + item;
        text.append(": ").append(why);
        text.append(" (expected FIRST-LAST:SERVICE, e.g. 2000-2999:chat-10000)");
        return ConfigError(text);
      };
      const std::size_t dash = item.find('-');
      const std::size_t colon = item.find(':');
      if (dash == std::string::npos || colon == std::string::npos || colon < dash) {
        throw bad("not a range and a service");
      }
      unsigned long first = 0;
      unsigned long last = 0;
      try {
        std::size_t n1 = 0;
        std::size_t n2 = 0;
        first = std::stoul(item.substr(0, dash), &n1);
        last = std::stoul(item.substr(dash + 1, colon - dash - 1), &n2);
        if (n1 != dash || n2 != colon - dash - 1) throw std::invalid_argument("trailing");
      } catch (const std::exception&) {
        throw bad("the range is not two proto numbers");
      }
      if (first > last || last > 65535) throw bad("proto numbers go from FIRST to LAST <= 65535");
      const std::string service = item.substr(colon + 1);
      if (service.empty() || service.size() >= kServiceNameBytes) throw bad("no service name");
      if (service == game) throw bad("messages go to the game service unless routed elsewhere");
      if (!service_known(c, service)) {
        std::string why = s.services[0] != '\0' ? "'" + service + "' is not one of --services"
                                                : "no backend line names service '" + service;
        if (s.services[0] == '\0') why.append("' (,service=").append(service).append(")");
        throw bad(why);
      }
      for (std::uint32_t r = 0; r < s.route_count; ++r) {
        if (first <= s.routes[r].last && s.routes[r].first <= last) {
          throw bad("overlaps " + std::to_string(s.routes[r].first) + "-" +
                    std::to_string(s.routes[r].last) + ":" + s.routes[r].service);
        }
      }
      if (s.route_count == kMaxRoutes) {
        throw bad("at most " + std::to_string(kMaxRoutes) + " routes");
      }
      ProtoRoute& route = s.routes[s.route_count++];
      route.first = static_cast<std::uint16_t>(first);
      route.last = static_cast<std::uint16_t>(last);
      copy_string(route.service, kServiceNameBytes, service, "route");
    }
  }
}

std::string route_value(const Config& c) {
  std::string out;
  for (std::uint32_t r = 0; r < c.settings.route_count; ++r) {
    const ProtoRoute& route = c.settings.routes[r];
    out += (r == 0 ? "" : ",") + std::to_string(route.first) + "-" + std::to_string(route.last) +
           ":" + route.service;
  }
  return out;
}

void read_numbering(const Setting&, const po::variable_value& v, Config& c) {
  const std::string& numbering = v.as<std::string>();
  const auto parsed = parse_frame_numbering(numbering);
  if (!parsed) {
    throw ConfigError("--backend-numbering must be 'gonet2' or 'later', not '" + numbering + "'");
  }
  c.settings.numbering = *parsed;
}

std::string numbering_value(const Config& c) {
  return std::to_string(static_cast<int>(c.settings.numbering));
}

/// A number of processes of one kind; 0: one per `kCpusEach` CPUs, at
/// least one, at most the row's bound.
template <auto M, unsigned kCpusEach>
void read_processes(const Setting& s, const po::variable_value& v, Config& c) {
  std::uint32_t& processes = field(c, M);
  processes = in_range<std::uint32_t>(s, v);
  if (processes == 0) processes = std::clamp(cpus() / kCpusEach, 1u, static_cast<unsigned>(s.hi));
}

void read_frontend_affinity(const Setting& s, const po::variable_value& v, Config& c) {
  const std::string& text = v.as<std::string>();
  if (text == "address") {
    c.settings.frontend_affinity = kAffinityAddress;
  } else if (text == "connection") {
    c.settings.frontend_affinity = kAffinityConnection;
  } else {
    throw ConfigError("--" + std::string(s.name) + " must be address or connection, not '" + text +
                      "'");
  }
}

std::string frontend_affinity_value(const Config& c) {
  return c.settings.frontend_affinity == kAffinityConnection ? "connection" : "address";
}

/// -1: auto, which needs the number of workers (the row before).
void read_idle_spin(const Setting& s, const po::variable_value& v, Config& c) {
  const auto spin = in_range<std::int32_t>(s, v);
  c.settings.idle_spin_us =
      spin >= 0 ? static_cast<std::uint32_t>(spin) : (cpus() >= c.settings.workers + 4 ? 50 : 0);
}

void read_ring_bytes(const Setting&, const po::variable_value& v, Config& c) {
  const auto bytes = v.as<std::uint64_t>();
  if (!std::has_single_bit(bytes) || bytes < (1u << 20) || bytes > (1ull << 30)) {
    throw ConfigError("--ring-bytes must be a power of two between 1 MiB and 1 GiB");
  }
  c.settings.ring_bytes = bytes;
}

/// CIDR ranges joined by ',', or "none": IPv4 ones kept IPv4-mapped.
void read_exempt(const Setting& s, const po::variable_value& v, Config& c) {
  Settings& out = c.settings;
  out.address_limits_exempt_count = 0;
  std::memset(out.address_limits_exempt, 0, sizeof out.address_limits_exempt);
  const std::string& list = v.as<std::string>();
  if (list == "none") return;
  std::istringstream items(list);
  for (std::string item; std::getline(items, item, ',');) {
    std::erase_if(item, [](char ch) { return ch == ' '; });
    if (out.address_limits_exempt_count == kMaxExemptNetworks) {
      throw ConfigError("--" + std::string(s.name) + ": at most " +
                        std::to_string(kMaxExemptNetworks) + " ranges");
    }
    AddressRange& range = out.address_limits_exempt[out.address_limits_exempt_count++];
    if (!parse_range(item, range)) {
      throw ConfigError("--" + std::string(s.name) + ": " + bad_range(item));
    }
  }
  if (out.address_limits_exempt_count == 0) {
    throw ConfigError("--" + std::string(s.name) + ": give address ranges, or 'none'");
  }
}

std::string exempt_value(const Config& c) {
  const Settings& s = c.settings;
  if (s.address_limits_exempt_count == 0) return "none";
  return ranges_text(s.address_limits_exempt, s.address_limits_exempt_count, ",");
}

void take_exempt(Config& to, const Config& from) {
  to.settings.address_limits_exempt_count = from.settings.address_limits_exempt_count;
  std::memcpy(to.settings.address_limits_exempt, from.settings.address_limits_exempt,
              sizeof to.settings.address_limits_exempt);
}

/// A string Settings member of `bytes`: its row's value and take.
template <auto M>
std::string chars_value(const Config& c) {
  return c.settings.*M;
}
template <auto M>
void take_chars(Config& to, const Config& from) {
  std::memcpy(to.settings.*M, from.settings.*M, sizeof(to.settings.*M));
}

void read_tls_cert(const Setting& row, const po::variable_value& v, Config& c) {
  const std::string& path = v.as<std::string>();
  copy_string(c.settings.tls_cert, kPathBytes,
              path.empty() ? path : std::filesystem::absolute(path).string(), row.name);
}

/// After tls-cert: where a listener serves tls or wss, both files are loaded
/// here, so that a missing or mismatched file fails the start or the reload
/// (and `--check`), not the frontend.
void read_tls_key(const Setting& row, const po::variable_value& v, Config& c) {
  const std::string& path = v.as<std::string>();
  Settings& s = c.settings;
  copy_string(s.tls_key, kPathBytes, path.empty() ? path : std::filesystem::absolute(path).string(),
              row.name);
  for (std::uint32_t i = 0; i < s.listener_count; ++i) {
    if ((s.listener_transports[i] & (kTransportTls | kTransportWss)) == 0) continue;
    try {
      (void)net::load_server_tls(s.tls_cert, s.tls_key);
    } catch (const std::runtime_error& e) {
      throw ConfigError("--listen " + c.listen[i] + listener_options_text(s, i) + ": " + e.what());
    }
    return;
  }
}

/// ORIGIN,ORIGIN: each as a browser sends it (scheme://host[:port]).
void read_ws_origins(const Setting& row, const po::variable_value& v, Config& c) {
  const std::string& list = v.as<std::string>();
  std::string_view rest = list;
  while (!rest.empty()) {
    const std::string_view origin = rest.substr(0, rest.find(','));
    rest = origin.size() == rest.size() ? std::string_view() : rest.substr(origin.size() + 1);
    if (origin.empty() || origin.find_first_of(" \t") != std::string_view::npos ||
        origin.find("://") == std::string_view::npos) {
      throw ConfigError("--ws-origins: '" + std::string(origin) +
                        "' is not an origin (scheme://host[:port], joined by ',')");
    }
  }
  copy_string(c.settings.ws_origins, kWsOriginsBytes, list, row.name);
}

constexpr Setting custom(const char* name, Section section, Kind kind, const char* default_text,
                         OnReload on_reload, const char* help,
                         void (*read)(const Setting&, const po::variable_value&, Config&),
                         std::string (*value)(const Config&), double lo = 0, double hi = 0) {
  return {.name = name,
          .section = section,
          .kind = kind,
          .default_text = default_text,
          .on_reload = on_reload,
          .help = help,
          .lo = lo,
          .hi = hi,
          .read = read,
          .value = value};
}
/// A live row of its own shape.
constexpr Setting custom(const char* name, Section section, Kind kind, const char* default_text,
                         OnReload on_reload, const char* help,
                         void (*read)(const Setting&, const po::variable_value&, Config&),
                         std::string (*value)(const Config&),
                         void (*take)(Config&, const Config&)) {
  Setting row = custom(name, section, kind, default_text, on_reload, help, read, value);
  row.take = take;
  return row;
}

constexpr auto kGeneral = Section::kGeneral;
constexpr auto kClients = Section::kClients;
constexpr auto kGame = Section::kGameServices;
constexpr auto kProcesses = Section::kProcesses;
constexpr auto kLive = OnReload::kLive;
constexpr auto kRestart = OnReload::kRestart;
constexpr double kMaxU32 = 4294967295.0;

// The table. Rows are read in this order, so a row may use what the rows
// above it have set (idle-spin-us the number of workers); the reload log
// names changes in this order too.
// clang-format off
const Setting kSettings[] = {
  // ---------------------------------------------------------------- General
  {.name = "instance", .section = kGeneral, .kind = Kind::kString, .default_text = "main",
   .on_reload = kRestart,
   .help = "instance name; the shared-memory segment is /dev/shm/gatehouse-<instance>",
   .read = read_instance, .value = value_of<&Config::instance>},
  {.name = "log-level", .section = kGeneral, .kind = Kind::kString, .default_text = "info",
   .on_reload = kLive, .help = "trace, debug, info, warn, error",
   .read = read_log_level, .value = value_of<&Settings::log_level>,
   .take = take<&Settings::log_level>},
  custom("bin-dir", kGeneral, Kind::kString, "", kRestart,
         "directory of gatehouse-frontend/-worker/-bridge (default: next to this binary, else "
         "where the package installs them, PREFIX/libexec/gatehouse)",
         read_bin_dir, value_of<&Config::bin_dir>),
  plain<&Config::ready_file>("ready-file", kGeneral, Kind::kString, "", kRestart,
         "write 'listen=<addr>' and 'metrics=<addr>' lines here once serving"),
  custom("metrics-listen", kGeneral, Kind::kString, "127.0.0.1:9477", kRestart,
         "host:port of the HTTP endpoint: Prometheus /metrics, and /healthz and /ready for load "
         "balancers (docs/operations.md); loopback by default",
         read_metrics_listen, value_of<&Config::metrics_listen>),
  custom("admin-socket", kGeneral, Kind::kString, "", kRestart,
         "unix socket of gatehousectl (status, sessions, kick, backends, config, reload; "
         "docs/operations.md), made mode 0600 for the gateway's user (default: "
         "/run/gatehouse/<instance>/admin.sock, the unit's RuntimeDirectory)",
         read_admin_socket, value_of<&Config::admin_socket>),
  {.name = "log-connections", .section = kGeneral, .kind = Kind::kString, .default_text = "all",
   .on_reload = kLive,
   .help = "which sessions log their open, login and close (or kick) lines: 'all', 'none', or "
           "'sample:N', one session in N (all of its lines); the metrics count every session "
           "either way. For floods of short connections",
   .read = read_log_connections, .value = log_connections_value,
   .take = take<&Settings::log_connections>},
  // ---------------------------------------------------------------- Clients
  {.name = "listen", .section = kClients, .kind = Kind::kStrings, .default_text = "0.0.0.0:8888",
   .on_reload = kRestart,
   .help = "client listener host:port[,crypto=MODES][,transport=T], repeatable. T: tcp (the "
           "default), tls (the same frames inside TLS: tls-cert, tls-key), ws (WebSocket, one "
           "binary message per frame, for browsers; docs/websocket.md) or wss (WebSocket over "
           "TLS), and kcp (KCP over UDP on the same address and port, as gonet2's agent "
           "served; docs/kcp.md) alone or added: tcp+kcp. MODES: what its clients may "
           "speak, 'any' (the default: gonet2 clients work unchanged, and modern ones) or "
           "modern, modern1, legacy and clear joined by '+'; e.g. crypto=modern for a listener "
           "of new clients only. modern is the key exchange's version 2 (the gateway proves its "
           "key: gateway-key); modern1, its unauthenticated version 1, only where named "
           "(e.g. crypto=any+modern1) and counted (docs/protocol-modern.md). "
           "proxy=v1|v2|optional: behind an L4 load balancer, each connection starts with a "
           "PROXY protocol header naming the client (optional: with or without one), trusted "
           "only from proxy-from=RANGE+RANGE (default 127.0.0.0/8+::1/128); the client it names "
           "is what logs and per-address limits see (docs/proxy-protocol.md)",
   .read = read_listen, .plan = plan_listen,
   .reload_note = "restart; crypto=, proxy= and proxy-from= live"},
  plain<&Config::reuse_port>("reuse-port", kClients, Kind::kBool, "false", kRestart,
         "share the listen ports with other gateway instances (SO_REUSEPORT; each its own "
         "--instance and --metrics-listen): the kernel spreads new connections over them, and "
         "one can drain while the others take the new ones. Set net.ipv4.tcp_migrate_req = 1 "
         "so that the connections still in a draining instance's accept queue move over too"),
  number<&Settings::max_connections>("max-connections", kClients, "65536", kRestart, 1, 1u << 24,
         "most concurrent client connections (sizes the session table)"),
  number<&Settings::max_frame>("max-frame", kClients, "65535", kLive, 6, 65535,
         "largest client payload in bytes; larger frames kick (frame_too_large)"),
  seconds<&Settings::read_timeout_ms>("read-timeout", kClients, "15", kLive, 0.1, 86400,
         "seconds a connection has for each whole frame (trickled bytes do not count, as in "
         "gonet2) before it is closed (read_timeout)"),
  number<&Settings::rpm_limit>("rpm-limit", kClients, "200", kLive, 0, kMaxU32,
         "client frames allowed per minute per session, a token bucket refilled at this "
         "rate, 0 = no limit (rpm_exceeded)"),
  number<&Settings::rpm_burst>("rpm-burst", kClients, "0", kLive, 0, kMaxU32,
         "client frames a session may send at once before the per-minute rate applies, "
         "0 = rpm-limit (a full minute's worth; no new burst until it has refilled)"),
  number<&Settings::bpm_limit>("bpm-limit", kClients, "0", kLive, 0, kMaxU32,
         "client payload bytes allowed per minute per session, a token bucket, 0 = no limit "
         "(bpm_exceeded). Off by default: gonet2 had none; docs/security.md suggests values"),
  number<&Settings::bpm_burst>("bpm-burst", kClients, "0", kLive, 0, kMaxU32,
         "client payload bytes a session may send at once, 0 = bpm-limit"),
  number<&Settings::max_connections_per_ip>("max-connections-per-ip", kClients, "0", kLive, 0,
         1u << 24,
         "most concurrent connections from one client address (an IPv4 address, an IPv6 /64); "
         "more are refused at accept. 0: no limit. Players behind one NAT share an address: "
         "leave room for them"),
  number<&Settings::txqueuelen>("txqueuelen", kClients, "128", kLive, 1, 1u << 20,
         "frames queued to a client that is not reading before it is kicked (slow_consumer)"),
  number<&Settings::sockbuf>("sockbuf", kClients, "32767", kLive, 0, 64u << 20,
         "SO_RCVBUF/SO_SNDBUF per connection in bytes, 0 = kernel default"),
  seconds<&Settings::linger_ms>("linger", kClients, "2", kLive, 0, 60,
         "seconds a kicked connection waits for the client's FIN after the last byte"),
  {.name = "login", .section = kClients, .kind = Kind::kString, .default_text = "any",
   .on_reload = kLive,
   .help = "login provider (docs/login.md; what each proves: docs/security.md): "
           "'signed:<public key file>[,<file>...]' (Ed25519-signed tokens from "
           "`gatehouse token`, several keys while the signing key rotates), 'tokens:<file>' "
           "(lines 'blake2b256:<hash of the token> <user id>', from `gatehouse token-hash`), or "
           "'auth:<host>:<port>' (the studio's user centre answers each login over gRPC, "
           "proto/auth.proto; auth-timeout, auth-max-inflight), or "
           "'any' (development only: proves nothing, user ids derived from open_udid collide; "
           "refused on a listener that is not loopback unless login-any-allow-public). The "
           "token is the login's client_certificate; each new worker reads the files again",
   .read = read_login, .plan = plan_login,
   .example_text = "signed:/etc/gatehouse/login-token.pub"},
  {.name = "login-audience", .section = kClients, .kind = Kind::kString, .default_text = "",
   .on_reload = kLive,
   .help = "the audience signed tokens must name (`gatehouse token --audience`); a token for "
           "another audience, or with none when this is set, is refused (wrong_audience)",
   .read = read_login_audience, .value = login_audience_value, .take = take_login_audience},
  plain<&Config::login_any_allow_public>("login-any-allow-public", kClients, Kind::kBool,
         "false", kLive,
         "let 'login = any' serve a listener that is not loopback (a development machine "
         "reached by others); the gateway warns at start. Never in production"),
  number<&Settings::login_failures_per_ip>("login-failures-per-ip", kClients, "20", kLive, 0,
         1u << 20,
         "failed logins from one address (IPv4, IPv6 /64; not address-limits-exempt) per "
         "login-failure-window, all at once or spread; beyond it the address's logins are "
         "refused unchecked (address_backoff) until the window gives one back. Each worker "
         "allows its share (limit / workers, at least 1). 0: no limit"),
  number<&Settings::login_failures_per_user>("login-failures-per-user", kClients, "10", kLive,
         0, 1u << 20,
         "failed logins against one user id per login-failure-window (only failures whose "
         "user id is authentic: a genuine signed token, expired or for another audience); "
         "beyond it that user's logins are refused (user_backoff). Each worker allows its "
         "share. 0: no limit"),
  seconds<&Settings::login_failure_window_ms>("login-failure-window", kClients, "60", kLive,
         0.1, 86400, "seconds over which login-failures-per-ip and -per-user failures are "
         "allowed (a token bucket: the limit at once, then limit / window a second)"),
  seconds<&Settings::auth_timeout_ms>("auth-timeout", kClients, "3", kLive, 0.01, 600,
         "seconds the auth service (login = auth:) has to answer a login; then the login is "
         "refused (auth_timeout) and the call cancelled"),
  number<&Settings::auth_max_inflight>("auth-max-inflight", kClients, "1000", kLive, 1,
         1u << 20,
         "logins the auth service may have unanswered at once, over the whole gateway; more "
         "are refused at once (auth_busy) rather than queued behind a slow user centre"),
  {.name = "duplicate-login", .section = kClients, .kind = Kind::kString,
   .default_text = "replace", .on_reload = kLive,
   .help = "a second login of a logged-in user, on any worker: 'replace' (the older session is "
           "closed, reason replaced, after its queued output; its game stream ends before the "
           "new one opens), 'refuse' (the newcomer's login fails, duplicate_login) or 'allow' "
           "(both live, each with a game stream, as gonet2 did). Applies to logins after a "
           "change",
   .read = read_duplicate_login, .value = duplicate_login_value,
   .take = take<&Settings::duplicate_login>},
  {.name = "gateway-key", .section = kClients, .kind = Kind::kStrings, .default_text = "",
   .on_reload = kLive,
   .help = "the gateway's private key file for the modern key exchange (version 2: the "
           "gateway proves its identity; clients pin the public key, FILE.pub), repeatable "
           "(at most 4) so that keys can rotate; owned by the gateway's user, mode 0600. Create "
           "one with `gatehouse keygen --out FILE`. Without one, modern clients are kicked "
           "(unknown_gateway_key). Each new worker reads the files (a reload rolls the workers)",
   .read = read_gateway_key, .value = gateway_key_value, .take = take_gateway_key,
   .example_text = "/etc/gatehouse/gateway.key"},
  number<&Settings::txqueue_bytes>("txqueue-bytes", kClients, "1048576", kLive, 4096, 1u << 30,
         "bytes queued to a client that is not reading before it is kicked (slow_consumer)"),
  seconds<&Settings::write_timeout_ms>("write-timeout", kClients, "10", kLive, 0.1, 86400,
         "seconds a client with output waiting may take no byte of it before it is kicked "
         "(slow_consumer)"),
  seconds<&Settings::login_timeout_ms>("login-timeout", kClients, "10", kLive, 0.1, 86400,
         "seconds from accept to login before the connection is closed (login_timeout)"),
  number<&Settings::prelogin_frames>("prelogin-frames", kClients, "8", kLive, 2, 1u << 20,
         "frames a connection may send before it logs in (a key exchange and a login take "
         "two); more are kicked (prelogin_exceeded)"),
  number<&Settings::prelogin_bytes>("prelogin-bytes", kClients, "16384", kLive, 256, 1u << 24,
         "bytes a connection may send before it logs in; a frame that would go over is "
         "kicked as soon as its size is in (prelogin_exceeded)"),
  number<&Settings::connect_rate>("connect-rate", kClients, "2000", kLive, 0, 1u << 24,
         "new connections accepted a second in total (a token bucket holding one second's "
         "worth); beyond it the frontend stops accepting until the bucket refills, and new "
         "connections wait in the kernel's listen queue. Each costs a worker a key exchange. "
         "0: no limit"),
  number<&Settings::connect_rate_per_ip>("connect-rate-per-ip", kClients, "100", kLive, 0,
         1u << 24,
         "new connections accepted a second from one client address (an IPv4 address, an "
         "IPv6 /64; a token bucket holding one second's worth); more are refused at accept. "
         "Players behind one NAT share an address. 0: no limit"),
  {.name = "address-limits-exempt", .section = kClients, .kind = Kind::kString,
   .default_text = "127.0.0.1/32,::1/128", .on_reload = kLive,
   .help = "address ranges that max-connections-per-ip and connect-rate-per-ip do not apply "
           "to, joined by ',', or 'none': by default the loopback addresses, where a local TLS "
           "terminator or proxy, or a load generator, brings many players from one address",
   .read = read_exempt, .value = exempt_value, .take = take_exempt},
  custom("tls-cert", kClients, Kind::kString, "", kLive,
         "PEM certificate chain (the server's first) of the tls and wss listeners. Read again "
         "at each reload, so a renewed certificate is served to new connections without a "
         "restart (connections keep theirs)",
         read_tls_cert, chars_value<&Settings::tls_cert>, take_chars<&Settings::tls_cert>),
  custom("tls-key", kClients, Kind::kString, "", kLive,
         "PEM private key of tls-cert; others than its owner and group may not read it. "
         "Checked against the certificate at start, reload and --check",
         read_tls_key, chars_value<&Settings::tls_key>, take_chars<&Settings::tls_key>),
  custom("ws-origins", kClients, Kind::kString, "", kLive,
         "origins a WebSocket upgrade (ws, wss) may come from, joined by ',' (e.g. "
         "https://play.example.com); an upgrade naming another is refused (403, "
         "handshake_failed); one naming none (a native client) is served. Empty: any origin",
         read_ws_origins, chars_value<&Settings::ws_origins>, take_chars<&Settings::ws_origins>),
  // KCP over UDP (--listen ...,transport=kcp): gonet2's names and defaults.
  number<&Settings::udp_sockbuf>("udp-sockbuf", kClients, "4194304", kRestart, 0, 64u << 20,
         "SO_RCVBUF/SO_SNDBUF of each KCP listener's UDP socket in bytes (all its sessions "
         "share it), 0 = kernel default"),
  number<&Settings::udp_sndwnd>("udp-sndwnd", kClients, "32", kLive, 1, kcp::kMaxWindow,
         "KCP send window in segments: at most this many (and the client's free window) in "
         "flight per session. For new sessions"),
  number<&Settings::udp_rcvwnd>("udp-rcvwnd", kClients, "32", kLive, 1, kcp::kMaxWindow,
         "KCP receive window in segments (each up to udp-mtu - 24 bytes) per session. For new "
         "sessions"),
  number<&Settings::udp_mtu>("udp-mtu", kClients, "1280", kLive, 50, 1500,
         "largest KCP datagram sent, in bytes. For new sessions"),
  number<&Settings::kcp_nodelay>("nodelay", kClients, "1", kLive, 0, 1,
         "KCP nodelay: 1 = minimum retransmission timeout 30 ms and backoff x1.5, 0 = 100 ms "
         "and x2. For new sessions"),
  number<&Settings::kcp_interval_ms>("interval", kClients, "20", kLive, 10, 5000,
         "KCP update interval in milliseconds: acks and resends wait at most this long"),
  number<&Settings::kcp_resend>("resend", kClients, "1", kLive, 0, 1000,
         "KCP fast resend: a segment is sent again after this many acks of later ones, "
         "0 = only on timeout. For new sessions"),
  number<&Settings::kcp_nc>("nc", kClients, "1", kRestart, 0, 1,
         "KCP congestion control off: 1 (gonet2's value), the windows alone pace a session. "
         "0 (a congestion window) is not implemented: the gateway warns and runs as 1"),
  number<&Settings::udp_dscp>("dscp", kClients, "46", kRestart, 0, 63,
         "DSCP of the KCP datagrams sent (46: expedited forwarding, as gonet2)"),
  number<&Settings::udp_sessions_per_ip>("udp-sessions-per-ip", kClients, "64", kLive, 0,
         1u << 24,
         "most KCP sessions from one address (IPv4, IPv6 /64; not address-limits-exempt), "
         "within max-connections-per-ip: UDP source addresses are easily forged. 0: no limit"),
  number<&Settings::udp_pending_sessions>("udp-pending-sessions", kClients, "1024", kLive, 1,
         1u << 24,
         "most KCP sessions not logged in yet, in all: KCP has no handshake, so anyone can "
         "forge openers from any address; they wait here until login-timeout"),
  // ---------------------------------------------------------- Game services
  custom("backend", kGame, Kind::kStrings, "127.0.0.1:50051", kRestart,
         "game service gRPC address host:port, repeatable (at most 8); sessions are spread by "
         "user id (rendezvous hashing). host:port speaks the gonet2 contract (a stream per "
         "session); batch:host:port the batched one (proto/batch.proto, one stream for all). "
         "A line ending in ,service=NAME is an instance of service NAME (see route), not of the "
         "game service. "
         "With services (discovery through etcd), the lines given are only the fallback while "
         "etcd does not answer at start",
         read_backend, backend_value),
  custom("backend-numbering", kGame, Kind::kString, "gonet2", kRestart,
         "Game.FrameType numbering of the game services: 'gonet2' (Kick=1, Ping=2) or 'later' "
         "(Register=1, Kick=2, Ping=3)",
         read_numbering, numbering_value),
  seconds<&Settings::backend_wait_ms>("backend-wait", kGame, "60", kRestart, 0, 86400,
         "seconds logged-in sessions wait for a game service that went away (after a bridge "
         "restart, or a batched link that broke) before they are kicked (backend_unavailable); "
         "sessions that log in while it is away are kicked at once"),
  // Discovery through etcd (docs/discovery.md): gonet2's names and defaults.
  custom("services", kGame, Kind::kString, "", kRestart,
         "game services found through etcd, comma-separated (gonet2's --services, e.g. "
         "game-10000): their instances are the keys ETCD-ROOT/SERVICE/INSTANCE = host:port (or "
         "batch:host:port), watched, so instances join and leave while the gateway runs. Empty: "
         "no discovery, the backend lines serve; set, the backend lines given serve only when "
         "etcd does not answer at start (without them the gateway refuses to start)",
         read_services, text_value<&Settings::services>),
  custom("game-service", kGame, Kind::kString, "", kRestart,
         "which of services the sessions go to (by rendezvous hashing of the user id over its "
         "instances; a session stays on its instance). Default: the only one, else game-10000 "
         "(gonet2's game); the others are watched: those route names get their messages, the rest are counted",
         read_game_service, text_value<&Settings::game_service>),
  custom("rebind", kGame, Kind::kString, "", kRestart,
         "services in rebind mode, comma-separated ('*': every one, the backend lines' too); the "
         "others are sticky (gonet2's behaviour: a session stays on its instance). A rebind "
         "service is stateless: when its instance leaves the view the session's stream is "
         "closed there and opened on the instance routing picks now; when its stream fails the "
         "session is opened on another live instance (retried within backend-wait); the client "
         "notices nothing. Only past backend-wait is it closed (backend_unavailable)",
         read_rebind, text_value<&Settings::rebind_services>),
  custom("game-instance", kGame, Kind::kString, "", kRestart,
         "the instance of the game service every new session goes to, by its name (the last part "
         "of its etcd key, e.g. game1; gonet2's agent sent every session to its DEFAULT_GSID "
         "game1 this way), instead of rendezvous hashing of the user id. While that instance is "
         "not live, logins are refused (backend_unavailable). An auth service's reply may name "
         "the instance of each login instead (docs/login.md). Empty: hashing",
         read_game_instance, text_value<&Settings::game_instance>),
  {.name = "route", .section = kGame, .kind = Kind::kStrings, .default_text = "",
   .on_reload = kRestart,
   .help = "FIRST-LAST:SERVICE, repeatable or comma-separated: client messages whose proto "
           "number is in the range go to SERVICE (one of services, or without discovery a "
           "service named by backend lines: --backend HOST:PORT,service=NAME) instead of the "
           "game service; each session opens its stream there at its first such message, "
           "with the same userid. Ranges may not overlap",
   .read = read_route, .value = route_value},
  custom("etcd-hosts", kGame, Kind::kString, "http://127.0.0.1:2379", kRestart,
         "etcd endpoints, comma-separated, tried in turn; http only", read_etcd_hosts,
         text_value<&Settings::etcd_hosts>),
  custom("etcd-api", kGame, Kind::kString, "v3", kRestart,
         "which of etcd's APIs holds the keys (they are apart): 'v3' (gRPC) or 'v2' (the v2 keys "
         "API over HTTP, which gonet2 deployments write to; etcd 3.4 serves it with "
         "--enable-v2)",
         read_etcd_api, etcd_api_value),
  custom("etcd-root", kGame, Kind::kString, "/backends", kRestart,
         "the etcd directory the services are under", read_etcd_root,
         text_value<&Settings::etcd_root>),
  seconds<&Settings::discovery_wait_ms>("discovery-wait", kGame, "5", kRestart, 0.1, 20,
         "seconds the bridge waits for etcd at start before it falls back on the backend lines "
         "given, or refuses to start; once running, an etcd that goes away leaves the last "
         "instances known in use"),
  // The gateway in etcd (docs/discovery.md "The gateway in etcd").
  custom("register-prefix", kGame, Kind::kString, "", kRestart,
         "the gateway registers itself in etcd (etcd-hosts; with or without services) under "
         "this prefix, e.g. /gateways: the key PREFIX/GATEWAY-ID holds a JSON object (what "
         "clients dial, the listeners with their transports and crypto, the version and the "
         "load), under a lease of register-ttl kept alive while the bridge runs, refreshed as "
         "the load changes, and deleted when a drain starts. Empty: not registered",
         read_register_prefix, text_value<&Settings::register_prefix>),
  number<&Settings::register_ttl_s>("register-ttl", kGame, "10", kRestart, 2, 3600,
         "seconds the gateway's key outlives a gateway that died or lost etcd (its lease's "
         "TTL; kept alive every third of it)"),
  custom("register-address", kGame, Kind::kString, "", kRestart,
         "what clients should dial, as the gateway's key says it: HOST:PORT, or HOST with the "
         "first listen's port. Default: the first listen as bound, which must then not be a "
         "wildcard address (0.0.0.0, ::)",
         read_register_address, text_value<&Settings::register_address>),
  number<&Settings::game_backlog_bytes>("game-backlog-bytes", kGame, "4194304", kRestart,
         65536, 1u << 30,
         "bytes of game messages the bridge keeps for a worker whose ring is full (a stopped "
         "or overloaded worker); over it the bridge stops reading the game calls that feed "
         "that worker (a batched link: the whole link) until half of it is written, and gRPC "
         "flow control slows the game service. Nothing is dropped"),
  // -------------------------------------------------------------- Processes
  custom("workers", kProcesses, Kind::kUint32, "0", kRestart,
         "agent-worker processes, 0 = one per two CPUs, at least one (the frontend, the "
         "bridge and the game services need the rest; docs/benchmarks.md item 14)",
         read_processes<&Settings::workers, 2>, value_of<&Settings::workers>, 0, kMaxWorkers),
  // A small message costs a frontend about 2.7 times what it costs a worker
  // (the capacity model in docs/benchmarks.md): half as many of them.
  custom("frontends", kProcesses, Kind::kUint32, "0", kRestart,
         "frontend processes (each owns the client sockets the kernel gives it on every "
         "listener, SO_REUSEPORT), 0 = one per four CPUs, at least one (docs/benchmarks.md, "
         "the capacity model)",
         read_processes<&Settings::frontends, 4>, value_of<&Settings::frontends>, 0,
         kMaxFrontends),
  custom("frontend-affinity", kProcesses, Kind::kString, "address", kRestart,
         "how new clients are spread over several frontends: 'address' (by client address, "
         "IPv4 or IPv6 /64, so max-connections-per-ip and connect-rate-per-ip hold exactly) or "
         "'connection' (by address and port: even behind a proxy or NAT that shows few "
         "addresses, with those limits then applied by each frontend)",
         read_frontend_affinity, frontend_affinity_value),
  // A bridge's core carries about 2.5 times the gonet2 messages of a
  // frontend's (the capacity model in docs/benchmarks.md): one bridge per
  // eight CPUs keeps up with the frontends' one per four.
  custom("bridges", kProcesses, Kind::kUint32, "0", kRestart,
         "backend-bridge processes (shards: each carries the game streams of its share of the "
         "users, every session of one user in the same one; docs/architecture.md, \"Bridge "
         "shards\"), 0 = one per eight CPUs, at least one",
         read_processes<&Settings::bridges, 8>, value_of<&Settings::bridges>, 0, kMaxBridges),
  custom("idle-spin-us", kProcesses, Kind::kInt32, "-1", kRestart,
         "microseconds an idle frontend/worker/bridge spins before it sleeps; spinning "
         "saves a wakeup only where every gateway process has a core of its own "
         "(-1 = auto: 50 when there are at least workers + 4 CPUs, else 0)",
         read_idle_spin, value_of<&Settings::idle_spin_us>, -1, 10'000),
  custom("ring-bytes", kProcesses, Kind::kUint64, "1048576", kRestart,
         "bytes per shared-memory ring (power of two, >= 1 MiB)",
         read_ring_bytes, value_of<&Settings::ring_bytes>),
  seconds<&Config::drain_wait_ms>("drain-wait", kProcesses, "0", kLive, 0, 86400,
         "seconds SIGTERM lets sessions end on their own (no new connections; with "
         "reuse-port they go to the other instances) before it closes them with shutdown; "
         "0 = at once, as gonet2 did. The drain is over early when every player has left"),
  seconds<&Settings::drain_timeout_ms>("drain-timeout", kProcesses, "10", kLive, 0.1, 3600,
         "seconds SIGTERM waits for sessions to close before cutting them"),
  seconds<&Config::hang_timeout_ms>("hang-timeout", kProcesses, "3", kLive, 0.5, 3600,
         "seconds without a heartbeat after which a child is considered hung, killed and "
         "restarted"),
  seconds<&Config::restart_backoff_max_ms>("restart-backoff-max", kProcesses, "5", kLive, 0.01,
         600,
         "seconds: most a crash-looping child waits before its next restart (the first "
         "restart is immediate, then 0.1 s doubling up to this)"),
};
// clang-format on

/// `text` as comment lines of at most `width` columns.
void comment(std::ostream& out, const std::string& text, std::size_t width = 78) {
  std::istringstream words(text);
  std::string word;
  std::string line = "#";
  while (words >> word) {
    if (line.size() > 1 && line.size() + 1 + word.size() > width) {
      out << line << "\n";
      line = "#";
    }
    line += " " + word;
  }
  if (line.size() > 1) out << line << "\n";
}

}  // namespace

std::string backend_line_text(const Settings& s, std::uint32_t i) {
  std::string line = s.backends[i];
  if (s.backend_services[i][0] != '\0') line += std::string(",service=") + s.backend_services[i];
  return line;
}

std::string listener_options_text(const Settings& s, std::uint32_t i) {
  std::string out = ",crypto=" + crypto_modes_text(s.listener_crypto[i]);
  if (const std::uint8_t transports = s.listener_transports[i]; transports != kTransportTcp) {
    std::string names;
    for (const auto& [bit, name] : kTransportNames) {
      if ((transports & bit) != 0) names += (names.empty() ? "" : "+") + std::string(name);
    }
    out += ",transport=" + names;
  }
  if (s.listener_proxy[i] == ProxyMode::kNone) return out;
  out += ",proxy=" + std::string(proxy_mode_text(s.listener_proxy[i]));
  out += ",proxy-from=" + ranges_text(s.listener_proxy_from[i],
                                      std::min(s.listener_proxy_from_count[i], kMaxProxyNetworks),
                                      "+");
  return out;
}

std::span<const Setting> settings_table() {
  return kSettings;
}

const char* section_title(Section section) {
  switch (section) {
    case Section::kGeneral:
      return "General";
    case Section::kClients:
      return "Clients";
    case Section::kGameServices:
      return "Game services";
    case Section::kProcesses:
      return "Processes";
  }
  return "?";
}

std::string reload_text(const Setting& s) {
  return s.reload_note != nullptr         ? s.reload_note
         : s.on_reload == OnReload::kLive ? "live"
                                          : "restart";
}

std::string help_text(const Setting& s) {
  return std::string(s.help) + " [reload: " + reload_text(s) + "]";
}

std::string plan_name(const Setting& s) {
  return s.kind == Kind::kSeconds ? std::string(s.name) + "-ms" : std::string(s.name);
}

std::string example_config() {
  std::ostringstream out;
  out << "# Gatehouse configuration: every setting with its default. The same names\n"
         "# work as command-line flags (--name value), which win over this file.\n"
         "#   gatehouse --config /etc/gatehouse/main.conf   (systemd: gatehouse@main)\n"
         "# SIGHUP (systemctl reload) reads it again: 'reload: live' settings change\n"
         "# then, the others ('reload: restart') keep their running values until a\n"
         "# restart.\n"
         "#\n"
         "# Written by `gatehouse --print-example-config` from the settings table\n"
         "# (supervisor/src/settings_table.cc): change the table, then run that.\n";
  std::optional<Section> section;
  for (const Setting& s : kSettings) {
    if (s.section != section) {
      section = s.section;
      out << "\n# ======== " << section_title(s.section) << "\n";
    }
    out << "\n";
    comment(out, s.help);
    // A string that is not set by default is shown commented out.
    const bool unset = *s.default_text == '\0';
    if (s.example_text != nullptr) {
      out << s.name << " = " << s.example_text << "  # reload: " << reload_text(s)
          << " (default: " << (unset ? "none" : s.default_text) << ")\n";
    } else {
      out << (unset ? "# " : "") << s.name << " =" << (unset ? "" : " ") << s.default_text
          << "  # reload: " << reload_text(s) << "\n";
    }
  }
  return out.str();
}

}  // namespace gatehouse::supervisor
