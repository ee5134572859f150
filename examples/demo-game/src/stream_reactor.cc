// StreamReactor: one gonet2 Stream call (proto/game.proto), one session.
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
#include "stream_reactor.h"

#include <charconv>
#include <deque>
#include <mutex>
#include <optional>
#include <system_error>
#include <utility>

#include "server_core.h"

namespace gatehouse::game::detail {

namespace {

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

}  // namespace

void request_stream(Core& core) {
  StreamReactor::request(core);
}

}  // namespace gatehouse::game::detail
