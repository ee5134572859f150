#include "gatehouse/net/endpoint.h"

#include <stdexcept>

namespace gatehouse {

Endpoint parse_endpoint(const std::string& text, bool allow_port_zero) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw std::invalid_argument("expected HOST:PORT, got '" + text + "'");
  }
  Endpoint e;
  e.host = text.substr(0, colon);
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') {
    e.host = e.host.substr(1, e.host.size() - 2);  // [::1]:8888
  }
  const std::string port = text.substr(colon + 1);
  std::size_t used = 0;
  unsigned long value = 0;
  try {
    value = std::stoul(port, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != port.size() || (value == 0 && !allow_port_zero) || value > 65535) {
    throw std::invalid_argument("bad port '" + port + "' in '" + text + "'");
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

}  // namespace gatehouse
