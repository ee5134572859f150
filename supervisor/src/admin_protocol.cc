#include "gatehouse/supervisor/admin_protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

#include "gatehouse/base/log_text.h"
#include "gatehouse/contract/control.h"

namespace gatehouse::supervisor::admin {
namespace {

using Parsed = std::variant<Request, std::string>;

/// The next word of `line` (spaces between words), which moves past it.
std::string_view next_word(std::string_view& line) {
  const std::size_t start = line.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    line = {};
    return {};
  }
  line.remove_prefix(start);
  const std::size_t end = std::min(line.find(' '), line.size());
  const std::string_view word = line.substr(0, end);
  line.remove_prefix(end);
  return word;
}

std::string_view trimmed(std::string_view text) {
  const std::size_t start = text.find_first_not_of(' ');
  if (start == std::string_view::npos) return {};
  return text.substr(start, text.find_last_not_of(' ') - start + 1);
}

template <class T>
std::optional<T> number(std::string_view text, int base = 10) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value, base);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

Request request_for(metrics::AdminCommand command) {
  Request r;
  r.command = command;
  return r;
}

Parsed no_arguments(metrics::AdminCommand command, std::string_view rest) {
  if (!trimmed(rest).empty()) {
    return std::string(metrics::kAdminCommandNames[command]) + " takes no arguments";
  }
  return request_for(command);
}

Parsed parse_sessions(std::string_view rest) {
  Request r = request_for(metrics::kAdminSessions);
  if (trimmed(rest).empty()) return r;
  const std::string_view flag = next_word(rest);
  const auto user = number<std::int64_t>(next_word(rest));
  if (flag != "--user" || !user || !trimmed(rest).empty()) {
    return std::string("usage: sessions [--user ID]");
  }
  r.user = user;
  return r;
}

Parsed parse_kick(std::string_view rest) {
  const std::string_view target = next_word(rest);
  Request r = request_for(metrics::kAdminKick);
  r.reason = trimmed(rest);
  if (target.starts_with("0x")) {
    const auto conn = number<std::uint64_t>(target.substr(2), 16);
    if (!conn || *conn == 0) return "kick: " + std::string(target) + " is not a connection id";
    r.conn = *conn;
  } else if (const auto user = number<std::int64_t>(target)) {
    r.user = user;
  } else {
    return std::string(
        "usage: kick USER|CONN [REASON] (a user id, or a connection id 0x... as sessions shows "
        "it)");
  }
  if (r.reason.size() > kKickReasonBytes) {
    return "kick: the reason is longer than " + std::to_string(kKickReasonBytes) + " bytes";
  }
  return r;
}

Parsed parse_backend(std::string_view rest) {
  const std::string_view action = next_word(rest);
  const std::string_view name = next_word(rest);
  if ((action != "disable" && action != "enable") || name.empty() || !trimmed(rest).empty()) {
    return std::string("usage: backend disable|enable NAME (a name as backends shows it)");
  }
  if (name.size() >= metrics::kRoutingNameBytes) {
    return "backend: the name is longer than " + std::to_string(metrics::kRoutingNameBytes - 1) +
           " bytes";
  }
  Request r = request_for(action == "disable" ? metrics::kAdminBackendDisable
                                              : metrics::kAdminBackendEnable);
  r.name = name;
  return r;
}

}  // namespace

std::string default_socket(std::string_view instance) {
  return "/run/gatehouse/" + std::string(instance) + "/admin.sock";
}

std::string_view usage() {
  return "status                        state of the gateway: processes, connections, sessions\n"
         "sessions [--user ID]          the sessions (connection id, user, address, state, ...), "
         "or those of one user\n"
         "kick USER|CONN [REASON]       closes every session of user USER, or connection CONN "
         "(0x..., as sessions shows it); the client is told REASON\n"
         "backends                      the game-service instances: state, reachable, sessions\n"
         "backend disable|enable NAME   no new session goes to instance NAME (those on it stay); "
         "enable undoes it\n"
         "config                        the effective configuration, each value with its "
         "origin (file, flag, default)\n"
         "reload                        checks the configuration read again and, if it passes, "
         "applies it and replaces the workers; says why when it is refused\n";
}

std::variant<Request, std::string> parse_request(std::string_view line) {
  if (line.size() > kMaxRequestBytes) {
    return "request longer than " + std::to_string(kMaxRequestBytes) + " bytes";
  }
  std::string_view rest = line;
  const std::string_view command = next_word(rest);
  if (command.empty()) return std::string("empty request");
  if (command == "status") return no_arguments(metrics::kAdminStatus, rest);
  if (command == "sessions") return parse_sessions(rest);
  if (command == "kick") return parse_kick(rest);
  if (command == "backends") return no_arguments(metrics::kAdminBackends, rest);
  if (command == "backend") return parse_backend(rest);
  if (command == "config") return no_arguments(metrics::kAdminConfig, rest);
  if (command == "reload") return no_arguments(metrics::kAdminReload, rest);
  return "unknown command: " + std::string(command);
}

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const std::size_t eol = std::min(text.find('\n'), text.size());
    lines.emplace_back(text.substr(0, eol));
    text.remove_prefix(std::min(eol + 1, text.size()));
  }
  return lines;
}

std::string encode(const Response& response) {
  std::string out = (response.ok ? "ok " : "error ") + std::to_string(response.lines.size()) + "\n";
  for (const std::string& line : response.lines) {
    out += log_text(line, std::numeric_limits<std::size_t>::max());
    out += '\n';
  }
  return out;
}

std::optional<Response> decode(std::string_view text) {
  const std::size_t end = text.find('\n');
  if (end == std::string_view::npos) return std::nullopt;
  std::string_view status = text.substr(0, end);
  text.remove_prefix(end + 1);
  Response r;
  const std::string_view word = next_word(status);
  if (word != "ok" && word != "error") return std::nullopt;
  r.ok = word == "ok";
  const auto count = number<std::size_t>(trimmed(status));
  if (!count) return std::nullopt;
  for (std::size_t i = 0; i < *count; ++i) {
    const std::size_t eol = text.find('\n');
    if (eol == std::string_view::npos) return std::nullopt;
    r.lines.emplace_back(text.substr(0, eol));
    text.remove_prefix(eol + 1);
  }
  if (!text.empty()) return std::nullopt;
  return r;
}

std::variant<Response, std::string> call(const std::string& path, std::string_view line,
                                         std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return "socket path too long: " + path;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return "cannot connect to " + path + ": " + why;
  }
  const std::string request = std::string(line) + "\n";
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool sent = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(request.size());
  while (sent) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (!sent) return "cannot send the request to " + path;
  if (auto response = decode(received)) return std::move(*response);
  return received.empty()
             ? "no answer from " + path + " within " + std::to_string(timeout.count() / 1000) + " s"
             : "an answer cut short, or not gatehouse's, from " + path;
}

}  // namespace gatehouse::supervisor::admin
