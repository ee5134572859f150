#include "gatehouse/supervisor/admin_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace gatehouse::supervisor {
namespace {

std::runtime_error failure(const std::string& path, const std::string& what) {
  return std::runtime_error("--admin-socket " + path + ": " + what);
}

sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), std::min(path.size(), sizeof addr.sun_path - 1));
  return addr;
}

/// Whether a gateway answers at `path` (a socket a dead one left does not).
bool answers(const sockaddr_un& addr) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool connected =
      fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  if (fd >= 0) ::close(fd);
  return connected;
}

}  // namespace

AdminServer::AdminServer(std::string path) : path_(std::move(path)) {
  const sockaddr_un addr = address_of(path_);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  if (ec) throw failure(path_, "cannot make its directory: " + ec.message());
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw failure(path_, "exists and is not a socket");
    if (answers(addr)) {
      throw failure(path_, "another gateway answers there (is this instance running already?)");
    }
    ::unlink(path_.c_str());  // a dead gateway's
  }
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw failure(path_, std::strerror(errno));
  // Made 0600 before listen(): until then nobody can connect, so no peer
  // ever sees the mode the umask gave it.
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(path_.c_str(), 0600) != 0 || ::listen(listen_fd_, kMaxConnections) != 0) {
    const int error = errno;
    ::close(listen_fd_);
    throw failure(path_, std::strerror(error));
  }
}

AdminServer::~AdminServer() {
  for (const Connection& c : connections_) ::close(c.fd);
  ::close(listen_fd_);
  ::unlink(path_.c_str());
}

int AdminServer::accept_new(std::int64_t now_ns) {
  int accepted = 0;
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return accepted;
    ++accepted;
    Connection c;
    c.fd = fd;
    c.ticket = next_ticket_++;
    c.deadline_ns = now_ns + kIdleTimeoutNs;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c.peer = {cred.uid, cred.pid};
    }
    if (connections_.size() >= kMaxConnections) {
      c.asked = true;  // never handed over: told to come back
      respond(c,
              admin::Response::error("busy: " + std::to_string(kMaxConnections) +
                                     " admin connections are open; try again"),
              now_ns);
    }
    connections_.push_back(std::move(c));
  }
}

bool AdminServer::read_request(Connection& c, const Handler& handle, std::int64_t now_ns) {
  char buffer[512];
  bool ended = false;
  for (;;) {
    const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      c.in.append(buffer, static_cast<std::size_t>(n));
      if (c.in.size() > admin::kMaxRequestBytes + 1) break;
      continue;
    }
    if (n == 0)
      ended = true;
    else if (errno != EAGAIN && errno != EWOULDBLOCK)
      return false;
    break;
  }
  const std::size_t eol = c.in.find('\n');
  if (eol == std::string::npos && !ended && c.in.size() <= admin::kMaxRequestBytes) return true;
  if (eol == std::string::npos && ended && c.in.empty()) return false;  // connected, said nothing
  c.asked = true;
  std::string_view line(c.in);
  if (eol != std::string::npos) line = line.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // a telnet's line end
  if (auto response = handle(c.ticket, c.peer, line)) respond(c, *response, now_ns);
  return true;
}

void AdminServer::respond(Connection& c, const admin::Response& response, std::int64_t now_ns) {
  c.out = admin::encode(response);
  c.written = 0;
  c.deadline_ns = now_ns + kIdleTimeoutNs;
}

bool AdminServer::write_response(Connection& c) {
  while (c.written < c.out.size()) {
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    c.written += static_cast<std::size_t>(n);
  }
  return false;
}

int AdminServer::serve(const Handler& handle, std::int64_t now_ns) {
  int work = accept_new(now_ns);
  // By index, not inside erase_if: a handler may answer() another request.
  for (std::size_t i = 0; i < connections_.size(); ++i) {
    Connection& c = connections_[i];
    if (!c.asked && !read_request(c, handle, now_ns)) c.over = true;
  }
  std::erase_if(connections_, [&](Connection& c) {
    bool open = !c.over;
    if (open && !c.out.empty()) open = write_response(c);
    // Asked and not answered yet: the handler's operation bounds the wait.
    const bool waits_for_peer = !c.asked || !c.out.empty();
    if (open && waits_for_peer && now_ns >= c.deadline_ns) open = false;
    if (!open) {
      ::close(c.fd);
      ++work;
    }
    return !open;
  });
  return work;
}

void AdminServer::answer(Ticket ticket, const admin::Response& response, std::int64_t now_ns) {
  for (Connection& c : connections_) {
    if (c.ticket == ticket) respond(c, response, now_ns);
  }
}

}  // namespace gatehouse::supervisor
