// UserSessions: one session per player (--duplicate-login), kept by the
// bridge because it is the one process that sees the logins of every worker.
//
//   replace (default): a login of a user who has a session makes that session
//     go (the worker closes it, reason `replaced`, after its queued output);
//     the newcomer's game stream opens only once the old one has ended, so a
//     game service sees at most one stream per user at every instant. What
//     the newcomer sends meanwhile waits here, in order (bounded).
//   refuse: the worker holds the newcomer's login ack until the verdict; a
//     user with a live session is refused (`duplicate_login`).
//   allow: nothing is checked (gonet2's behaviour): each login its stream.
//
// The worker says which in each StreamOpen (its settings: a reload rolls the
// workers), so a change applies to logins after it. Main thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "gatehouse/bridge/game_services.h"
#include "gatehouse/bridge/upstream.h"
#include "gatehouse/bridge/worker_link.h"
#include "gatehouse/contract/metrics.h"

namespace gatehouse::bridge {

class UserSessions {
 public:
  /// Most client messages one newcomer may have waiting for the old stream
  /// to end; what comes after is dropped, counted and logged.
  static constexpr std::size_t kMaxWaitingMessages = 1024;
  /// How long an old stream may take to end after its close before it is
  /// cancelled: its game service does not answer a half-close.
  static constexpr std::int64_t kEndTimeoutNs = 5'000'000'000;

  /// `services`: which instance each session is on.
  UserSessions(GameServices& services, WorkerRings& rings, metrics::Writer& metrics)
      : services_(services), rings_(rings), metrics_(metrics) {}

  /// A login (kStreamOpen; `flags` its ipc::kAwaitVerdict / kReplaceOlder),
  /// or a take-over's re-open of a logged-in session (`origin` null).
  void open(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq, std::uint32_t flags,
            const Origin* origin);
  /// One client message (kStreamMessage), to the service its proto number
  /// is routed to (GameServices::service_of; the session's stream there
  /// opens at its first message for it); a session with no game service is
  /// told so (backend_unavailable).
  void send(std::uint64_t conn, std::int64_t user_id, std::uint64_t seq,
            std::span<const std::byte> message, const Origin& origin);
  void close(std::uint64_t conn, std::int64_t user_id, const Origin& origin);
  /// Once per pass: opens the streams of newcomers whose predecessors' have
  /// ended (cancelling those that take too long). Returns the work done.
  std::size_t flush(std::int64_t now_ns);

 private:
  struct Held {
    std::uint64_t seq;
    std::string message;
  };
  struct Waiting {
    std::int64_t user_id;
    std::uint64_t login_seq;
    std::int64_t since_ns = 0;  // 0: not seen by flush() yet
    std::deque<Held> messages;
  };
  struct User {
    std::uint64_t conn = 0;  // the session the user is entitled to (latest login)
    std::uint64_t login_seq = 0;
    std::vector<std::uint64_t> streams;  // conns whose streams were opened, maybe still up
  };

  /// Opens `conn`'s stream now if no other stream of its user is up; else
  /// it waits.
  void open_or_wait(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                    const Origin* origin);
  void start(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
             const Origin* origin);
  /// Forgets the streams of `user` that have ended; whether any is left
  /// besides `except`.
  bool streams_up(User& user, std::uint64_t except);
  void drop_waiting(std::uint64_t conn, const char* why);
  /// A message for a service other than the game service.
  void send_elsewhere(std::uint64_t conn, std::int64_t user_id, std::size_t service,
                      std::uint64_t seq, std::span<const std::byte> message, const Origin& origin);
  /// The session has no instance to send to: its worker closes it
  /// (backend_unavailable).
  void unavailable(std::uint64_t conn);
  /// The session's instance; a record a dead predecessor had handled may be
  /// of a session this bridge never opened: it goes where the predecessor
  /// sent it (a batched game hears it again, proto/batch.proto).
  Upstream* upstream_of(std::uint64_t conn, std::int64_t user_id, const Origin& origin);

  GameServices& services_;
  WorkerRings& rings_;
  metrics::Writer& metrics_;
  std::unordered_map<std::int64_t, User> users_;
  std::unordered_map<std::uint64_t, Waiting> waiting_;  // by conn
  std::vector<std::int64_t> ending_;  // users whose last session closed: forgotten in flush()
};

}  // namespace gatehouse::bridge
