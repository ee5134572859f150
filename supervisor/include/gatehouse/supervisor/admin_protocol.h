// The admin socket's protocol (gatehousectl <-> the supervisor;
// docs/operations.md, "gatehousectl"). One request per connection, text
// lines, so that `socat - UNIX-CONNECT:PATH` speaks it too:
//
//   request:   one line, the command's words as gatehousectl takes them
//              ("kick 1001 cheating", "backend disable game1"), at most
//              kMaxRequestBytes, ended by '\n'
//   response:  "ok N\n" or "error N\n", then N lines of text, then the
//              supervisor closes the connection
//
// Every response line is escaped as log lines are (log_text(): control
// bytes, quotes and invalid UTF-8 as \n, \", \xHH), so no value can forge a
// line or write a terminal escape; "error" lines say why, starting with
// the first.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gatehouse/contract/metrics.h"

namespace gatehouse::supervisor::admin {

inline constexpr std::size_t kMaxRequestBytes = 1024;
/// sockaddr_un's sun_path, its terminating 0 included.
inline constexpr std::size_t kSocketPathBytes = 108;

/// Where instance `instance`'s socket is when admin-socket is not set: the
/// systemd unit's RuntimeDirectory (/run/gatehouse/<instance>).
std::string default_socket(std::string_view instance);

/// What a request asks for. kick's target is a connection id as `sessions`
/// shows it (0x...) or a user id; the rest of its line is the reason the
/// client is told.
struct Request {
  metrics::AdminCommand command = metrics::kAdminInvalid;
  std::optional<std::int64_t> user;  ///< sessions --user ID, kick USER
  std::uint64_t conn = 0;            ///< kick 0x...
  std::string name;                  ///< backend disable|enable NAME
  std::string reason;                ///< kick: the rest of the line
};

/// One request line (without its '\n'): the request, or why it is not one
/// (the server follows that with usage()).
std::variant<Request, std::string> parse_request(std::string_view line);

/// The usage of every command, for gatehousectl --help and bad requests.
std::string_view usage();

struct Response {
  bool ok = true;
  std::vector<std::string> lines;  ///< as they are: encode() escapes them

  static Response error(std::string why) { return {false, {std::move(why)}}; }
};

/// `text`'s lines (a message of several: a parse error and its hint).
std::vector<std::string> lines_of(std::string_view text);

/// "ok N\n" / "error N\n" and the escaped lines.
std::string encode(const Response& response);
/// The client's side: a whole response as received (the connection closed),
/// or nullopt when it is not one (cut short, or not this protocol).
std::optional<Response> decode(std::string_view text);

/// gatehousectl's call: sends `line` to the socket at `path` and waits up
/// to `timeout` for the whole response; or says why there is none.
std::variant<Response, std::string> call(const std::string& path, std::string_view line,
                                         std::chrono::milliseconds timeout);

}  // namespace gatehouse::supervisor::admin
