// GameServer on the gRPC callback API: one StreamReactor per call, a registry
// of live reactors, and a small state machine per reactor.
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

class StreamReactor;

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
  bool add(StreamReactor& reactor);
  void remove(StreamReactor& reactor);
  /// A Frame of `type` in this server's numbering, carrying `message`.
  Frame make_frame(int type, std::span<const std::byte> message, std::int32_t user_id) const;

  // For GameServer.
  int port() const noexcept { return port_; }
  FrameNumbering numbering() const noexcept { return options_.numbering; }
  /// Runs `op` (StreamReactor& -> Decision) on one stream; whether it was accepted.
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
  std::unordered_map<std::uint64_t, StreamReactor*> streams_;
  std::unordered_multimap<std::int32_t, StreamReactor*> by_user_;
  bool shutting_down_ = false;

  std::mutex shutdown_mu_;  ///< serializes shutdown() callers
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;  ///< last: stops before the rest goes
};

class StreamReactor final : public grpc::ServerBidiReactor<Frame, Frame> {
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
  StreamHandle handle() const noexcept { return {core_.owner(), id_, user_id_}; }

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
  void cancel() { context_->TryCancel(); }

  /// Starts what a Decision called for. The caller's last touch of `this`.
  void perform(Step step) {
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

Core::Core(GameServer& owner, GameHandler& handler, GameServerOptions options)
    : owner_(owner),
      handler_(handler),
      options_(std::move(options)),
      types_(frame_type_values(options_.numbering)) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.address, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(this);
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

bool Core::add(StreamReactor& reactor) {
  std::lock_guard lock(mu_);
  if (shutting_down_) return false;
  streams_.emplace(static_cast<std::uint64_t>(reactor.id()), &reactor);
  by_user_.emplace(reactor.user_id(), &reactor);
  return true;
}

void Core::remove(StreamReactor& reactor) {
  std::lock_guard lock(mu_);
  streams_.erase(static_cast<std::uint64_t>(reactor.id()));
  auto [first, last] = by_user_.equal_range(reactor.user_id());
  for (auto it = first; it != last; ++it) {
    if (it->second == &reactor) {
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
  StreamReactor* reactor = nullptr;
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
  std::vector<std::pair<StreamReactor*, Step>> started;
  std::size_t accepted = 0;
  {
    std::lock_guard lock(mu_);
    auto visit = [&](StreamReactor* reactor) {
      const Decision decision = op(*reactor);
      if (decision.cancel) reactor->cancel();
      if (decision.accepted) ++accepted;
      if (decision.step != Step::kNone) started.emplace_back(reactor, decision.step);
    };
    if (user_id) {
      auto [first, last] = by_user_.equal_range(*user_id);
      for (auto it = first; it != last; ++it) visit(it->second);
    } else {
      started.reserve(streams_.size());
      for (const auto& [id, reactor] : streams_) visit(reactor);
    }
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
  apply_many(std::nullopt, [](StreamReactor& reactor) {
    return reactor.end(std::nullopt,
                       grpc::Status(grpc::StatusCode::UNAVAILABLE, "game server shutting down"));
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
  return core.apply_one(stream, [&](StreamReactor& reactor) {
    return reactor.enqueue(core.make_frame(core.types().message, message, reactor.user_id()));
  });
}

std::size_t GameServer::push_to_user(std::int32_t user_id, std::span<const std::byte> message) {
  Core& core = impl_->core;
  return core.apply_many(user_id, [&](StreamReactor& reactor) {
    return reactor.enqueue(core.make_frame(core.types().message, message, reactor.user_id()));
  });
}

std::size_t GameServer::broadcast(std::span<const std::byte> message) {
  Core& core = impl_->core;
  return core.apply_many(std::nullopt, [&](StreamReactor& reactor) {
    return reactor.enqueue(core.make_frame(core.types().message, message, reactor.user_id()));
  });
}

namespace {
/// The end of a kicked stream: a Kick frame, then OK.
Decision kick_reactor(const Core& core, StreamReactor& reactor) {
  return reactor.end(core.make_frame(core.types().kick, {}, reactor.user_id()), grpc::Status::OK);
}
}  // namespace

bool GameServer::kick(StreamId stream) {
  Core& core = impl_->core;
  return core.apply_one(stream,
                        [&](StreamReactor& reactor) { return kick_reactor(core, reactor); });
}

std::size_t GameServer::kick_user(std::int32_t user_id) {
  Core& core = impl_->core;
  return core.apply_many(user_id,
                         [&](StreamReactor& reactor) { return kick_reactor(core, reactor); });
}

bool GameServer::finish(StreamId stream, grpc::Status status) {
  return impl_->core.apply_one(
      stream, [&](StreamReactor& reactor) { return reactor.end(std::nullopt, std::move(status)); });
}

std::size_t GameServer::finish_user(std::int32_t user_id, const grpc::Status& status) {
  return impl_->core.apply_many(
      user_id, [&](StreamReactor& reactor) { return reactor.end(std::nullopt, status); });
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
