// GameServer on gRPC's completion-queue API: one StreamReactor per gonet2
// call, one BatchLink per batched call (each session on it a BatchSession,
// kept per gateway-id in a GatewayState so that it can outlive the link), a
// registry of live sessions of both kinds (Endpoint), and a small state
// machine per call. The server's own threads (GameServerOptions::threads)
// poll the queue and run each completion, and the handler's calls, inline:
// with the callback API, gRPC polled on threads of its own and handed every
// completion to another, a wakeup each way per message. The rules below are
// for StreamReactor; the batched contract states its own further down.
//
// Ownership and lifetime (the part that must hold under concurrent
// push/kick while a client disconnects):
//   - A StreamReactor is made when its call is requested and deletes itself
//     in over(), after it has left the registry, once the call is over
//     (the done tag came) and no operation of it is outstanding.
//   - Outside threads reach a reactor only through the registry, under
//     Core::mu_. over() must take that mutex to leave the registry, so a
//     reactor found under it is alive until the mutex is released.
//   - Decisions (queue a frame, start the next write, finish) are made under
//     the reactor's own mu_; the gRPC operation they call for (Write, Finish)
//     is started afterwards with no lock held. That is safe without the
//     registry lock because a decided operation counts as outstanding from
//     the decision on, which keeps over() from running, and starting it is
//     the caller's last touch of the reactor: once started, the operation may
//     complete and over() may free it.
//   - One write in flight (write_frame_, owned by it while writing_), a
//     queue behind it, and Finish only once the queue is drained and no write
//     is in flight.
//
// Lock order, for the whole file (a lock is only ever taken while holding
// locks that come before it): a BatchSession's dispatch_mu, then Core::mu_,
// then a GatewayState's mu, then a BatchLink's mu_; a StreamReactor's mu_
// comes right after Core::mu_. Handler callbacks run with at most their
// session's dispatch_mu held, so they may call any GameServer operation.
// A completion never runs inline from Read/Write/Finish/TryCancel (only a
// polling thread runs it), so those may be called under a lock.
#include "gatehouse/game/game_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "batch.grpc.pb.h"
#include "game.grpc.pb.h"

namespace gatehouse::game {

bool StreamHandle::push(std::span<const std::byte> message) const {
  return server_->push(id_, message);
}
bool StreamHandle::kick() const {
  return server_->kick(id_);
}
bool StreamHandle::finish(grpc::Status status) const {
  return server_->finish(id_, std::move(status));
}

namespace {

using Frame = proto::Game::Frame;
using Clock = std::chrono::steady_clock;

/// The gRPC operation a decision calls for, started once every lock is released.
enum class Step : std::uint8_t { kNone, kWrite, kFinish };

/// The outcome of one operation on one reactor.
struct Decision {
  bool accepted = false;  ///< the frame was queued / the end was requested
  Step step = Step::kNone;
  bool cancel = false;  ///< the queue overflowed: cancel the call (a slow consumer)
};

/// One session as the registry sees it: a gonet2 stream (StreamReactor) or a
/// session on a batched link (BatchSession). The operations are decided
/// under Core::mu_; perform() runs after it is released.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual StreamHandle handle() const noexcept = 0;
  virtual Decision push(std::span<const std::byte> message) = 0;
  /// A Kick, then the end of the session.
  virtual Decision kick() = 0;
  virtual Decision end(grpc::Status status) = 0;
  /// After a Decision with `cancel`, still under Core::mu_.
  virtual void cancel() = 0;
  virtual void perform(Step step) = 0;
};

/// A call served on the completion-queue API. Each operation it starts
/// carries one of its tags; the server's threads hand the completion back.
class AsyncCall {
 public:
  enum class Op : std::uint8_t {
    kAccept,  ///< the requested call arrived (or, !ok, never will: shutdown)
    kRead,
    kWrite,
    kFinish,
    kDone,  ///< AsyncNotifyWhenDone: the call is over, finished or cancelled
  };
  struct Tag {
    AsyncCall* call;
    Op op;
  };
  /// On a thread polling the queue; may free the call. The call is over
  /// once its done tag came and no operation is outstanding; the accept
  /// counts as one until accepted() returned (with more than one serving
  /// thread, the done tag of a call cancelled at once may come meanwhile).
  void on_completion(Op op, bool ok) {
    if (op == Op::kAccept) {
      if (!ok) {  // shutting down: no call, no other tag
        never_came();
        return;
      }
      begin_op();
      accepted();
    } else {
      completed(op, ok);
    }
    const std::uint32_t left = op == Op::kDone
                                   ? pending_.fetch_or(kOver, std::memory_order_acq_rel) | kOver
                                   : pending_.fetch_sub(1, std::memory_order_acq_rel) - 1;
    if (left == kOver) over();
  }

 protected:
  ~AsyncCall() = default;
  /// Counts an operation from its decision (before it is started) to its
  /// completion: the call cannot be over in between.
  void begin_op() noexcept { pending_.fetch_add(1, std::memory_order_relaxed); }

  /// The requested call will not come (shutdown).
  virtual void never_came() = 0;
  /// The call arrived: ask for the next one, then start this one.
  virtual void accepted() = 0;
  /// Read, Write, Finish or the done tag completed.
  virtual void completed(Op op, bool ok) = 0;
  /// The call is over and nothing of it is outstanding; once.
  virtual void over() = 0;

 private:
  static constexpr std::uint32_t kOver = 1u << 31;  ///< the done tag came
  std::atomic<std::uint32_t> pending_{0};           ///< outstanding operations, | kOver
};

/// The decimal int32 in the `userid` metadata; nullopt when missing or malformed.
std::optional<std::int32_t> user_id_of(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("userid");
  if (it == metadata.end() || it->second.empty()) return std::nullopt;
  const char* first = it->second.data();
  const char* last = first + it->second.size();
  std::int32_t value = 0;
  const auto [end, error] = std::from_chars(first, last, value);
  if (error != std::errc() || end != last) return std::nullopt;
  return value;
}

/// The high half of every Event.seq this server sends: nonzero, and most
/// likely different from the last run's (proto/batch.proto).
std::uint64_t draw_epoch() {
  std::random_device device;
  std::uint32_t epoch = 0;
  while (epoch == 0) epoch = static_cast<std::uint32_t>(device());
  return epoch;
}

class Core;
struct GatewayState;

using StreamService = proto::GameService::AsyncService;
using BatchService = gatehouse::batch::BatchGameService::AsyncService;

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

class StreamReactor final : public AsyncCall, public Endpoint {
 public:
  explicit StreamReactor(Core& core) : core_(core) {}

  /// Asks for the next call of the service; the reactor deletes itself
  /// once its call is over (or when none comes: shutdown).
  static void request(Core& core) {
    auto* reactor = new StreamReactor(core);
    // Before the request: gRPC takes the done tag only with it.
    reactor->context_.AsyncNotifyWhenDone(&reactor->done_tag_);
    core.stream_service().RequestStream(&reactor->context_, &reactor->stream_, &core.queue(),
                                        &core.queue(), &reactor->accept_tag_);
  }

  void never_came() override { delete this; }

  void accepted() override {
    request(core_);
    core_.call_began();
    start();
  }

  void completed(Op op, bool ok) override {
    switch (op) {
      case Op::kRead:
        on_read(ok);
        return;
      case Op::kWrite:
        on_write(ok);
        return;
      case Op::kDone:
        if (context_.IsCancelled()) on_cancel();
        return;
      default:
        return;
    }
  }

  StreamId id() const noexcept { return id_; }
  std::int32_t user_id() const noexcept { return user_id_; }
  StreamHandle handle() const noexcept override { return {core_.owner(), id_, user_id_}; }

  Decision push(std::span<const std::byte> message) override {
    return enqueue(core_.make_frame(core_.types().message, message, user_id_));
  }
  Decision kick() override {
    return end(core_.make_frame(core_.types().kick, {}, user_id_), grpc::Status::OK);
  }
  Decision end(grpc::Status status) override { return end(std::nullopt, std::move(status)); }

  /// Queues `frame` behind the write in flight.
  Decision enqueue(Frame&& frame) {
    std::lock_guard lock(mu_);
    if (ending_) return {};
    if (writing_ && queue_.size() >= core_.max_queued_frames()) {
      // The peer does not read: the write in flight may never complete, so
      // only a cancel ends the call. Nothing queued is kept.
      queue_.clear();
      ending_ = true;
      finish_status_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "slow consumer");
      return {false, Step::kNone, true};
    }
    queue_.push_back(std::move(frame));
    return {true, next_step_locked(), false};
  }

  /// Ends the stream with `status` once everything queued, then `last` (if
  /// any), is written.
  Decision end(std::optional<Frame> last, grpc::Status status) {
    std::lock_guard lock(mu_);
    if (ending_) return {};
    if (last) queue_.push_back(std::move(*last));
    ending_ = true;
    finish_status_ = std::move(status);
    return {true, next_step_locked(), false};
  }

  /// After a Decision with `cancel`; only while the reactor is surely alive
  /// (under Core::mu_, or from its own reactions).
  void cancel() override { context_.TryCancel(); }

  /// Starts what a Decision called for. The caller's last touch of `this`.
  void perform(Step step) override {
    switch (step) {
      case Step::kNone:
        return;
      case Step::kWrite:
        stream_.Write(write_frame_, &write_tag_);
        return;
      case Step::kFinish:
        stream_.Finish(finish_status_, &finish_tag_);
        return;
    }
  }

 private:
  /// The call arrived: a session for its `userid`, then reads.
  void start() {
    const std::optional<std::int32_t> user_id = user_id_of(context_);
    if (!user_id) {
      finish_now(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "metadata 'userid' must be a decimal int32"));
      return;
    }
    user_id_ = *user_id;
    id_ = core_.next_id();
    if (!core_.add(*this)) {
      finish_now(grpc::Status(grpc::StatusCode::UNAVAILABLE, "game server shutting down"));
      return;
    }
    registered_ = true;
    core_.handler().on_open(handle());
    start_read();
  }

  /// Finishes a call that never became a session.
  void finish_now(grpc::Status status) {
    Step step;
    {
      std::lock_guard lock(mu_);
      ending_ = true;
      finish_status_ = std::move(status);
      step = next_step_locked();
    }
    perform(step);
  }

  void on_read(bool ok) {
    if (ok) {
      dispatch();
      start_read();
      return;
    }
    // The read side is over: the client half-closed, or the call failed
    // (which the done tag tells). Either way the game ends the stream, after
    // what is queued, like a Go handler returning on io.EOF.
    Step step;
    {
      std::lock_guard lock(mu_);
      if (!ending_) {
        read_ended_ = true;  // before the game ended the stream
        ending_ = true;
        finish_status_ = grpc::Status::OK;
      }
      step = next_step_locked();
    }
    perform(step);
  }

  void on_write(bool ok) {
    Step step;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {  // the call is broken; nothing more can be written
        queue_.clear();
        if (!ending_) {
          ending_ = true;
          finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
        }
      }
      step = next_step_locked();
    }
    perform(step);
  }

  void on_cancel() {
    Step step;
    {
      std::lock_guard lock(mu_);
      queue_.clear();
      if (!ending_) {
        ending_ = true;
        finish_status_ = grpc::Status::CANCELLED;
      }
      step = next_step_locked();
    }
    perform(step);
  }

  /// The call is over and no operation is in flight or decided: Finish was
  /// decided (or the done tag could not have come), so none can be any more.
  void over() override {
    if (registered_) {
      core_.remove(*this);
      // Read to its end and not cancelled: the client half-closed. (Only
      // after the done tag may an async call ask IsCancelled.)
      const bool client_half_closed = read_ended_ && !context_.IsCancelled();
      core_.handler().on_end(handle(), client_half_closed);
    }
    Core& core = core_;
    delete this;
    core.call_ended();
  }

  /// Starts the next read unless the stream is ending. Under mu_ so that no
  /// read starts after Finish (Finish is decided under mu_ too); its
  /// completion comes on a polling thread, never inline, so holding mu_ is
  /// safe. The reactor is alive here: in start() or in on_read().
  void start_read() {
    std::lock_guard lock(mu_);
    if (ending_) return;
    begin_op();
    stream_.Read(&read_frame_, &read_tag_);
  }

  /// Hands one frame from the gateway to the game.
  void dispatch() {
    const int type = static_cast<int>(read_frame_.type());
    const std::string& bytes = read_frame_.message();
    const std::span<const std::byte> message(reinterpret_cast<const std::byte*>(bytes.data()),
                                             bytes.size());
    if (type == core_.types().message) {
      core_.handler().on_message(handle(), message);
    } else if (type == core_.types().ping) {
      // Ping is the contract's liveness probe: answered with the same bytes.
      const Decision decision = enqueue(core_.make_frame(core_.types().ping, message, user_id_));
      if (decision.cancel) cancel();
      perform(decision.step);
    }
    // Anything else (Kick or Register sent to a game) means nothing here.
  }

  /// What to start next; the one true caller of Write/Finish decides here.
  /// A decided operation counts as outstanding from here, so that the call
  /// cannot be over (and the reactor freed) before perform() started it.
  Step next_step_locked() {
    if (writing_ || finish_called_) return Step::kNone;
    if (!queue_.empty()) {
      write_frame_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      begin_op();
      return Step::kWrite;
    }
    if (ending_) {
      finish_called_ = true;
      begin_op();
      return Step::kFinish;
    }
    return Step::kNone;
  }

  Core& core_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<Frame, Frame> stream_{&context_};
  Tag accept_tag_{this, Op::kAccept};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  Tag done_tag_{this, Op::kDone};
  // Set in the constructor, before anyone else can see the reactor.
  StreamId id_{};
  std::int32_t user_id_ = 0;
  bool registered_ = false;

  Frame read_frame_;  ///< owned by the read in flight

  std::mutex mu_;
  std::deque<Frame> queue_;     ///< guarded by mu_
  Frame write_frame_;           ///< owned by the write in flight (writing_)
  bool writing_ = false;        ///< guarded by mu_
  bool ending_ = false;         ///< guarded by mu_: no more frames are taken
  bool finish_called_ = false;  ///< guarded by mu_
  grpc::Status finish_status_;  ///< guarded by mu_ until finish_called_
  bool read_ended_ = false;     ///< guarded by mu_: the read side ended the stream
};

// ------------------------------------------------------------------ batched contract
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
//     order is at the top of the file. A session's `ended` is set under
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

class BatchLink final : public AsyncCall, public std::enable_shared_from_this<BatchLink> {
 public:
  explicit BatchLink(Core& core) : core_(core) {}

  /// Asks for the next call of the service; the link keeps itself until the
  /// call is over (or none comes: shutdown).
  static void request(Core& core);

  // Under the GatewayState's mu:
  /// Queues `e` (moved from only when taken); false once the link is ending.
  /// When the queue is full the gateway does not read: as for a stream, the
  /// call is cancelled rather than the queue trimmed.
  bool send(BatchEvent& e);
  /// Queues a re-attached session's pending events, in order (emptying
  /// `events`); false, leaving them, once the link is ending.
  bool replay(std::deque<BatchEvent>& events);
  /// Stops the link for good (nothing more is written or taken; `cancel`:
  /// the call too): the events the gateway has not acknowledged, in write
  /// order; nullopt when it was detached already.
  std::optional<std::vector<BatchEvent>> detach_locked(bool cancel);

 private:
  /// The call arrived: becomes its gateway-id's link (the old one is
  /// detached and cancelled first), then reads.
  void start();
  void on_read(bool ok);
  void on_write(bool ok);
  /// The call is over and no operation of ours is in flight.
  void never_came() override;
  void accepted() override;
  void completed(Op op, bool ok) override;
  /// The call is over and no operation of ours is in flight.
  void over() override;
  // Each starts an operation (begin_op()); under mu_.
  void read_locked();
  void finish_locked();

  /// A written Batch kept until the gateway acknowledges all its events.
  struct Written {
    Batch batch;
    std::uint64_t first;  ///< the link index of its first event
  };

  void write_locked();
  /// After a write: keeps sending_ in written_ unless all acknowledged.
  void retain_sent_locked();
  /// The gateway's Batch.ack: frees what it covers; the sessions of the
  /// KICKs it covers go to `kicked`.
  void take_ack_locked(std::uint64_t ack, std::vector<std::uint64_t>& kicked);

  void dispatch(const BatchEvent& e);
  void open(const BatchEvent& e);
  void message(const BatchEvent& e);
  void close(const BatchEvent& e);
  /// Detaches the link (a private GatewayState: ends its sessions) and
  /// finishes the call once no write is in flight. Idempotent.
  void end_link();

  Core& core_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<Batch, Batch> stream_{&context_};
  Tag accept_tag_{this, Op::kAccept};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  Tag done_tag_{this, Op::kDone};
  std::shared_ptr<GatewayState> gateway_;  ///< set once, when the call arrives
  Batch in_;                               ///< owned by the read in flight
  std::mutex mu_;
  // Guarded by mu_:
  std::shared_ptr<BatchLink> self_;  ///< until over()
  Batch out_;                        ///< events waiting for the next write
  Batch sending_;                    ///< owned by the write in flight
  std::uint64_t sending_first_ = 0;  ///< link index of sending_'s first event
  std::deque<Written> written_;      ///< written, not all acknowledged, in order
  static constexpr std::size_t kSpareBatches = 4;
  std::vector<Batch> spares_;     ///< acknowledged batches, cleared, for reuse
  std::uint64_t next_index_ = 0;  ///< link index of the next event to write
  std::uint64_t acked_ = 0;       ///< our events the gateway acknowledged
  std::uint64_t read_ = 0;        ///< gateway events read (and dispatched)
  std::uint64_t ack_sent_ = 0;    ///< the last ack written
  bool writing_ = false;
  bool corked_ = false;  ///< a read batch is being dispatched
  bool ending_ = false;  ///< nothing more is taken
  bool detached_ = false;
  bool finished_ = false;
  bool started_ = false;  ///< start() took the link and started the read
  bool done_ = false;     ///< over() ran: the call is gone
};

/// Detaches `link` with `gateway`'s mu held: its unacknowledged events go back
/// to their sessions' `pending` (dropped when the session is gone), and its
/// sessions are detached.
void detach_link_locked(GatewayState& gateway, const std::shared_ptr<BatchLink> link, bool cancel) {
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

/// The on_end calls that a handler call caused (the handler kicked or
/// finished a session, its own included) run once it returned, on its thread,
/// with its dispatch_mu released: at once, one would wait for a dispatch_mu
/// this thread holds (its own session's), or whose holder may be waiting for
/// ours (two sessions kicking each other). Per thread: the outermost
/// call_handler's list, and whether a handler call is running.
using DeferredEnd = std::pair<std::shared_ptr<BatchSession>, bool>;
thread_local std::vector<DeferredEnd>* t_deferred_ends = nullptr;
thread_local bool t_in_handler_call = false;

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

void BatchSession::retire(bool client_half_closed) {
  if (t_in_handler_call) {
    t_deferred_ends->emplace_back(shared_from_this(), client_half_closed);
    return;
  }
  call_handler(std::unique_lock(dispatch_mu),
               [&] { core_.handler().on_end(handle(), client_half_closed); });
}

void BatchLink::request(Core& core) {
  const auto link = std::make_shared<BatchLink>(core);
  link->self_ = link;
  // Before the request: gRPC takes the done tag only with it.
  link->context_.AsyncNotifyWhenDone(&link->done_tag_);
  core.batch_service().RequestBatches(&link->context_, &link->stream_, &core.queue(), &core.queue(),
                                      &link->accept_tag_);
}

void BatchLink::never_came() {
  std::lock_guard lock(mu_);
  self_.reset();
}

void BatchLink::accepted() {
  request(core_);
  core_.call_began();
  start();
}

void BatchLink::completed(Op op, bool ok) {
  switch (op) {
    case Op::kRead:
      on_read(ok);
      return;
    case Op::kWrite:
      on_write(ok);
      return;
    case Op::kDone: {
      // Cancelled before start() took the link: the read it starts fails
      // and ends the link.
      bool started = false;
      {
        std::lock_guard lock(mu_);
        started = started_;
      }
      if (started && context_.IsCancelled()) end_link();
      return;
    }
    default:
      return;
  }
}

void BatchLink::read_locked() {
  begin_op();
  stream_.Read(&in_, &read_tag_);
}

void BatchLink::finish_locked() {
  finished_ = true;
  begin_op();
  stream_.Finish(grpc::Status::OK, &finish_tag_);
}

void BatchLink::start() {
  gateway_ = core_.gateway_of(context_);
  {
    std::lock_guard lock(gateway_->mu);
    // One link per gateway-id: the old one (a bridge that restarted before
    // its call failed here) hands its sessions over before we read.
    if (gateway_->link) detach_link_locked(*gateway_, gateway_->link, true);
    gateway_->link = shared_from_this();
  }
  std::lock_guard lock(mu_);
  read_locked();
  started_ = true;
}

bool BatchLink::send(BatchEvent& e) {
  std::lock_guard lock(mu_);
  if (ending_) return false;
  // Queued, or written and not acknowledged: a gateway that stops reading or
  // acknowledging must not grow this without bound.
  if (static_cast<std::size_t>(out_.events_size()) + (next_index_ - acked_) >=
      core_.max_queued_frames()) {
    ending_ = true;  // what is queued goes back to its sessions at end_link
    if (!done_) context_.TryCancel();
    return false;
  }
  *out_.add_events() = std::move(e);
  if (!writing_ && !corked_) write_locked();
  return true;
}

bool BatchLink::replay(std::deque<BatchEvent>& events) {
  std::lock_guard lock(mu_);
  if (ending_) return false;
  for (BatchEvent& e : events) out_.mutable_events()->Add(std::move(e));
  events.clear();
  if (!writing_ && !corked_ && out_.events_size() != 0) write_locked();
  return true;
}

std::optional<std::vector<BatchEvent>> BatchLink::detach_locked(bool cancel) {
  std::lock_guard lock(mu_);
  if (detached_) return std::nullopt;
  detached_ = true;
  ending_ = true;
  std::vector<BatchEvent> back;
  // The events from index acked_ on; the write in flight still reads its
  // batch, so that one is copied.
  const auto take = [&](Batch& batch, std::uint64_t first, bool in_flight) {
    const auto size = static_cast<std::uint64_t>(batch.events_size());
    for (std::uint64_t i = acked_ > first ? acked_ - first : 0; i < size; ++i) {
      BatchEvent& e = *batch.mutable_events(static_cast<int>(i));
      back.push_back(in_flight ? BatchEvent(e) : std::move(e));
    }
  };
  for (Written& w : written_) take(w.batch, w.first, false);
  if (writing_) take(sending_, sending_first_, true);
  take(out_, next_index_, false);
  written_.clear();
  out_.Clear();
  if (cancel && !done_) context_.TryCancel();
  return back;
}

void BatchLink::write_locked() {
  sending_.Swap(&out_);  // out_ gets the cleared previous batch
  sending_first_ = next_index_;
  next_index_ += static_cast<std::uint64_t>(sending_.events_size());
  sending_.set_ack(read_);
  ack_sent_ = read_;
  writing_ = true;
  begin_op();
  stream_.Write(sending_, &write_tag_);
}

void BatchLink::retain_sent_locked() {
  const std::uint64_t end = sending_first_ + static_cast<std::uint64_t>(sending_.events_size());
  if (!detached_ && end > acked_) {
    written_.push_back({std::move(sending_), sending_first_});
    // A freed batch keeps its cleared events for reuse: the next batch
    // fills them instead of allocating an event and a string per event.
    if (!spares_.empty()) {
      sending_.Swap(&spares_.back());
      spares_.pop_back();
    }
  }
  sending_.Clear();
}

void BatchLink::take_ack_locked(std::uint64_t ack, std::vector<std::uint64_t>& kicked) {
  if (detached_) return;  // what it had is back with its sessions
  const std::uint64_t upto = std::min(ack, next_index_);
  if (upto <= acked_) return;
  const auto scan = [&](const Batch& batch, std::uint64_t first) {
    const auto size = static_cast<std::uint64_t>(batch.events_size());
    for (std::uint64_t i = acked_ > first ? acked_ - first : 0; i < size && first + i < upto; ++i) {
      const BatchEvent& e = batch.events(static_cast<int>(i));
      if (e.kind() == BatchEvent::KICK) kicked.push_back(e.session());
    }
  };
  for (const Written& w : written_) scan(w.batch, w.first);
  if (writing_) scan(sending_, sending_first_);  // only read: the write reads it too
  acked_ = upto;
  while (!written_.empty() && written_.front().first + static_cast<std::uint64_t>(
                                                           written_.front().batch.events_size()) <=
                                  acked_) {
    if (spares_.size() < kSpareBatches) {
      written_.front().batch.Clear();
      spares_.push_back(std::move(written_.front().batch));
    }
    written_.pop_front();
  }
}

void BatchLink::on_read(bool ok) {
  if (!ok) {
    end_link();
    return;
  }
  std::vector<std::uint64_t> kicked;
  {
    std::lock_guard lock(mu_);
    take_ack_locked(in_.ack(), kicked);
    // What the handler answers to this batch leaves in one write, after it.
    corked_ = true;
  }
  if (!kicked.empty()) {
    // The gateway has those KICKs: their zombies go, tombstoned.
    std::lock_guard lock(gateway_->mu);
    const Clock::time_point expiry = Clock::now() + gateway_->grace;
    for (const std::uint64_t session : kicked) {
      const auto it = gateway_->sessions.find(session);
      if (it == gateway_->sessions.end() || !it->second->zombie) continue;
      it->second->link.reset();
      gateway_->sessions.erase(it);
      gateway_->tombstones.put(session, true, expiry);
    }
  }
  for (const BatchEvent& e : in_.events()) dispatch(e);
  const auto events = static_cast<std::uint64_t>(in_.events_size());
  std::lock_guard lock(mu_);
  corked_ = false;
  read_ += events;
  // An ack alone only for a batch with events: never in answer to an ack.
  if (!writing_ && !ending_ && (out_.events_size() != 0 || (events != 0 && read_ > ack_sent_))) {
    write_locked();
  }
  if (!ending_) read_locked();
}

void BatchLink::on_write(bool ok) {
  {
    std::lock_guard lock(mu_);
    writing_ = false;
    retain_sent_locked();
    if (!ok) ending_ = true;  // the call is broken; end_link takes back what is unacknowledged
    if (!ending_) {
      // The ack that was due while this write was in flight goes now.
      if (out_.events_size() != 0 || read_ > ack_sent_) write_locked();
    } else if (!finished_) {
      finish_locked();
    }
  }
  if (!ok) end_link();
}

void BatchLink::over() {
  end_link();  // detached at the latest now; finished already
  std::shared_ptr<BatchLink> self;
  {
    std::lock_guard lock(mu_);
    done_ = true;
    self = std::move(self_);
  }
  Core& core = core_;
  self.reset();  // may be the last reference: after the lock
  core.call_ended();
}

void BatchLink::dispatch(const BatchEvent& e) {
  switch (e.kind()) {
    case BatchEvent::OPEN:
      open(e);
      return;
    case BatchEvent::MESSAGE:
      message(e);
      return;
    case BatchEvent::CLOSE:
      close(e);
      return;
    default:
      return;  // KICK from a gateway means nothing
  }
}

void BatchLink::open(const BatchEvent& e) {
  GatewayState& gateway = *gateway_;
  {
    std::lock_guard lock(gateway.mu);
    if (gateway.link.get() != this) return;            // replaced: the gateway sends it again
    if (gateway.tombstones.find(e.session())) return;  // closed: a late OPEN
    const auto it = gateway.sessions.find(e.session());
    if (it != gateway.sessions.end()) {
      // Re-attached after a bridge restart: the same session (a zombie
      // too), which gets what the gateway has not had first.
      BatchSession& session = *it->second;
      if (session.link.get() == this) return;                             // a repeated OPEN
      if (session.link) detach_link_locked(gateway, session.link, true);  // an older link
      session.link = shared_from_this();
      replay(session.pending);  // when this link is ending, they stay for the next one
      return;
    }
  }
  if (e.user_id() < INT32_MIN || e.user_id() > INT32_MAX) return;
  const auto session = std::make_shared<BatchSession>(core_, gateway_, e.session(),
                                                      static_cast<std::int32_t>(e.user_id()));
  // Held until on_open returned: nobody's on_end (a kick from another thread)
  // comes before it.
  std::unique_lock serial(session->dispatch_mu);
  {
    const std::unique_lock registry = core_.lock_registry();
    std::lock_guard lock(gateway.mu);
    if (gateway.link.get() != this || gateway.tombstones.find(e.session()) ||
        gateway.sessions.contains(e.session())) {
      return;
    }
    if (const std::uint64_t* sent = gateway.forgotten.find(e.session())) {
      session->sent = *sent;
      gateway.forgotten.erase(e.session());
    }
    if (!core_.add_locked(*session)) return;  // shutting down
    session->link = shared_from_this();
    gateway.sessions.emplace(e.session(), session);
  }
  call_handler(std::move(serial), [&] { core_.handler().on_open(session->handle()); });
}

void BatchLink::message(const BatchEvent& e) {
  std::shared_ptr<BatchSession> session;
  {
    std::lock_guard lock(gateway_->mu);
    if (gateway_->link.get() != this) return;
    const auto it = gateway_->sessions.find(e.session());
    if (it == gateway_->sessions.end()) return;  // not (or no more) a session here
    session = it->second;
  }
  std::unique_lock serial(session->dispatch_mu);
  {
    std::lock_guard lock(gateway_->mu);
    if (gateway_->link.get() != this || session->ended) return;
    if (e.seq() != 0) {
      if (e.seq() <= session->last_seq) return;  // had it before the bridge restarted
      session->last_seq = e.seq();
    }
  }
  const std::string& bytes = e.message();
  call_handler(std::move(serial), [&] {
    core_.handler().on_message(session->handle(),
                               {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
  });
}

void BatchLink::close(const BatchEvent& e) {
  std::shared_ptr<BatchSession> ended;
  {
    const std::unique_lock registry = core_.lock_registry();
    std::lock_guard lock(gateway_->mu);
    if (gateway_->link.get() != this) return;
    const auto it = gateway_->sessions.find(e.session());
    if (it == gateway_->sessions.end()) return;
    const std::shared_ptr<BatchSession> session = it->second;
    gateway_->sessions.erase(it);
    gateway_->tombstones.put(e.session(), true, Clock::now() + gateway_->grace);
    session->link.reset();
    session->pending.clear();
    if (!session->ended) {  // not a zombie
      session->ended = true;
      core_.remove_locked(*session);
      ended = session;
    }
  }
  if (ended) ended->retire(true);
}

void BatchLink::end_link() {
  std::vector<std::shared_ptr<BatchSession>> ended;
  {
    std::unique_lock<std::mutex> registry;
    if (!gateway_->shared) registry = core_.lock_registry();
    std::lock_guard lock(gateway_->mu);
    detach_link_locked(*gateway_, shared_from_this(), false);
    if (!gateway_->shared) {
      // Nobody re-attaches these: they end with the link.
      for (const auto& [id, session] : gateway_->sessions) {
        session->pending.clear();
        if (session->ended) continue;
        session->ended = true;
        core_.remove_locked(*session);
        ended.push_back(session);
      }
      gateway_->sessions.clear();
    }
  }
  {
    std::lock_guard lock(mu_);
    if (!writing_ && !finished_ && !done_) finish_locked();
  }
  for (const auto& session : ended) session->retire(false);
}

Core::Core(GameServer& owner, GameHandler& handler, GameServerOptions options)
    : owner_(owner),
      handler_(handler),
      options_(std::move(options)),
      types_(frame_type_values(options_.numbering)) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.address, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(&stream_service_);
  builder.RegisterService(&batch_service_);
  queue_ = builder.AddCompletionQueue();
  // Two game servers on one port would split the gateway's streams between
  // them; a second bind must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Accept the gateway's keepalive pings (a game outage must be noticed on
  // idle streams too) instead of answering them with GOAWAY too_many_pings.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    throw std::runtime_error("game server: cannot listen on " + options_.address);
  }
  StreamReactor::request(*this);
  BatchLink::request(*this);
  for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.threads); ++i) {
    pollers_.emplace_back([this] {
      void* tag = nullptr;
      bool ok = false;
      while (queue_->Next(&tag, &ok)) {
        const auto* t = static_cast<AsyncCall::Tag*>(tag);
        t->call->on_completion(t->op, ok);
      }
    });
  }
  janitor_ = std::thread([this] { janitor(); });
}

Core::~Core() {
  stop_janitor();
  // Zombies left after shutdown() would keep their GatewayState (and it them).
  for (const auto& [id, gateway] : gateways_) {
    std::lock_guard lock(gateway->mu);
    gateway->sessions.clear();
  }
}

void Core::call_began() {
  std::lock_guard lock(calls_mu_);
  ++calls_;
}

void Core::call_ended() {
  std::lock_guard lock(calls_mu_);
  if (--calls_ == 0) calls_over_.notify_all();
}

bool Core::add(Endpoint& endpoint) {
  std::lock_guard lock(mu_);
  return add_locked(endpoint);
}

bool Core::add_locked(Endpoint& endpoint) {
  if (shutting_down_) return false;
  const StreamHandle h = endpoint.handle();
  streams_.emplace(static_cast<std::uint64_t>(h.id()), &endpoint);
  by_user_.emplace(h.user_id(), &endpoint);
  return true;
}

void Core::remove(Endpoint& endpoint) {
  std::lock_guard lock(mu_);
  remove_locked(endpoint);
}

void Core::remove_locked(Endpoint& endpoint) {
  const StreamHandle h = endpoint.handle();
  streams_.erase(static_cast<std::uint64_t>(h.id()));
  auto [first, last] = by_user_.equal_range(h.user_id());
  for (auto it = first; it != last; ++it) {
    if (it->second == &endpoint) {
      by_user_.erase(it);
      break;
    }
  }
}

std::shared_ptr<GatewayState> Core::gateway_of(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("gateway-id");
  if (it == metadata.end() || it->second.empty()) {
    return std::make_shared<GatewayState>(std::string(), false, options_.reattach_grace);
  }
  std::string id(it->second.data(), it->second.size());
  std::lock_guard lock(mu_);
  std::shared_ptr<GatewayState>& gateway = gateways_[id];
  if (!gateway)
    gateway = std::make_shared<GatewayState>(std::move(id), true, options_.reattach_grace);
  return gateway;
}

void Core::janitor() {
  std::unique_lock lock(janitor_mu_);
  while (!janitor_wake_.wait_for(lock, std::chrono::milliseconds(100),
                                 [this] { return janitor_stop_; })) {
    lock.unlock();
    expire(Clock::now());
    lock.lock();
  }
}

void Core::stop_janitor() {
  {
    std::lock_guard lock(janitor_mu_);
    janitor_stop_ = true;
  }
  janitor_wake_.notify_all();
  if (janitor_.joinable()) janitor_.join();
}

void Core::expire(Clock::time_point now) {
  std::vector<std::shared_ptr<GatewayState>> due;
  {
    std::lock_guard lock(mu_);
    for (auto it = gateways_.begin(); it != gateways_.end();) {
      GatewayState& gateway = *it->second;
      bool idle = false;
      {
        std::lock_guard state(gateway.mu);
        gateway.tombstones.sweep(now);
        gateway.forgotten.sweep(now);
        // Only this map refers to it (new references are made under mu_): no
        // link, no session.
        idle =
            it->second.use_count() == 1 && gateway.tombstones.empty() && gateway.forgotten.empty();
        if (!idle && gateway.next_expiry <= now) due.push_back(it->second);
      }
      it = idle ? gateways_.erase(it) : std::next(it);
    }
  }
  std::vector<std::shared_ptr<BatchSession>> ended;
  for (const auto& gateway : due) {
    std::lock_guard lock(mu_);
    std::lock_guard state(gateway->mu);
    Clock::time_point next = Clock::time_point::max();
    for (auto it = gateway->sessions.begin(); it != gateway->sessions.end();) {
      BatchSession& session = *it->second;
      if (session.link) {
        ++it;
        continue;
      }
      if (const Clock::time_point expiry = session.detached_since + gateway->grace; expiry > now) {
        next = std::min(next, expiry);
        ++it;
        continue;
      }
      session.pending.clear();
      if (!session.ended) {  // not a zombie
        session.ended = true;
        remove_locked(session);
        ended.push_back(it->second);
      }
      gateway->tombstones.put(it->first, true, now + gateway->grace);
      it = gateway->sessions.erase(it);
    }
    gateway->next_expiry = next;
  }
  for (const auto& session : ended) session->retire(false);
}

Frame Core::make_frame(int type, std::span<const std::byte> message, std::int32_t user_id) const {
  Frame frame;
  frame.set_type(static_cast<proto::Game::FrameType>(type));
  frame.set_message(reinterpret_cast<const char*>(message.data()), message.size());
  // The later generation carries the user id in every frame; the gonet2
  // gateway's Frame has no such field.
  if (options_.numbering == FrameNumbering::kLaterGeneration) frame.set_userid(user_id);
  return frame;
}

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

std::vector<StreamHandle> Core::streams() const {
  std::lock_guard lock(mu_);
  std::vector<StreamHandle> handles;
  handles.reserve(streams_.size());
  for (const auto& [id, reactor] : streams_) handles.push_back(reactor->handle());
  return handles;
}

std::size_t Core::stream_count() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

void Core::shutdown(std::chrono::milliseconds grace) {
  std::lock_guard serial(shutdown_mu_);
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  apply_many(std::nullopt, [](Endpoint& endpoint) {
    return endpoint.end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "game server shutting down"));
  });
  // Waits for every call to be done (over() included), cancelling those
  // still open at the deadline.
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  {
    // The calls cancelled at the deadline finish on the polling threads.
    std::unique_lock lock(calls_mu_);
    calls_over_.wait(lock, [this] { return calls_ == 0; });
  }
  // What is left on the queue are the requests for next calls, which fail.
  queue_->Shutdown();
  for (std::thread& poller : pollers_) poller.join();
  pollers_.clear();
  stop_janitor();  // its on_end calls, if any, are over too
}

}  // namespace

struct GameServer::Impl {
  Impl(GameServer& owner, GameHandler& handler, GameServerOptions options)
      : core(owner, handler, std::move(options)) {}
  Core core;
};

GameServer::GameServer(GameHandler& handler, GameServerOptions options)
    : impl_(std::make_unique<Impl>(*this, handler, std::move(options))) {}

GameServer::~GameServer() {
  shutdown();
}

int GameServer::port() const noexcept {
  return impl_->core.port();
}
FrameNumbering GameServer::numbering() const noexcept {
  return impl_->core.numbering();
}

bool GameServer::push(StreamId stream, std::span<const std::byte> message) {
  Core& core = impl_->core;
  return core.apply_one(stream, [&](Endpoint& endpoint) { return endpoint.push(message); });
}

std::size_t GameServer::push_to_user(std::int32_t user_id, std::span<const std::byte> message) {
  Core& core = impl_->core;
  return core.apply_many(user_id, [&](Endpoint& endpoint) { return endpoint.push(message); });
}

std::size_t GameServer::broadcast(std::span<const std::byte> message) {
  Core& core = impl_->core;
  return core.apply_many(std::nullopt, [&](Endpoint& endpoint) { return endpoint.push(message); });
}

bool GameServer::kick(StreamId stream) {
  return impl_->core.apply_one(stream, [](Endpoint& endpoint) { return endpoint.kick(); });
}

std::size_t GameServer::kick_user(std::int32_t user_id) {
  return impl_->core.apply_many(user_id, [](Endpoint& endpoint) { return endpoint.kick(); });
}

bool GameServer::finish(StreamId stream, grpc::Status status) {
  return impl_->core.apply_one(stream,
                               [&](Endpoint& endpoint) { return endpoint.end(std::move(status)); });
}

std::size_t GameServer::finish_user(std::int32_t user_id, const grpc::Status& status) {
  return impl_->core.apply_many(user_id, [&](Endpoint& endpoint) { return endpoint.end(status); });
}

std::vector<StreamHandle> GameServer::streams() const {
  return impl_->core.streams();
}
std::size_t GameServer::stream_count() const {
  return impl_->core.stream_count();
}

void GameServer::shutdown(std::chrono::milliseconds grace) {
  impl_->core.shutdown(grace);
}

}  // namespace gatehouse::game
