#include "gatehouse/net/endpoint.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
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

namespace {
bool v4_mapped(std::span<const std::uint8_t, 16> address) {
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(address.data(), kMapped, sizeof kMapped) == 0;
}
}  // namespace

std::string address_text(std::span<const std::uint8_t, 16> address) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (v4_mapped(address)) {
    ::inet_ntop(AF_INET, address.data() + 12, text, sizeof text);
  } else {
    ::inet_ntop(AF_INET6, address.data(), text, sizeof text);
  }
  return text;
}

std::string address_port_text(std::span<const std::uint8_t, 16> address, std::uint16_t port) {
  const std::string host = address_text(address);
  return (v4_mapped(address) ? host : "[" + host + "]") + ":" + std::to_string(port);
}

std::string advertised_address(const std::string& given, const std::string& listener) {
  const Endpoint bound = parse_endpoint(listener, /*allow_port_zero=*/true);
  if (given.empty()) {
    in6_addr v6{};
    in_addr v4{};
    const bool wildcard =
        bound.host.empty() ||
        (::inet_pton(AF_INET, bound.host.c_str(), &v4) == 1 && v4.s_addr == INADDR_ANY) ||
        (::inet_pton(AF_INET6, bound.host.c_str(), &v6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&v6));
    if (wildcard) {
      throw std::invalid_argument("the first listener " + listener +
                                  " is on a wildcard address, which no client can dial: say "
                                  "what clients should dial (HOST or HOST:PORT)");
    }
    return listener;
  }
  if (given.find_first_of(" \t/") != std::string::npos) {
    throw std::invalid_argument("expected HOST or HOST:PORT, got '" + given + "'");
  }
  // A HOST alone: a name, an IPv4 address, or an IPv6 one in brackets.
  const bool bracketed = given.front() == '[';
  const std::size_t colons = static_cast<std::size_t>(std::count(given.begin(), given.end(), ':'));
  if ((bracketed && given.back() == ']' && given.size() > 2) || (!bracketed && colons == 0)) {
    return given + ":" + std::to_string(bound.port);
  }
  if ((!bracketed && colons > 1) || (bracketed && given.find("]:") == std::string::npos)) {
    throw std::invalid_argument(
        "expected HOST or HOST:PORT (an IPv6 address in brackets: "
        "[2001:db8::1] or [2001:db8::1]:7000), got '" +
        given + "'");
  }
  parse_endpoint(given);  // HOST:PORT, [V6]:PORT; throws saying what is wrong
  return given;
}

}  // namespace gatehouse
