// BatchSession, and detaching a link from its GatewayState.
#include "batch_session.h"

#include <algorithm>

#include "batch_link.h"

namespace gatehouse::game::detail {

// NOLINTNEXTLINE(performance-unnecessary-value-param): a copy on purpose (see the header)
void detach_link_locked(GatewayState& gateway, std::shared_ptr<BatchLink> link, bool cancel) {
  std::optional<std::vector<BatchEvent>> back = link->detach_locked(cancel);
  if (!back) return;
  if (gateway.link == link) gateway.link.reset();
  // Back to front, so that each session's events keep their order ahead of
  // what was pushed while the link was ending.
  for (auto it = back->rbegin(); it != back->rend(); ++it) {
    const auto found = gateway.sessions.find(it->session());
    if (found != gateway.sessions.end() && found->second->link == link) {
      found->second->pending.push_front(std::move(*it));
    }
  }
  const Clock::time_point now = Clock::now();
  bool detached = false;
  for (const auto& [id, session] : gateway.sessions) {
    if (session->link != link) continue;
    session->link.reset();
    session->detached_since = now;
    detached = true;
  }
  if (detached) gateway.next_expiry = std::min(gateway.next_expiry, now + gateway.grace);
}

bool BatchSession::enqueue_locked(BatchEvent::Kind kind, std::span<const std::byte> message,
                                  bool force) {
  if (!force && !link && pending.size() >= core_.max_queued_frames()) return false;
  BatchEvent e;
  e.set_session(session_);
  e.set_kind(kind);
  if (!message.empty()) e.set_message(message.data(), message.size());
  e.set_seq(core_.seq(++sent));
  if (link && link->send(e)) return true;
  if (!force && pending.size() >= core_.max_queued_frames()) return false;
  pending.push_back(std::move(e));
  return true;
}

Decision BatchSession::push(std::span<const std::byte> message) {
  std::lock_guard lock(gateway_->mu);
  if (ended) return {};
  if (enqueue_locked(BatchEvent::MESSAGE, message, false)) return {true, Step::kNone, false};
  // Detached with a full queue: as a stream that overflows, the session ends.
  return forget_locked(false);
}

Decision BatchSession::kick() {
  std::lock_guard lock(gateway_->mu);
  if (ended) return {};
  ended = true;
  zombie = true;
  core_.remove_locked(*this);  // apply_* holds Core::mu_
  enqueue_locked(BatchEvent::KICK, {}, true);
  retiring_ = shared_from_this();
  return {true, Step::kFinish, false};
}

Decision BatchSession::end(grpc::Status status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return kick();
  std::lock_guard lock(gateway_->mu);
  if (ended) return {};
  return forget_locked(true);
}

Decision BatchSession::forget_locked(bool accepted) {
  ended = true;
  core_.remove_locked(*this);
  retiring_ = shared_from_this();  // the map below may hold the last other reference
  const auto it = gateway_->sessions.find(session_);
  if (it != gateway_->sessions.end() && it->second.get() == this) gateway_->sessions.erase(it);
  gateway_->forgotten.put(session_, sent, Clock::now() + gateway_->grace);
  link.reset();
  pending.clear();
  return {accepted, Step::kFinish, false};
}

void BatchSession::perform(Step step) {
  if (step != Step::kFinish) return;
  const std::shared_ptr<BatchSession> self = std::move(retiring_);
  retire(false);
}

bool BatchSession::end_locked() {
  pending.clear();
  if (ended) return false;
  ended = true;
  core_.remove_locked(*this);
  return true;
}

void expire_detached_locked(GatewayState& gateway, Clock::time_point now,
                            std::vector<std::shared_ptr<BatchSession>>& ended) {
  Clock::time_point next = Clock::time_point::max();
  for (auto it = gateway.sessions.begin(); it != gateway.sessions.end();) {
    BatchSession& session = *it->second;
    if (session.link) {
      ++it;
      continue;
    }
    if (const Clock::time_point expiry = session.detached_since + gateway.grace; expiry > now) {
      next = std::min(next, expiry);
      ++it;
      continue;
    }
    if (session.end_locked()) ended.push_back(it->second);  // not a zombie
    gateway.tombstones.put(it->first, true, now + gateway.grace);
    it = gateway.sessions.erase(it);
  }
  gateway.next_expiry = next;
}

void BatchSession::retire(bool client_half_closed) {
  if (t_in_handler_call) {
    t_deferred_ends->emplace_back(shared_from_this(), client_half_closed);
    return;
  }
  call_handler(std::unique_lock(dispatch_mu),
               [&] { core_.handler().on_end(handle(), client_half_closed); });
}

}  // namespace gatehouse::game::detail
