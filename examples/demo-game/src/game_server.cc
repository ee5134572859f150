// GameServer on the gRPC callback API: one StreamReactor per gonet2 call, one
// BatchLink per batched call (each session on it a BatchSession), a registry
// of live sessions of both kinds (Endpoint), and a small state machine per
// reactor. The rules below are for StreamReactor; BatchLink states its own
// further down.
//
// Ownership and lifetime (the part that must hold under concurrent
// push/kick while a client disconnects):
//   - gRPC owns the call; a StreamReactor is created in Stream() and deletes
//     itself in OnDone(), after it has left the registry.
//   - Outside threads reach a reactor only through the registry, under
//     Core::mu_. OnDone() must take that mutex to leave the registry, so a
//     reactor found under it is alive until the mutex is released.
//   - Decisions (queue a frame, start the next write, finish) are made under
//     the reactor's own mu_; the gRPC operation they call for (StartWrite,
//     Finish) is started afterwards with no lock held. That is safe without
//     the registry lock because a decided-but-unstarted write or finish keeps
//     OnDone from running (gRPC calls OnDone only once Finish was called and
//     every operation completed), and it is the caller's last touch of the
//     reactor: once started, the operation may complete and OnDone may free it.
//   - One write in flight (write_frame_, owned by it while writing_), a
//     queue behind it, and Finish only once the queue is drained and no write
//     is in flight.
#include "gatehouse/game/game_server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <charconv>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <system_error>
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

/// The decimal int32 in the `userid` metadata; nullopt when missing or malformed.
std::optional<std::int32_t> user_id_of(const grpc::CallbackServerContext& context) {
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

class Core;

/// The batched contract's service (proto/batch.proto): one BatchLink per call.
class BatchService final : public gatehouse::batch::BatchGameService::CallbackService {
 public:
  explicit BatchService(Core& core) : core_(core) {}
  grpc::ServerBidiReactor<gatehouse::batch::Batch, gatehouse::batch::Batch>* Batches(
      grpc::CallbackServerContext* context) override;

 private:
  Core& core_;
};

class Core final : public proto::GameService::CallbackService {
 public:
  Core(GameServer& owner, GameHandler& handler, GameServerOptions options);

  grpc::ServerBidiReactor<Frame, Frame>* Stream(grpc::CallbackServerContext* context) override;

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
  GameServer& owner_;
  GameHandler& handler_;
  const GameServerOptions options_;
  const FrameTypeValues types_;

  mutable std::mutex mu_;  ///< guards the registry; see the lifetime note at the top
  std::unordered_map<std::uint64_t, Endpoint*> streams_;
  std::unordered_multimap<std::int32_t, Endpoint*> by_user_;
  bool shutting_down_ = false;

  std::mutex shutdown_mu_;  ///< serializes shutdown() callers
  BatchService batch_service_{*this};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;  ///< last: stops before the rest goes
};

class StreamReactor final : public grpc::ServerBidiReactor<Frame, Frame>, public Endpoint {
 public:
  StreamReactor(Core& core, grpc::CallbackServerContext* context) : core_(core), context_(context) {
    const std::optional<std::int32_t> user_id = user_id_of(*context);
    if (!user_id) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "metadata 'userid' must be a decimal int32"));
      return;
    }
    user_id_ = *user_id;
    id_ = core_.next_id();
    if (!core_.add(*this)) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "game server shutting down"));
      return;
    }
    registered_ = true;
    core_.handler().on_open(handle());
    start_read();
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
  void cancel() override { context_->TryCancel(); }

  /// Starts what a Decision called for. The caller's last touch of `this`.
  void perform(Step step) override {
    switch (step) {
      case Step::kNone:
        return;
      case Step::kWrite:
        StartWrite(&write_frame_);
        return;
      case Step::kFinish:
        Finish(std::move(finish_status_));
        return;
    }
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      dispatch();
      start_read();
      return;
    }
    // The read side is over: the client half-closed, or the call failed (for
    // which gRPC has already marked the context cancelled). Either way the
    // game ends the stream, after what is queued, like a Go handler
    // returning on io.EOF.
    Step step;
    {
      std::lock_guard lock(mu_);
      if (!ending_) {
        client_half_closed_ = !context_->IsCancelled();
        ending_ = true;
        finish_status_ = grpc::Status::OK;
      }
      step = next_step_locked();
    }
    perform(step);
  }

  void OnWriteDone(bool ok) override {
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

  void OnCancel() override {
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

  void OnDone() override {
    if (registered_) {
      core_.remove(*this);
      core_.handler().on_end(handle(), client_half_closed_);
    }
    delete this;
  }

 private:
  /// Starts the next read unless the stream is ending. Under mu_ so that no
  /// read starts after Finish (Finish is decided under mu_ too); the read's
  /// reaction runs on a gRPC thread, never inline, so holding mu_ is safe.
  /// The reactor is alive here: it is in its constructor or in OnReadDone.
  void start_read() {
    std::lock_guard lock(mu_);
    if (!ending_) StartRead(&read_frame_);
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

  /// What to start next; the one true caller of StartWrite/Finish decides here.
  Step next_step_locked() {
    if (writing_ || finish_called_) return Step::kNone;
    if (!queue_.empty()) {
      write_frame_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      return Step::kWrite;
    }
    if (ending_) {
      finish_called_ = true;
      return Step::kFinish;
    }
    return Step::kNone;
  }

  Core& core_;
  grpc::CallbackServerContext* const context_;  ///< owned by gRPC, valid until OnDone returns
  // Set in the constructor, before anyone else can see the reactor.
  StreamId id_{};
  std::int32_t user_id_ = 0;
  bool registered_ = false;

  Frame read_frame_;  ///< owned by the read in flight

  std::mutex mu_;
  std::deque<Frame> queue_;          ///< guarded by mu_
  Frame write_frame_;                ///< owned by the write in flight (writing_)
  bool writing_ = false;             ///< guarded by mu_
  bool ending_ = false;              ///< guarded by mu_: no more frames are taken
  bool finish_called_ = false;       ///< guarded by mu_
  grpc::Status finish_status_;       ///< guarded by mu_ until finish_called_
  bool client_half_closed_ = false;  ///< guarded by mu_; read in OnDone
};

// ------------------------------------------------------------------ batched contract
//
// One BatchLink per Batches() call; each session it carries is a
// BatchSession in the registry, like a stream. Lifetime: the link and its
// sessions are shared_ptrs (the link keeps itself alive until OnDone; a
// session keeps its link). A session leaves the registry exactly once, by
// whoever marks it `ended` first (a kick or finish under Core::mu_, the
// gateway's CLOSE, or the end of the link), and that one runs on_end. Handler
// calls for one session are serialized by its `dispatch_mu`.

using gatehouse::batch::Batch;
using BatchEvent = gatehouse::batch::Event;

class BatchLink;

class BatchSession final : public Endpoint {
 public:
  BatchSession(Core& core, std::shared_ptr<BatchLink> link, std::uint64_t session,
               std::int32_t user_id)
      : core_(core),
        link_(std::move(link)),
        session_(session),
        id_(Core::next_id()),
        user_id_(user_id) {}

  StreamHandle handle() const noexcept override { return {core_.owner(), id_, user_id_}; }
  Decision push(std::span<const std::byte> message) override;
  Decision kick() override;
  /// The batched contract has no per-session status: OK or an error ends the
  /// session with a KICK, except UNAVAILABLE (the server is going away), which
  /// ends it here only: the gateway keeps the session and re-attaches it to
  /// the next link.
  Decision end(grpc::Status status) override {
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return kick();
    if (!mark_ended()) return {};
    core_.remove_locked(*this);
    return {true, Step::kFinish, false};
  }
  void cancel() override {}
  void perform(Step step) override;

  std::uint64_t session() const noexcept { return session_; }
  /// Marks the session ended; true for the one caller that did it.
  bool mark_ended() { return !ended_.exchange(true); }
  bool ended() const { return ended_.load(); }
  /// on_end, serialized with the read side's calls; the registry entry is gone.
  void retire(bool client_half_closed);
  std::mutex dispatch_mu;  ///< held around every handler call for this session

 private:
  Core& core_;
  const std::shared_ptr<BatchLink> link_;
  const std::uint64_t session_;
  const StreamId id_;
  const std::int32_t user_id_;
  std::atomic<bool> ended_{false};
};

class BatchLink final : public grpc::ServerBidiReactor<Batch, Batch>,
                        public std::enable_shared_from_this<BatchLink> {
 public:
  BatchLink(Core& core, grpc::CallbackServerContext* context) : core_(core), context_(context) {}

  void start() {
    self_ = shared_from_this();
    StartRead(&in_);
  }

  /// Queues one event to the gateway; starts a write if none is in flight.
  /// False once the link is ending.
  bool send(BatchEvent::Kind kind, std::uint64_t session, std::span<const std::byte> message) {
    std::lock_guard lock(mu_);
    if (ending_) return false;
    if (static_cast<std::size_t>(out_.events_size()) >= core_.max_queued_frames()) {
      // The gateway does not read: as for a stream, cancel rather than trim.
      ending_ = true;
      out_.Clear();
      context_->TryCancel();
      return false;
    }
    BatchEvent* e = out_.add_events();
    e->set_session(session);
    e->set_kind(kind);
    if (!message.empty()) e->set_message(message.data(), message.size());
    if (!writing_ && !corked_) write_locked();
    return true;
  }

  void forget(std::uint64_t session) {
    std::lock_guard lock(mu_);
    sessions_.erase(session);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      end_link();
      return;
    }
    // What the handler answers to this batch leaves in one write, after it.
    {
      std::lock_guard lock(mu_);
      corked_ = true;
    }
    for (const BatchEvent& e : in_.events()) dispatch(e);
    std::lock_guard lock(mu_);
    corked_ = false;
    if (!writing_ && !ending_ && out_.events_size() != 0) write_locked();
    if (!ending_) StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      ending_ = true;
      out_.Clear();
    }
    if (!ending_ && out_.events_size() != 0) {
      write_locked();
    } else if (ending_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  void OnCancel() override { end_link(); }

  void OnDone() override {
    end_link();
    std::lock_guard lock(mu_);
    self_.reset();  // the sessions' references may keep the object a little longer
  }

 private:
  void write_locked() {
    sending_.Swap(&out_);
    out_.Clear();
    writing_ = true;
    StartWrite(&sending_);
  }

  void dispatch(const BatchEvent& e);
  /// Ends every session of the link and finishes the call once writes are done.
  void end_link();

  Core& core_;
  grpc::CallbackServerContext* const context_;  ///< owned by gRPC, valid until OnDone returns
  std::shared_ptr<BatchLink> self_;
  Batch in_;  ///< owned by the read in flight
  std::mutex mu_;
  Batch out_;              ///< guarded by mu_: events waiting for the next write
  Batch sending_;          ///< owned by the write in flight
  bool writing_ = false;   ///< guarded by mu_
  bool corked_ = false;    ///< guarded by mu_: a read batch is being dispatched
  bool ending_ = false;    ///< guarded by mu_
  bool finished_ = false;  ///< guarded by mu_
  std::unordered_map<std::uint64_t, std::shared_ptr<BatchSession>> sessions_;  ///< guarded by mu_
};

Decision BatchSession::push(std::span<const std::byte> message) {
  if (ended()) return {};
  return {link_->send(BatchEvent::MESSAGE, session_, message), Step::kNone, false};
}

Decision BatchSession::kick() {
  if (!mark_ended()) return {};
  core_.remove_locked(*this);  // apply_* holds Core::mu_
  link_->send(BatchEvent::KICK, session_, {});
  return {true, Step::kFinish, false};
}

void BatchSession::perform(Step step) {
  if (step == Step::kFinish) retire(false);
}

void BatchSession::retire(bool client_half_closed) {
  // The link's map holds a reference until forget(); keep this alive past it.
  const std::shared_ptr<BatchLink> link = link_;
  std::lock_guard lock(dispatch_mu);
  core_.handler().on_end(handle(), client_half_closed);
  link->forget(session_);
}

void BatchLink::dispatch(const BatchEvent& e) {
  std::shared_ptr<BatchSession> session;
  {
    std::lock_guard lock(mu_);
    const auto it = sessions_.find(e.session());
    if (it != sessions_.end()) session = it->second;
  }
  switch (e.kind()) {
    case BatchEvent::OPEN: {
      if (session) return;  // re-attached after a gateway restart: the same session
      if (e.user_id() < INT32_MIN || e.user_id() > INT32_MAX) return;
      session = std::make_shared<BatchSession>(core_, shared_from_this(), e.session(),
                                               static_cast<std::int32_t>(e.user_id()));
      {
        std::lock_guard lock(mu_);
        if (ending_) return;
        sessions_.emplace(e.session(), session);
      }
      std::lock_guard serial(session->dispatch_mu);
      if (!core_.add(*session)) {
        session->mark_ended();
        forget(e.session());
        return;
      }
      core_.handler().on_open(session->handle());
      return;
    }
    case BatchEvent::MESSAGE: {
      if (!session) return;
      std::lock_guard serial(session->dispatch_mu);
      if (session->ended()) return;
      const std::string& bytes = e.message();
      core_.handler().on_message(session->handle(),
                                 {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
      return;
    }
    case BatchEvent::CLOSE:
      if (session && session->mark_ended()) {
        core_.remove(*session);
        session->retire(true);
      }
      return;
    default:
      return;  // KICK from a gateway means nothing
  }
}

void BatchLink::end_link() {
  std::vector<std::shared_ptr<BatchSession>> sessions;
  {
    std::lock_guard lock(mu_);
    ending_ = true;
    sessions.reserve(sessions_.size());
    for (const auto& [id, session] : sessions_) sessions.push_back(session);
    if (!writing_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }
  for (const auto& session : sessions) {
    if (session->mark_ended()) {
      core_.remove(*session);
      session->retire(false);
    }
  }
}

grpc::ServerBidiReactor<Batch, Batch>* BatchService::Batches(grpc::CallbackServerContext* context) {
  auto link = std::make_shared<BatchLink>(core_, context);
  link->start();
  return link.get();
}

Core::Core(GameServer& owner, GameHandler& handler, GameServerOptions options)
    : owner_(owner),
      handler_(handler),
      options_(std::move(options)),
      types_(frame_type_values(options_.numbering)) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.address, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(this);
  builder.RegisterService(&batch_service_);
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
}

grpc::ServerBidiReactor<Frame, Frame>* Core::Stream(grpc::CallbackServerContext* context) {
  return new StreamReactor(*this, context);
}

bool Core::add(Endpoint& endpoint) {
  std::lock_guard lock(mu_);
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
  // Waits for every call to be done (OnDone included), cancelling those
  // still open at the deadline.
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
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
