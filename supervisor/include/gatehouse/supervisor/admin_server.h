// AdminServer: the supervisor's end of the admin socket (the protocol is
// admin_protocol.h; the commands are the supervisor's, supervisor_admin.cc).
//
// A unix stream socket at admin-socket, mode 0600, so that only the
// gateway's user (and root) can connect; each peer is known by its
// credentials (SO_PEERCRED), which the supervisor logs with every action.
// It is served from the supervisor's loop and never blocks it: serve()
// accepts what is waiting, reads what has come, hands each whole request to
// the handler and writes what the socket takes. A request may be answered
// later (a kick waits for the workers, a reload for its roll): the handler
// keeps the ticket and calls answer() when it is done.
//
// Bounds: kMaxConnections at once (more are told "busy"), kIdleTimeoutNs
// for a request to arrive and for an answer to be taken.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/supervisor/admin_protocol.h"

namespace gatehouse::supervisor {

class AdminServer {
 public:
  static constexpr std::size_t kMaxConnections = 16;
  static constexpr std::int64_t kIdleTimeoutNs = 5'000'000'000;

  /// Who is asking (SO_PEERCRED).
  struct Peer {
    uid_t uid = 0;
    pid_t pid = 0;
  };
  using Ticket = std::uint64_t;
  /// A request line (without '\n'): its response now, or nullopt when the
  /// handler answers it later with answer(ticket, ...).
  using Handler =
      std::function<std::optional<admin::Response>(Ticket, const Peer&, std::string_view line)>;

  /// Binds `path` (making its directory if missing), mode 0600, and
  /// listens. A socket left there by a gateway that died is replaced; one
  /// that answers (another gateway of this instance), or a file that is not
  /// a socket, throws std::runtime_error naming admin-socket.
  explicit AdminServer(std::string path);
  /// Closes every connection and removes the socket.
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// The listening socket, to poll for new connections.
  int fd() const noexcept { return listen_fd_; }
  const std::string& path() const noexcept { return path_; }

  /// One pass (supervisor loop); returns how much it did (0: idle).
  int serve(const Handler& handle, std::int64_t now_ns);
  /// The answer to a request the handler kept; dropped when its peer has
  /// gone.
  void answer(Ticket ticket, const admin::Response& response, std::int64_t now_ns);

 private:
  struct Connection {
    int fd = -1;
    Ticket ticket = 0;
    Peer peer;
    std::string in;
    std::string out;  ///< the encoded response, once there is one
    std::size_t written = 0;
    bool asked = false;  ///< the request was handed to the handler
    bool over = false;   ///< the peer went, or said nothing and left
    std::int64_t deadline_ns = 0;
  };

  int accept_new(std::int64_t now_ns);
  /// Reads; hands a whole request (or one cut short by the peer's end) to
  /// `handle`. False when the connection is over.
  bool read_request(Connection& c, const Handler& handle, std::int64_t now_ns);
  /// False when the connection is over (all written, or the peer went).
  static bool write_response(Connection& c);
  void respond(Connection& c, const admin::Response& response, std::int64_t now_ns);

  std::string path_;
  int listen_fd_ = -1;
  std::vector<Connection> connections_;
  Ticket next_ticket_ = 1;
};

}  // namespace gatehouse::supervisor
