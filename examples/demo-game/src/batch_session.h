// The batched contract (proto/batch.proto): sessions and their spaces.
//
// One BatchLink per Batches() call; each session it carries is a
// BatchSession in the registry, like a stream. A session belongs to the
// GatewayState of its gateway-id (the call's `gateway-id` metadata), not to
// a link, so that it survives a gateway bridge restart (proto/batch.proto):
//   - A session is attached (`link` set) or detached (no link). Its events to
//     the gateway (MESSAGE, KICK; Event.seq = epoch << 32 | n, n counting its
//     events from 1) go into its link's queue while attached, into its own
//     `pending` while detached.
//   - A link keeps what it wrote until the gateway acknowledges it (Batch.ack
//     counts the link's events in write order), and acknowledges in every
//     Batch it writes the gateway's events it has read (an ack-only Batch
//     when a read Batch with events produced nothing to carry it).
//   - When a link ends (read or write fails, cancel, over()) or a new link of
//     its gateway-id replaces it (which also cancels it), it is detached:
//     whatever the gateway had not acknowledged (written, in flight, queued)
//     goes back to the front of its session's `pending`, in order and with
//     its seq, and every session of the link is detached. No handler call.
//   - An OPEN on the gateway-id's current link re-attaches a known session
//     and queues its `pending` before anything new; a MESSAGE whose seq is
//     not above the session's last one is dropped.
//   - A session ends for the handler on CLOSE (on_end(true); its id is
//     tombstoned: a late OPEN of it is ignored); on kick() or finish(not
//     UNAVAILABLE) (on_end(false), a KICK, and the session stays as a
//     "zombie", its KICK replayed on re-attach, until the gateway acknowledges
//     the KICK; then it is tombstoned); on finish(UNAVAILABLE) or when its
//     `pending` overflows (on_end(false), no KICK, no tombstone: a later OPEN
//     is a new session, numbering on from the old one so that the gateway's
//     de-duplication keeps taking its events); and when detached for longer
//     than reattach_grace (on_end(false) unless a zombie; tombstoned; on the
//     janitor thread). Tombstones last reattach_grace too.
//   - A call without `gateway-id` gets a private GatewayState that no other
//     link shares: its sessions end with the link (on_end(false)).
// Locks and lifetime:
//   - GatewayState::mu guards the state and every field of its sessions but
//     dispatch_mu; BatchLink::mu_ guards the link's queues and counters. The
//     order is in server_core.h (Core). A session's `ended` is set under
//     Core::mu_ and GatewayState::mu together, with its registry exit, so a
//     session in the registry is always in its GatewayState's map.
//   - Handler calls for one session are serialized by its dispatch_mu, held
//     from before it enters the registry until on_open returns, around each
//     on_message, and around on_end (retire(): by whoever set `ended`, once,
//     with no other lock held; when that is a handler call, of this session
//     or another, after it returned: call_handler).
//   - Links and sessions are shared_ptrs. A link keeps itself (self_) until
//     over(), where it is detached at the latest; detaching resets
//     GatewayState::link and the sessions' `link`, so no reference cycle
//     outlives it. Core keeps the shared GatewayStates (the janitor drops idle
//     ones); a private one lives with its link. An Endpoint decision that ends
//     a session keeps it alive (retiring_) until perform().
//   - context_.TryCancel() only under the link's mu_, before over() (done_).
//   - Events read on a link that is not (any more) its gateway-id's current
//     link are ignored: a detached link writes nothing, so they are not
//     acknowledged, and the gateway sends them again on the new link.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server_core.h"

namespace gatehouse::game::detail {

using gatehouse::batch::Batch;
using BatchEvent = gatehouse::batch::Event;

class BatchLink;
class BatchSession;

/// Ids kept for the same length of time each, so that they expire about in
/// the order they were put (sweep() costs what it removes).
template <class Value>
class ExpiringIds {
 public:
  void put(std::uint64_t id, Value value, Clock::time_point expiry) {
    map_.insert_or_assign(id, Entry{std::move(value), expiry});
    order_.emplace_back(expiry, id);
  }
  const Value* find(std::uint64_t id) const {
    const auto it = map_.find(id);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  void erase(std::uint64_t id) { map_.erase(id); }
  void sweep(Clock::time_point now) {
    while (!order_.empty() && order_.front().first <= now) {
      const auto it = map_.find(order_.front().second);
      if (it != map_.end() && it->second.expiry <= now) map_.erase(it);
      order_.pop_front();
    }
  }
  bool empty() const noexcept { return map_.empty(); }

 private:
  struct Entry {
    Value value;
    Clock::time_point expiry;
  };
  std::unordered_map<std::uint64_t, Entry> map_;
  std::deque<std::pair<Clock::time_point, std::uint64_t>> order_;
};

/// One gateway-id's session space, or one link's private one.
struct GatewayState {
  GatewayState(std::string id_, bool shared_, std::chrono::milliseconds grace_)
      : id(std::move(id_)), shared(shared_), grace(grace_) {}

  const std::string id;  ///< the gateway-id; empty when private
  const bool shared;     ///< in Core::gateways_; false: one link's own
  const std::chrono::milliseconds grace;

  std::mutex mu;
  // Guarded by mu:
  std::unordered_map<std::uint64_t, std::shared_ptr<BatchSession>> sessions;
  ExpiringIds<bool> tombstones;          ///< closed sessions: an OPEN of one is ignored
  ExpiringIds<std::uint64_t> forgotten;  ///< ended here only: the last n they sent
  std::shared_ptr<BatchLink> link;       ///< the current link; null between links
  /// No detached session expires before this.
  Clock::time_point next_expiry = Clock::time_point::max();
};

class BatchSession final : public Endpoint, public std::enable_shared_from_this<BatchSession> {
 public:
  BatchSession(Core& core, std::shared_ptr<GatewayState> gateway, std::uint64_t session,
               std::int32_t user_id)
      : core_(core),
        gateway_(std::move(gateway)),
        session_(session),
        id_(Core::next_id()),
        user_id_(user_id) {}

  StreamHandle handle() const noexcept override { return {core_.owner(), id_, user_id_}; }
  // The Endpoint operations run under Core::mu_ (apply_one / apply_many).
  Decision push(std::span<const std::byte> message) override;
  Decision kick() override;
  /// The batched contract has no per-session status: OK or an error ends the
  /// session with a KICK, except UNAVAILABLE (the server is going away), which
  /// ends it here only: no KICK, and a later OPEN of it is a new session.
  Decision end(grpc::Status status) override;
  void cancel() override {}
  void perform(Step step) override;

  /// on_end, serialized with the read side's calls; by whoever set `ended`,
  /// with no other lock held. From inside a handler call (the handler ended
  /// this or another session) it runs once that call returned (call_handler).
  void retire(bool client_half_closed);
  /// Under Core::mu_ and the GatewayState's mu, as it leaves the GatewayState
  /// (CLOSE, a private link's end, expiry): drops its `pending` and, unless it
  /// ended already (a zombie), ends it: out of the registry. True when it
  /// did; the caller then retire()s it once the locks are released.
  bool end_locked();

  std::mutex dispatch_mu;  ///< held around every handler call for this session
  // Guarded by the GatewayState's mu:
  std::shared_ptr<BatchLink> link;   ///< attached to; null while detached
  Clock::time_point detached_since;  ///< while detached
  std::deque<BatchEvent> pending;    ///< for the gateway once attached, in order
  std::uint64_t sent = 0;            ///< n of the last event numbered for the gateway
  std::uint64_t last_seq = 0;        ///< of the last MESSAGE taken from the gateway
  bool ended = false;                ///< on_end has run or is due (retire)
  bool zombie = false;               ///< ended by a KICK the gateway has not acknowledged

 private:
  /// Numbers an event and queues it on the link, or in `pending` when
  /// detached (or the link is ending); false when `pending` is full (only
  /// when not `force`d).
  bool enqueue_locked(BatchEvent::Kind kind, std::span<const std::byte> message, bool force);
  /// Ends the session here only: out of the registry and the GatewayState,
  /// its numbering remembered; no KICK, no tombstone.
  Decision forget_locked(bool accepted);

  Core& core_;
  const std::shared_ptr<GatewayState> gateway_;
  const std::uint64_t session_;
  const StreamId id_;
  const std::int32_t user_id_;
  std::shared_ptr<BatchSession> retiring_;  ///< set with a kFinish decision, taken by perform()
};

/// Detaches `link` with `gateway`'s mu held: its unacknowledged events go back
/// to their sessions' `pending` (dropped when the session is gone), and its
/// sessions are detached. `link` is taken by value: callers pass
/// `gateway.link`, which this resets, and the link must outlive the call.
void detach_link_locked(GatewayState& gateway, std::shared_ptr<BatchLink> link, bool cancel);

/// The janitor's part (Core::expire), with Core::mu_ and `gateway`'s mu
/// held: the sessions detached for longer than the grace leave, tombstoned;
/// those that ended here go to `ended`, for retire() once the locks are
/// released. Sets when the next one is due.
void expire_detached_locked(GatewayState& gateway, Clock::time_point now,
                            std::vector<std::shared_ptr<BatchSession>>& ended);

/// The on_end calls that a handler call caused (the handler kicked or
/// finished a session, its own included) run once it returned, on its thread,
/// with its dispatch_mu released: at once, one would wait for a dispatch_mu
/// this thread holds (its own session's), or whose holder may be waiting for
/// ours (two sessions kicking each other). Per thread: the outermost
/// call_handler's list, and whether a handler call is running.
using DeferredEnd = std::pair<std::shared_ptr<BatchSession>, bool>;
inline thread_local std::vector<DeferredEnd>* t_deferred_ends = nullptr;
inline thread_local bool t_in_handler_call = false;

/// Runs `call`, a handler call, under `serial` (its session's dispatch_mu),
/// then, with that released, the on_end calls it caused (and theirs).
template <class Call>
void call_handler(std::unique_lock<std::mutex> serial, Call&& call) {
  const bool outermost = t_deferred_ends == nullptr;
  std::vector<DeferredEnd> ends;
  if (outermost) t_deferred_ends = &ends;
  t_in_handler_call = true;
  call();
  t_in_handler_call = false;
  serial.unlock();
  if (!outermost) return;  // the outermost runs them
  for (std::size_t i = 0; i < ends.size(); ++i) {
    DeferredEnd end = std::move(ends[i]);  // on_end may add more
    end.first->retire(end.second);
  }
  t_deferred_ends = nullptr;
}

}  // namespace gatehouse::game::detail
