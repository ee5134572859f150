#include "gatehouse/bridge/user_sessions.h"

#include <grpcpp/support/status_code_enum.h>

#include <algorithm>

#include "gatehouse/base/log.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/contract/records.h"

namespace gatehouse::bridge {
namespace {

// A player can log in again and again at will: these are client-triggered.
LogLimit replaced_log{spdlog::level::info, "session replaced by a newer login"};
LogLimit refused_log{spdlog::level::info, "login refused: user logged in already"};
LogLimit overflow_log{spdlog::level::warn, "newcomer's messages dropped"};
LogLimit slow_end_log{spdlog::level::warn, "old game stream cancelled"};

}  // namespace

void UserSessions::open(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                        std::uint32_t flags, const Origin* origin) {
  const bool await = (flags & ipc::kAwaitVerdict) != 0;
  if (!await && (flags & ipc::kReplaceOlder) == 0) {  // allow
    if (Upstream* upstream = services_.route(conn, user_id, login_seq)) {
      upstream->open(conn, user_id, login_seq, origin);
    }
    return;
  }
  UpstreamEvents::Unpublished unpublished;
  User& user = users_[user_id];
  if (user.conn != 0 && user.conn != conn) {
    if (await) {
      refused_log.log("conn {:#x}: user {} is logged in already (conn {:#x}); login refused", conn,
                      user_id, user.conn);
      rings_.verdict(unpublished, conn, false);
      rings_.publish(unpublished);
      services_.closed(conn);  // nothing of it is kept (an instance named for it)
      return;
    }
    if (login_seq < user.login_seq) {
      // Older than the session the user has (a take-over meets both): it goes.
      rings_.replaced(unpublished, conn);
      rings_.publish(unpublished);
      return;
    }
    replaced_log.log("user {} logged in again (conn {:#x}): conn {:#x} is replaced", user_id, conn,
                     user.conn);
    if (waiting_.contains(user.conn)) drop_waiting(user.conn, "replaced before its stream opened");
    rings_.replaced(unpublished, user.conn);
  }
  user.conn = conn;
  user.login_seq = login_seq;
  if (await) rings_.verdict(unpublished, conn, true);
  rings_.publish(unpublished);
  // (A repeat, from a replayed record or a take-over, finds itself waiting
  // or opened; the upstream ignores an open of a stream it has.)
  if (!waiting_.contains(conn)) open_or_wait(conn, user_id, login_seq, origin);
}

void UserSessions::open_or_wait(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                                const Origin* origin) {
  if (streams_up(users_[user_id], conn)) {
    Waiting& w = waiting_[conn];
    w.user_id = user_id;
    w.login_seq = login_seq;
    return;
  }
  start(conn, user_id, login_seq, origin);
}

void UserSessions::start(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                         const Origin* origin) {
  Upstream* upstream = services_.route(conn, user_id, login_seq);
  if (upstream == nullptr) return;  // no instance: its first message hears so
  upstream->open(conn, user_id, login_seq, origin);
  User& user = users_[user_id];
  if (std::find(user.streams.begin(), user.streams.end(), conn) == user.streams.end()) {
    user.streams.push_back(conn);
  }
}

bool UserSessions::streams_up(User& user, std::uint64_t except) {
  std::erase_if(user.streams, [&](std::uint64_t c) {
    const Upstream* upstream = services_.of(c);
    return c != except && (upstream == nullptr || !upstream->has_call(c));
  });
  return std::any_of(user.streams.begin(), user.streams.end(),
                     [except](std::uint64_t c) { return c != except; });
}

void UserSessions::send(std::uint64_t conn, std::int64_t user_id, std::uint64_t seq,
                        std::span<const std::byte> message, const Origin& origin) {
  if (const std::size_t service = services_.service_of(message); service != 0) {
    send_elsewhere(conn, user_id, service, seq, message, origin);
    return;
  }
  const auto it = waiting_.find(conn);
  if (it == waiting_.end()) {
    if (services_.hold(conn, 0, seq, message)) return;  // it moves to another instance
    if (Upstream* upstream = upstream_of(conn, user_id, origin)) {
      upstream->send(conn, seq, message, origin);
    } else if (!origin.replay) {
      unavailable(conn);
    }
    return;
  }
  Waiting& w = it->second;
  if (w.messages.size() >= kMaxWaitingMessages) {
    metrics_.add(metrics::kDroppedToGame);
    overflow_log.log(
        "conn {:#x} user {}: {} messages wait for the user's previous game stream to end; "
        "dropping more",
        conn, user_id, w.messages.size());
    return;
  }
  w.messages.push_back(
      Held{seq, std::string(reinterpret_cast<const char*>(message.data()), message.size())});
}

void UserSessions::send_elsewhere(std::uint64_t conn, std::int64_t user_id, std::size_t service,
                                  std::uint64_t seq, std::span<const std::byte> message,
                                  const Origin& origin) {
  if (services_.hold(conn, service, seq, message)) return;  // it moves to another instance
  Upstream* upstream = services_.of(conn, service);
  if (upstream == nullptr) {
    // Its first message for that service: the session's stream there opens
    // now, with the login's user and login-seq.
    std::int64_t user = user_id;
    std::uint64_t login_seq = 0;
    if (!services_.login_of(conn, user, login_seq)) {
      const auto w = waiting_.find(conn);
      const auto u = users_.find(user_id);
      login_seq = w != waiting_.end() ? w->second.login_seq
                  : u != users_.end() ? u->second.login_seq
                                      : 0;
    }
    upstream = services_.route(conn, user_id, login_seq, service);
    if (upstream == nullptr) {
      if (!origin.replay) unavailable(conn);
      return;
    }
    const Origin opened{};  // no record to keep: the message's follows
    upstream->open(conn, user_id, login_seq, &opened);
    upstream = services_.of(conn, service);  // null if it failed at once (and moves)
    if (upstream == nullptr) {
      if (!services_.hold(conn, service, seq, message)) metrics_.add(metrics::kDroppedToGame);
      return;
    }
  }
  upstream->send(conn, seq, message, origin);
}

void UserSessions::unavailable(std::uint64_t conn) {
  // No game service at all: nobody to talk to.
  metrics_.add(metrics::kDroppedToGame);
  metrics_.add(metrics::kGameStreamsFailed);
  UpstreamEvents::Unpublished unpublished;
  rings_.ended(unpublished, conn, grpc::StatusCode::UNAVAILABLE);
  rings_.publish(unpublished);
}

void UserSessions::close(std::uint64_t conn, std::int64_t user_id, const Origin& origin) {
  if (waiting_.contains(conn)) {
    drop_waiting(conn, "left before its game stream opened");
  } else if (origin.replay) {
    upstream_of(conn, user_id, origin);  // routed as the dead predecessor had
  }
  // Every service's stream of it (the game service's, and those of the
  // services its messages were routed to) is half-closed.
  services_.close(conn, origin);
  const auto it = users_.find(user_id);
  if (it == users_.end()) return;
  if (it->second.conn == conn) it->second.conn = 0;
  if (it->second.conn == 0) ending_.push_back(user_id);  // forgotten once its streams end
}

Upstream* UserSessions::upstream_of(std::uint64_t conn, std::int64_t user_id,
                                    const Origin& origin) {
  return origin.replay ? services_.route(conn, user_id) : services_.of(conn);
}

void UserSessions::drop_waiting(std::uint64_t conn, const char* why) {
  const auto it = waiting_.find(conn);
  if (it == waiting_.end()) return;
  const std::size_t lost = it->second.messages.size();
  if (lost != 0) {
    metrics_.add(metrics::kDroppedToGame, lost);
    spdlog::info("conn {:#x} user {}: {}; its {} messages are dropped", conn, it->second.user_id,
                 why, lost);
  }
  waiting_.erase(it);
}

std::size_t UserSessions::flush(std::int64_t now_ns) {
  std::size_t work = 0;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    const std::uint64_t conn = it->first;
    Waiting& w = it->second;
    if (w.since_ns == 0) w.since_ns = now_ns;
    User& user = users_[w.user_id];
    if (streams_up(user, conn)) {
      if (now_ns - w.since_ns > kEndTimeoutNs) {
        // The game service has not ended the old stream since its
        // half-close: cancelled, so the newcomer's can open.
        for (const std::uint64_t old : user.streams) {
          if (Upstream* upstream = services_.of(old); old != conn && upstream != nullptr) {
            upstream->cancel(old);
          }
        }
        slow_end_log.log("user {}: the previous game stream did not end within {} s; cancelled",
                         w.user_id, kEndTimeoutNs / 1'000'000'000);
        w.since_ns = now_ns;  // once more if even that takes long
      }
      ++it;
      continue;
    }
    // In this process's hands since their records were read: no record to
    // keep for a game's acknowledgement.
    const Origin held{};
    start(conn, w.user_id, w.login_seq, &held);
    Upstream* upstream = services_.of(conn);  // null: none, or it moves already (hold())
    for (const Held& m : w.messages) {
      const auto bytes = std::as_bytes(std::span(m.message));
      if (upstream != nullptr) {
        upstream->send(conn, m.seq, bytes, held);
      } else if (!services_.hold(conn, 0, m.seq, bytes)) {
        metrics_.add(metrics::kDroppedToGame);
      }
    }
    it = waiting_.erase(it);
    ++work;
  }
  // Users with no session left, once their last stream has ended.
  std::erase_if(ending_, [this](std::int64_t user_id) {
    const auto it = users_.find(user_id);
    if (it == users_.end() || it->second.conn != 0) return true;
    if (streams_up(it->second, 0)) return false;
    users_.erase(it);
    return true;
  });
  return work;
}

}  // namespace gatehouse::bridge
