#include "gatehouse/supervisor/listen_socket.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <stdexcept>

#include "gatehouse/net/endpoint.h"

namespace gatehouse::supervisor {

int bind_socket(const std::string& setting, const std::string& address, int type, bool reuse_port,
                std::uint16_t port, std::string& bound) {
  Endpoint endpoint;
  try {
    endpoint = parse_endpoint(address, /*allow_port_zero=*/true);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(setting + ": " + e.what());
  }
  const std::string& host = endpoint.host;
  const std::string port_text = std::to_string(endpoint.port == 0 ? port : endpoint.port);
  const std::string what = setting + " " + address + (type == SOCK_DGRAM ? " (udp)" : "");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = type;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &found);
      rc != 0) {
    throw std::runtime_error(what + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  const int fd = ::socket(found->ai_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error(what + ": " + std::strerror(errno));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(what + ": SO_REUSEPORT: " + std::strerror(err));
  }
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 ||
      (type == SOCK_STREAM && ::listen(fd, SOMAXCONN) != 0)) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(what + ": " + std::strerror(err));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  char text[INET6_ADDRSTRLEN] = "?";
  std::uint16_t bound_port = 0;
  if (addr.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof text);
    bound_port = ntohs(a6->sin6_port);
    bound = "[" + std::string(text) + "]:" + std::to_string(bound_port);
  } else {
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a4->sin_addr, text, sizeof text);
    bound_port = ntohs(a4->sin_port);
    bound = std::string(text) + ":" + std::to_string(bound_port);
  }
  return fd;
}

std::uint16_t port_of(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port
                                          : reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
}

bool spread_by_address(int fd, std::uint32_t sockets, std::string& error) {
  // Classic BPF, run by the kernel on each new connection's first packet (a
  // SYN; for UDP each datagram), returns the index of the socket in the
  // port's SO_REUSEPORT group. It reads the source address from the network
  // header: IPv4's whole, IPv6's first 64 bits (the /64 the per-address
  // limits count by), mixes the bits and takes them modulo the sockets.
  constexpr std::uint32_t kNet = static_cast<std::uint32_t>(SKF_NET_OFF);
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, kNet + 0),  // version << 4 | ...
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 2, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNet + 12),  // IPv4 source
      BPF_STMT(BPF_JMP | BPF_JA, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNet + 8),  // IPv6 source, bits 0-31
      BPF_STMT(BPF_MISC | BPF_TAX, 0),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNet + 12),  // and 32-63
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_MISC | BPF_TAX, 0),  // a ^= a >> 16; a *= 0x45d9f3b; a ^= a >> 16
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x45d9f3b),
      BPF_STMT(BPF_MISC | BPF_TAX, 0),
      BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, sockets),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(code)), code};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof program) != 0) {
    error = std::string("SO_ATTACH_REUSEPORT_CBPF: ") + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace gatehouse::supervisor
