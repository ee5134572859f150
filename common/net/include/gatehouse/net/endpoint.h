// "host:port" and "[v6]:port" as typed on command lines, and addresses as
// the session table keeps them, as text.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace gatehouse {

struct Endpoint {
  std::string host;  ///< without brackets
  std::uint16_t port = 0;
};

/// Throws std::invalid_argument saying what is wrong with `text`. Port 0 is
/// accepted only with `allow_port_zero` (a listener that picks its port).
Endpoint parse_endpoint(const std::string& text, bool allow_port_zero = false);

/// A 16-byte IPv6 address (IPv4-mapped for IPv4, as Session::address) as
/// text: "1.2.3.4" or "2001:db8::1".
std::string address_text(std::span<const std::uint8_t, 16> address);
/// "1.2.3.4:5678" or "[2001:db8::1]:5678", for logs.
std::string address_port_text(std::span<const std::uint8_t, 16> address, std::uint16_t port);

/// The address clients should dial, as the gateway advertises it (its key in
/// etcd, register-address): `given` HOST:PORT as it is, a HOST alone (IPv6
/// in brackets) with the port of `listener` (the first listener,
/// HOST:PORT), "" the listener itself. Throws std::invalid_argument saying
/// what is wrong: a malformed `given`, or for "" a listener on a wildcard
/// address (0.0.0.0, ::), which no client can dial.
std::string advertised_address(const std::string& given, const std::string& listener);

}  // namespace gatehouse
