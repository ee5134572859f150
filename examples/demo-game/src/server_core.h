// Core: what GameServer is behind its facade. The gRPC server and its
// completion queue, the threads that poll it (running every call's
// completions and the handler's calls inline), the registry of live sessions
// of both contracts (Endpoint), the batched sessions' spaces by gateway-id
// (GatewayState, batch_session.h) and the janitor thread that expires them,
// and shutdown.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "async_call.h"
#include "batch.grpc.pb.h"
#include "game.grpc.pb.h"
#include "gatehouse/codec/game_link_limits.h"
#include "gatehouse/game/game_server.h"

namespace gatehouse::game::detail {

using Frame = proto::Game::Frame;
using Clock = std::chrono::steady_clock;

struct GatewayState;

/// The high half of every Event.seq this server sends: nonzero, and most
/// likely different from the last run's (proto/batch.proto).
std::uint64_t draw_epoch();

using StreamService = proto::GameService::AsyncService;
using BatchService = gatehouse::batch::BatchGameService::AsyncService;

/// Lock order, for the whole library (a lock is only ever taken while holding
/// locks that come before it): a BatchSession's dispatch_mu, then Core::mu_,
/// then a GatewayState's mu, then a BatchLink's mu_; a StreamReactor's mu_
/// comes right after Core::mu_. Handler callbacks run with at most their
/// session's dispatch_mu held, so they may call any GameServer operation.
/// A completion never runs inline from Read/Write/Finish/TryCancel (only a
/// polling thread runs it), so those may be called under a lock.
class Core final {
 public:
  Core(GameServer& owner, GameHandler& handler, GameServerOptions options);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // For the calls.
  StreamService& stream_service() noexcept { return stream_service_; }
  BatchService& batch_service() noexcept { return batch_service_; }
  grpc::ServerCompletionQueue& queue() noexcept { return *queue_; }
  /// A call arrived / is over: shutdown() shuts the queue down once none is
  /// left, so that no call starts an operation on a queue that is shut down.
  void call_began();
  void call_ended();

  // For the reactors.
  GameServer& owner() const noexcept { return owner_; }
  GameHandler& handler() const noexcept { return handler_; }
  const FrameTypeValues& types() const noexcept { return types_; }
  std::size_t max_queued_frames() const noexcept { return options_.max_queued_frames; }
  /// Whether a pushed message fits one Event or Frame; counts it when not.
  bool fits(std::span<const std::byte> message) noexcept {
    if (message.size() <= game_link::kMaxEventMessageBytes) return true;
    oversize_refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::uint64_t oversize_refused() const noexcept {
    return oversize_refused_.load(std::memory_order_relaxed);
  }
  /// Unique in the process, not just in this server: a handler that outlives
  /// a server (a test's fake restarted on its port) never sees an id twice.
  static StreamId next_id() noexcept {
    static std::atomic<std::uint64_t> next{1};
    return StreamId{next.fetch_add(1, std::memory_order_relaxed)};
  }
  /// Enters the registry; false once shutdown began.
  bool add(Endpoint& endpoint);
  void remove(Endpoint& endpoint);
  /// remove() with mu_ already held (from inside an apply_* operation).
  void remove_locked(Endpoint& endpoint);
  /// A Frame of `type` in this server's numbering, carrying `message`.
  Frame make_frame(int type, std::span<const std::byte> message, std::int32_t user_id) const;

  // For the batched contract.
  /// mu_, for a change that spans the registry and a GatewayState.
  std::unique_lock<std::mutex> lock_registry() const { return std::unique_lock(mu_); }
  /// add() with mu_ held (lock_registry()).
  bool add_locked(Endpoint& endpoint);
  /// The GatewayState of the call's `gateway-id` metadata (made on first
  /// use), or a private one when it has none.
  std::shared_ptr<GatewayState> gateway_of(const grpc::ServerContextBase& context);
  /// Event.seq of a session's n-th event to the gateway.
  std::uint64_t seq(std::uint64_t n) const noexcept { return epoch_ << 32 | (n & 0xffffffffu); }

  // For GameServer.
  int port() const noexcept { return port_; }
  FrameNumbering numbering() const noexcept { return options_.numbering; }
  /// Runs `op` (Endpoint& -> Decision) on one stream; whether it was accepted.
  template <class Op>
  bool apply_one(StreamId id, Op&& op);
  /// Runs `op` on every stream of `user_id`, or on every stream when nullopt;
  /// how many accepted.
  template <class Op>
  std::size_t apply_many(std::optional<std::int32_t> user_id, Op&& op);
  std::vector<StreamHandle> streams() const;
  std::size_t stream_count() const;
  void shutdown(std::chrono::milliseconds grace);

 private:
  /// The janitor thread: every ~100 ms, ends the batched sessions detached
  /// for longer than reattach_grace and forgets expired ids (expire()).
  void janitor();
  void expire(Clock::time_point now);
  void stop_janitor();

  GameServer& owner_;
  GameHandler& handler_;
  const GameServerOptions options_;
  const FrameTypeValues types_;
  const std::uint64_t epoch_ = draw_epoch();
  std::atomic<std::uint64_t> oversize_refused_{0};

  mutable std::mutex mu_;  ///< guards the registry; see the lifetime note at the top
  std::unordered_map<std::uint64_t, Endpoint*> streams_;
  std::unordered_multimap<std::int32_t, Endpoint*> by_user_;
  bool shutting_down_ = false;
  /// Guarded by mu_: the batched sessions' spaces, by gateway-id.
  std::unordered_map<std::string, std::shared_ptr<GatewayState>> gateways_;

  std::mutex janitor_mu_;
  std::condition_variable janitor_wake_;
  bool janitor_stop_ = false;  ///< guarded by janitor_mu_
  std::thread janitor_;

  std::mutex shutdown_mu_;  ///< serializes shutdown() callers
  std::mutex calls_mu_;
  std::condition_variable calls_over_;
  std::size_t calls_ = 0;  ///< guarded by calls_mu_: arrived and not over
  StreamService stream_service_;
  BatchService batch_service_;
  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::vector<std::thread> pollers_;  ///< run queue_ until it is shut down and drained
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;  ///< last: stops before the rest goes
};

template <class Op>
bool Core::apply_one(StreamId id, Op&& op) {
  Endpoint* reactor = nullptr;
  Decision decision;
  {
    std::lock_guard lock(mu_);
    const auto it = streams_.find(static_cast<std::uint64_t>(id));
    if (it == streams_.end()) return false;
    reactor = it->second;
    decision = op(*reactor);
    if (decision.cancel) reactor->cancel();
  }
  // Without a step to start, nothing keeps the reactor alive any more.
  if (decision.step != Step::kNone) reactor->perform(decision.step);
  return decision.accepted;
}

template <class Op>
std::size_t Core::apply_many(std::optional<std::int32_t> user_id, Op&& op) {
  std::vector<std::pair<Endpoint*, Step>> started;
  std::size_t accepted = 0;
  {
    std::lock_guard lock(mu_);
    auto visit = [&](Endpoint* reactor) {
      const Decision decision = op(*reactor);
      if (decision.cancel) reactor->cancel();
      if (decision.accepted) ++accepted;
      if (decision.step != Step::kNone) started.emplace_back(reactor, decision.step);
    };
    // A batched session's kick leaves the registry inside op: collect first.
    std::vector<Endpoint*> targets;
    if (user_id) {
      auto [first, last] = by_user_.equal_range(*user_id);
      for (auto it = first; it != last; ++it) targets.push_back(it->second);
    } else {
      targets.reserve(streams_.size());
      for (const auto& [id, reactor] : streams_) targets.push_back(reactor);
    }
    started.reserve(targets.size());
    for (Endpoint* endpoint : targets) visit(endpoint);
  }
  for (const auto& [reactor, step] : started) reactor->perform(step);
  return accepted;
}

}  // namespace gatehouse::game::detail
