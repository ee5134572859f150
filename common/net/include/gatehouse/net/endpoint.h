// "host:port" and "[v6]:port" as typed on command lines.
#pragma once

#include <cstdint>
#include <string>

namespace gatehouse {

struct Endpoint {
  std::string host;  ///< without brackets
  std::uint16_t port = 0;
};

/// Throws std::invalid_argument saying what is wrong with `text`. Port 0 is
/// accepted only with `allow_port_zero` (a listener that picks its port).
Endpoint parse_endpoint(const std::string& text, bool allow_port_zero = false);

}  // namespace gatehouse
