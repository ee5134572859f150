// The sockets the supervisor binds: the client listeners (TCP, and UDP for
// KCP), which it hands to the frontend, and the metrics endpoint's.
#pragma once

#include <cstdint>
#include <string>

namespace gatehouse::supervisor {

/// Binds a socket of `type` (SOCK_STREAM: listening; SOCK_DGRAM: KCP's UDP)
/// for "host:port" or "[v6]:port", close-on-exec and non-blocking, on `port`
/// instead when the address says port 0 and `port` is not (a listener's UDP
/// socket takes the port its TCP one was given). `bound` receives the bound
/// address. Throws std::runtime_error naming `setting` and the address.
int bind_socket(const std::string& setting, const std::string& address, int type, bool reuse_port,
                std::uint16_t port, std::string& bound);

/// The port of a bound socket.
std::uint16_t port_of(int fd);

/// Makes the kernel give a new client (a TCP connection, a UDP datagram) to
/// the socket of the port's SO_REUSEPORT group that its source address picks
/// (IPv4 address, IPv6 /64), `fd` being one of the group's `sockets`, so
/// that one frontend sees all of an address's clients. False, with `error`,
/// where the kernel refuses (the kernel's own spread, by connection, stays).
bool spread_by_address(int fd, std::uint32_t sockets, std::string& error);

}  // namespace gatehouse::supervisor
