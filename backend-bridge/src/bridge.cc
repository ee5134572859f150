#include "gatehouse/bridge/bridge.h"

#include <grpcpp/grpcpp.h>

#include <array>
#include <chrono>
#include <thread>
#include <utility>

#include "batch.grpc.pb.h"
#include "game.grpc.pb.h"
#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/contract/session.h"
#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/session_table.h"

namespace gatehouse::bridge {
namespace {

constexpr std::size_t kRingBatch = 256;

// ------------------------------------------------------------------ calls on the queue

/// A client bidi call to a game service on gRPC's completion-queue API: the
/// bridge's gRPC thread polls the queue and runs every completion inline (a
/// game's message goes on towards the worker from there), where the callback
/// API would hand each one over from the polling thread to another. Writes
/// are started from the main thread, one in flight at a time. The call keeps
/// itself (self_) until it is over (its status taken) and no operation of it
/// is in flight.
template <class Message>
class QueuedCall : public Bridge::CallOnQueue {
 public:
  explicit QueuedCall(Bridge& bridge) : CallOnQueue(bridge) {}

  /// Half-closes after the queued writes (main thread).
  void close() {
    std::lock_guard lock(mutex_);
    closing_ = true;
    if (!writing_) writes_done_locked();
  }

  void on_completion(Op op, bool ok) final {
    switch (op) {
      case Op::kStart:
        on_started(ok);
        break;
      case Op::kRead:
        on_read_done(ok);
        break;
      case Op::kWrite:
        on_write_done(ok);
        break;
      case Op::kWritesDone:
      case Op::kFinish:
        break;
    }
    std::shared_ptr<QueuedCall> self;
    bool by_us = false;
    {
      std::lock_guard lock(mutex_);
      --outstanding_;
      if (op == Op::kFinish) finished_ = true;
      if (!finished_ || outstanding_ != 0) return;
      self = std::move(self_);
      by_us = writes_done_;
    }
    on_done(status_, by_us);
    ended();
    // `self` may be the last reference: it goes at the end of this scope.
  }

 protected:
  /// Starts the call prepared on context_ (`stream`); `self` keeps this
  /// alive until the call is over.
  void begin(std::shared_ptr<QueuedCall> self,
             std::unique_ptr<grpc::ClientAsyncReaderWriter<Message, Message>> stream) {
    began();
    std::lock_guard lock(mutex_);
    self_ = std::move(self);
    stream_ = std::move(stream);
    ++outstanding_;
    stream_->StartCall(&start_tag_);
  }
  /// False once the call is ending: nothing more may be queued.
  bool open_locked() const { return !closing_ && !over_; }
  /// Whether a write may start now: the call started and is not over, and
  /// none is in flight.
  bool can_write_locked() const { return started_ && !over_ && !writing_; }
  void write_locked(Message* message) {  // mutex_ held, can_write_locked()
    writing_ = true;
    ++outstanding_;
    stream_->Write(*message, &write_tag_);
  }

  /// A write completed (ok) or failed with the call: accounting, and on
  /// failure dropping what is queued. mutex_ held.
  virtual void wrote_locked(bool ok) = 0;
  /// Starts the next write if anything is queued; whether it did. mutex_ held.
  virtual bool write_next_locked() = 0;
  /// One message from the game (the gRPC thread).
  virtual void on_read(Message& in) = 0;
  /// The call is over; `closed_by_us`: we had half-closed it.
  virtual void on_done(const grpc::Status& status, bool closed_by_us) = 0;

  ~QueuedCall() = default;

  std::mutex mutex_;
  bool writing_ = false;  // guarded by mutex_

 private:
  void on_started(bool ok) {
    std::lock_guard lock(mutex_);
    if (!ok) {  // the call never started: only its status is left to take
      finish_locked();
      return;
    }
    started_ = true;
    ++outstanding_;
    stream_->Read(&in_, &read_tag_);
    if (!write_next_locked() && closing_) writes_done_locked();  // queued before the start
  }

  void on_read_done(bool ok) {
    if (!ok) {  // the game ended the call (or it broke): take its status
      std::lock_guard lock(mutex_);
      finish_locked();
      return;
    }
    on_read(in_);
    in_.Clear();
    std::lock_guard lock(mutex_);
    ++outstanding_;
    stream_->Read(&in_, &read_tag_);
  }

  void on_write_done(bool ok) {
    std::lock_guard lock(mutex_);
    writing_ = false;
    wrote_locked(ok);
    if (!ok) return;  // the call broke; the read fails too and takes the status
    if (!write_next_locked() && closing_) writes_done_locked();
  }

  /// The read side is over: nothing more is written, and the call's status
  /// comes with Finish. Once.
  void finish_locked() {
    if (over_) return;
    over_ = true;
    ++outstanding_;
    stream_->Finish(&status_, &finish_tag_);
  }

  void writes_done_locked() {                        // no write in flight
    if (writes_done_ || over_ || !started_) return;  // on_started() does it
    writes_done_ = true;
    ++outstanding_;
    stream_->WritesDone(&writes_done_tag_);
  }

  std::unique_ptr<grpc::ClientAsyncReaderWriter<Message, Message>> stream_;
  Tag start_tag_{this, Op::kStart};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag writes_done_tag_{this, Op::kWritesDone};
  Tag finish_tag_{this, Op::kFinish};
  Message in_;                        // owned by the read in flight
  grpc::Status status_;               // Finish's, once finished_
  std::shared_ptr<QueuedCall> self_;  // guarded by mutex_: until the call is over
  int outstanding_ = 0;               // guarded by mutex_: operations in flight
  bool started_ = false;              // guarded by mutex_: StartCall completed
  bool closing_ = false;              // guarded by mutex_: close() was called
  bool writes_done_ = false;          // guarded by mutex_
  bool over_ = false;                 // guarded by mutex_: the read side ended; Finish started
  bool finished_ = false;             // guarded by mutex_: Finish completed
};

}  // namespace

class Bridge::GameStream final : public QueuedCall<proto::Game::Frame> {
 public:
  GameStream(Bridge& bridge, std::uint64_t conn, std::int64_t user_id, FrameTypeValues numbering,
             std::atomic<std::int64_t>& in_flight)
      : QueuedCall(bridge), conn_(conn), numbering_(numbering), in_flight_(in_flight) {
    context_.AddMetadata("userid", std::to_string(user_id));
  }

  void start(proto::GameService::Stub& stub, grpc::CompletionQueue& queue,
             std::shared_ptr<GameStream> self) {
    begin(std::move(self), stub.PrepareAsyncStream(&context_, &queue));
  }

  /// Queues one Message frame (main thread); false when the stream is
  /// already ending (the worker hears of that end).
  bool send(std::span<const std::byte> bytes) {
    std::lock_guard lock(mutex_);
    if (!open_locked()) return false;
    proto::Game::Frame frame;
    frame.set_type(proto::Game::Message);
    frame.set_message(bytes.data(), bytes.size());
    queue_.push_back(std::move(frame));
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    write_next_locked();
    return true;
  }

 private:
  void wrote_locked(bool ok) override {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);  // delivered, or failed with the stream
    if (ok) return;
    in_flight_.fetch_sub(static_cast<std::int64_t>(queue_.size()), std::memory_order_relaxed);
    queue_.clear();
  }

  bool write_next_locked() override {
    if (queue_.empty() || !can_write_locked()) return false;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    write_locked(&current_);
    return true;
  }

  void on_read(proto::Game::Frame& in) override {
    const int type = static_cast<int>(in.type());
    if (type == numbering_.message) {
      bridge_.post({Event::kMessage, conn_, 0, false, std::move(*in.mutable_message())});
    } else if (type == numbering_.kick) {
      bridge_.post({Event::kKick, conn_, 0, false, {}});
    } else if (type != numbering_.ping) {
      spdlog::debug("conn {:#x}: ignoring game frame type {}", conn_, type);
    }
  }

  void on_done(const grpc::Status& status, bool closed_by_us) override {
    {
      // The game ended the call with these still queued: they go with it.
      std::lock_guard lock(mutex_);
      in_flight_.fetch_sub(static_cast<std::int64_t>(queue_.size()), std::memory_order_relaxed);
      queue_.clear();
    }
    if (!status.ok() && !closed_by_us) {
      spdlog::warn("conn {:#x}: game stream failed: {} ({})", conn_, status.error_message(),
                   static_cast<int>(status.error_code()));
    }
    bridge_.post(
        {Event::kEnded, conn_, static_cast<std::int32_t>(status.error_code()), closed_by_us, {}});
  }

  const std::uint64_t conn_;
  const FrameTypeValues numbering_;
  std::atomic<std::int64_t>& in_flight_;
  proto::Game::Frame current_;            // owned by the write in flight
  std::deque<proto::Game::Frame> queue_;  // guarded by mutex_
};

// ------------------------------------------------------------------ one batched link

/// The batched contract (proto/batch.proto): one stream per game service
/// carrying every session's events. The main thread queues events with
/// send(); they go out as one Batch per gRPC write, and whatever arrives
/// while a write is in flight rides in the next one, so the batch size
/// follows the load (one event per write when idle, hundreds under load).
///
/// Acknowledgements, both ways: the game's Batch.ack says how many of our
/// events it has read (acknowledged(), the link thread; the main thread then
/// releases their records from the worker rings), and ours says how many of
/// its events are in the worker rings (took() / backlog_written(); sent on
/// the next write, or alone once it lags).
///
class Bridge::BatchLink final : public QueuedCall<batch::Batch>,
                                public std::enable_shared_from_this<Bridge::BatchLink> {
 public:
  BatchLink(Bridge& bridge, std::uint32_t backend, const std::string& gateway_id)
      : QueuedCall(bridge), backend_(backend) {
    context_.AddMetadata("gateway-id", gateway_id);
  }

  void start(batch::BatchGameService::Stub& stub, grpc::CompletionQueue& queue,
             std::shared_ptr<BatchLink> self) {
    begin(std::move(self), stub.PrepareAsyncBatches(&context_, &queue));
  }

  /// Queues one event (main thread) for the next flush(); its index on the
  /// link (events count from the link's first), or nullopt when the link is
  /// ending.
  std::optional<std::uint64_t> send(batch::Event::Kind kind, std::uint64_t conn,
                                    std::span<const std::byte> message, std::int64_t user_id,
                                    std::uint64_t seq) {
    std::lock_guard lock(mutex_);
    if (!open_locked()) return std::nullopt;
    batch::Event* e = out_.add_events();
    e->set_session(conn);
    e->set_kind(kind);
    if (!message.empty()) e->set_message(message.data(), message.size());
    if (user_id != 0) e->set_user_id(user_id);
    if (seq != 0) e->set_seq(seq);
    return sent_++;
  }

  /// Starts a write of what is queued unless one is in flight (main thread,
  /// once per duty-cycle pass: a pass's events share one gRPC message), or of
  /// our ack alone when it lags. Returns the writes completed since the last
  /// call.
  std::uint64_t flush(std::int64_t now_ns) {
    std::lock_guard lock(mutex_);
    if (can_write_locked() && open_locked()) {
      const std::uint64_t lag = ack_ready_.load(std::memory_order_acquire) - ack_sent_;
      ack_due_ = lag >= kAckEvents || (lag != 0 && now_ns - last_write_ns_ >= kAckDelayNs);
      write_next_locked();
    }
    return std::exchange(batches_written_, 0);
  }

  /// How many of our events the game has read (any thread).
  std::uint64_t acknowledged() const { return acked_.load(std::memory_order_acquire); }
  /// The link ended: what it had not acknowledged is not coming back.
  bool down() const { return down_.load(std::memory_order_acquire); }
  /// Cancels the call (main thread); true the first time.
  bool abandon() {
    if (abandoned_) return false;
    abandoned_ = true;
    cancel();
    return true;
  }
  std::uint32_t backend() const noexcept { return backend_; }
  /// Events sent that the game has not acknowledged yet.
  std::uint64_t unacknowledged() {
    std::lock_guard lock(mutex_);
    return sent_ - std::min(sent_, acked_.load(std::memory_order_acquire));
  }

  /// The gRPC thread handled `events` game events, of which the backlogged
  /// ones are waiting for ring room: they are acknowledged once written.
  void took(std::uint64_t events) {
    std::lock_guard lock(ack_mutex_);
    read_ += events;
    if (backlogged_ == 0) ack_ready_.store(read_, std::memory_order_release);
  }
  void backlogged() {
    std::lock_guard lock(ack_mutex_);
    ++backlogged_;
  }
  void backlog_written() {  // main thread
    std::lock_guard lock(ack_mutex_);
    if (--backlogged_ == 0) ack_ready_.store(read_, std::memory_order_release);
  }

 private:
  static constexpr std::uint64_t kAckEvents = 256;
  static constexpr std::int64_t kAckDelayNs = 20'000'000;

  void wrote_locked(bool ok) override {
    if (ok) {
      ++batches_written_;
      return;
    }
    out_.Clear();  // the link broke; on_done counts what the game had not acknowledged
  }

  bool write_next_locked() override {
    if (!can_write_locked() || (out_.events_size() == 0 && !ack_due_)) return false;
    ack_due_ = false;
    ack_sent_ = ack_ready_.load(std::memory_order_acquire);
    out_.set_ack(ack_sent_);
    sending_.Swap(&out_);
    out_.Clear();
    last_write_ns_ = monotonic_ns();
    write_locked(&sending_);
    return true;
  }

  void on_read(batch::Batch& in) override {
    if (in.ack() > acked_.load(std::memory_order_relaxed)) {
      acked_.store(in.ack(), std::memory_order_release);
    }
    bridge_.post_batch(*this, in);
    bridge_.direct_batches_.fetch_add(1, std::memory_order_relaxed);
  }

  void on_done(const grpc::Status& status, bool) override {
    const std::uint64_t lost = unacknowledged();
    down_.store(true, std::memory_order_release);
    bridge_.post({Event::kLinkDown,
                  backend_,
                  static_cast<std::int32_t>(status.error_code()),
                  false,
                  {},
                  lost});
  }

  const std::uint32_t backend_;
  batch::Batch sending_;               // owned by the write in flight
  batch::Batch out_;                   // guarded by mutex_
  std::uint64_t sent_ = 0;             // guarded by mutex_: events queued since the start
  std::uint64_t batches_written_ = 0;  // guarded by mutex_: since the last flush()
  std::uint64_t ack_sent_ = 0;         // guarded by mutex_
  std::int64_t last_write_ns_ = 0;     // guarded by mutex_
  bool ack_due_ = false;               // guarded by mutex_
  std::atomic<std::uint64_t> acked_{0};
  std::atomic<bool> down_{false};
  bool abandoned_ = false;  // main thread
  std::mutex ack_mutex_;
  std::uint64_t read_ = 0;        // guarded by ack_mutex_: game events handled
  std::uint64_t backlogged_ = 0;  // guarded by ack_mutex_: of those, waiting for ring room
  std::atomic<std::uint64_t> ack_ready_{0};
};

// ------------------------------------------------------------------ bridge

/// A --backend entry: "HOST:PORT" (the gonet2 contract) or
/// "batch:HOST:PORT" (the batched contract).
struct Bridge::Backend {
  static constexpr std::string_view kBatchPrefix = "batch:";
  explicit Backend(std::string_view entry)
      : batched(entry.starts_with(kBatchPrefix)),
        address(batched ? entry.substr(kBatchPrefix.size()) : entry),
        channel(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                          channel_arguments())),
        stub(channel),
        batch_stub(channel) {}
  /// A game service that comes back is used again within ~2 s (gRPC's
  /// default reconnect backoff grows to 2 minutes); sessions that log in
  /// while it is down are kicked at once (backend_unavailable) rather than
  /// kept waiting. gRPC C-core uses the "min reconnect backoff" as the
  /// deadline of each connection attempt, HTTP/2 handshake included: at
  /// 100 ms a game service busy for a moment failed every stream opened
  /// meanwhile (seen under ASan on a loaded CI machine), so it gets 5 s.
  static grpc::ChannelArguments channel_arguments() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    return args;
  }
  const bool batched;
  const std::string address;
  std::shared_ptr<grpc::Channel> channel;
  proto::GameService::Stub stub;
  batch::BatchGameService::Stub batch_stub;
  // Batched backends: the link (null while down) and when to try again.
  std::shared_ptr<BatchLink> link;
  std::int64_t relink_due_ns = 0;
  std::uint32_t relink_backoff_ms = 50;
  std::int64_t down_since_ns = 0;  // since the link broke, until a new one holds
  std::int64_t link_started_ns = 0;
  std::string gateway_id;  // names our session space to the game (proto/batch.proto)
};

struct Bridge::WorkerLink {
  WorkerLink(GatewaySegment& segment, std::uint32_t w, shm::Doorbell bell)
      : doorbell(std::move(bell)),
        from_worker(segment.ring(RingKind::kWorkerToBridge, w)),
        to_worker(segment.ring(RingKind::kBridgeToWorker, w), &doorbell),
        replay_until(from_worker.taken_before_attach()),
        released(from_worker.position()) {}
  shm::Doorbell doorbell;
  shm::RingConsumer from_worker;
  // Written by the main thread and, for batched links, straight from gRPC's
  // threads (saving the main thread's wakeup on the way back), so under
  // produce_mutex; the backlog keeps the order when the ring is full.
  std::mutex produce_mutex;
  shm::RingProducer to_worker;  // guarded by produce_mutex
  std::deque<Event> backlog;    // guarded by produce_mutex: waiting for room, in order
  // Records whose batched events the game has not acknowledged, in ring
  // order; the ring's head stays at the first (main thread). Events of one
  // link from one pass share an entry (released when its last is acknowledged).
  struct Pending {
    std::uint64_t position;  // the first record's start
    std::shared_ptr<BatchLink> link;
    std::uint64_t last_index;  // on the link
    std::uint64_t pass;
    std::int64_t since_ns;
  };
  std::deque<Pending> pending;
  // Records before this had been handled by a dead predecessor: gonet2 ones
  // went to their streams, batched ones are sent again (the game de-duplicates).
  const std::uint64_t replay_until;
  std::uint64_t released;  // the head as last committed
};

Bridge::Bridge(GatewaySegment& segment, shm::Doorbell doorbell,
               std::vector<shm::Doorbell> worker_doorbells)
    : segment_(segment),
      settings_(segment.settings()),
      metrics_(segment.metrics().bridge),
      in_flight_(segment.metrics().bridge.in_flight),
      doorbell_(std::move(doorbell)) {
  if (worker_doorbells.size() != settings_.workers) {
    throw std::invalid_argument("bridge: expected " + std::to_string(settings_.workers) +
                                " worker doorbells");
  }
  for (std::uint32_t w = 0; w < settings_.workers; ++w) {
    workers_.push_back(std::make_unique<WorkerLink>(segment, w, std::move(worker_doorbells[w])));
  }
  grpc_thread_ = std::thread([this] {
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
      const auto* t = static_cast<CallOnQueue::Tag*>(tag);
      t->call->on_completion(t->op, ok);
    }
  });
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  const std::string gateway_id = std::string(host) + "/" + segment_.segment().name() + "@" +
                                 std::to_string(segment_.segment().header().created_unix_ns);
  for (std::uint32_t b = 0; b < settings_.backend_count; ++b) {
    backends_.push_back(std::make_unique<Backend>(settings_.backends[b]));
    backends_.back()->gateway_id = gateway_id + "/" + std::to_string(b);
    spdlog::info("game service {}: {} ({} contract)", b, backends_.back()->address,
                 backends_.back()->batched ? "batched" : "gonet2");
    if (backends_.back()->batched) start_link(b);
  }
  segment_.control().bridge.pid.store(::getpid());
}

Bridge::~Bridge() {
  // Calls still up (the drain timed out) are cancelled; the gRPC thread
  // ends them, then drains the queue.
  for (auto& [conn, stream] : streams_) stream->cancel();
  for (auto& b : backends_) {
    if (b->link) b->link->cancel();
  }
  {
    std::unique_lock lock(calls_mutex_);
    calls_over_.wait(lock, [this] { return calls_live_ == 0; });
  }
  queue_.Shutdown();
  if (grpc_thread_.joinable()) grpc_thread_.join();
}

void Bridge::call_began() {
  std::lock_guard lock(calls_mutex_);
  ++calls_live_;
}

void Bridge::call_ended() {
  std::lock_guard lock(calls_mutex_);
  if (--calls_live_ == 0) calls_over_.notify_all();
}

std::uint32_t Bridge::backend_index(std::int64_t user_id) const {
  return static_cast<std::uint32_t>(static_cast<std::size_t>(user_id) % backends_.size());
}

Bridge::Backend* Bridge::backend_of(std::int64_t user_id) const {
  return backends_.empty() ? nullptr : backends_[backend_index(user_id)].get();
}

bool Bridge::send_batched(Backend& backend, const Origin* origin, int kind, std::uint64_t conn,
                          std::span<const std::byte> message, std::int64_t user_id,
                          std::uint64_t seq) {
  if (!backend.link) return false;
  const auto index =
      backend.link->send(static_cast<batch::Event::Kind>(kind), conn, message, user_id, seq);
  if (!index) return false;
  if (origin != nullptr) {
    auto& pending = origin->worker->pending;
    if (!pending.empty() && pending.back().link == backend.link && pending.back().pass == pass_) {
      pending.back().last_index = *index;
    } else {
      pending.push_back({origin->position, backend.link, *index, pass_, pass_ns_});
    }
  }
  return true;
}

bool Bridge::open_stream(std::uint64_t conn, std::int64_t user_id, const Origin* origin) {
  if (backends_.empty() || streams_.contains(conn) || batched_.contains(conn)) return false;
  const std::uint32_t backend = backend_index(user_id);
  if (Backend& b = *backends_[backend]; b.batched) {
    if (!b.link && b.down_since_ns != 0) {
      // The game service is away: as with a stream that cannot open, the
      // session is kicked (backend_unavailable) rather than left talking to
      // nobody.
      post({Event::kEnded, conn, grpc::StatusCode::UNAVAILABLE, false, {}});
      return true;
    }
    batched_.emplace(conn, BatchedSession{backend, user_id});
    // A link that is down sends the OPEN when it is back (start_link).
    send_batched(b, origin, batch::Event::OPEN, conn, {}, user_id);
    return true;
  }
  auto stream = std::make_shared<GameStream>(*this, conn, user_id,
                                             frame_type_values(settings_.numbering), in_flight_);
  streams_[conn] = stream;
  stream->start(backends_[backend]->stub, queue_, stream);
  metrics_.add(metrics::kGameStreamsOpened);
  return true;
}

/// A bridge that starts while sessions are logged in replaced one that died:
/// it opens their game streams again, and counts what the dead one held.
void Bridge::take_over() {
  const std::int64_t lost = in_flight_.exchange(0);
  if (lost > 0) {
    metrics_.add(metrics::kGameFramesLost, static_cast<std::uint64_t>(lost));
    spdlog::warn("{} frames were in a dead bridge's hands and are lost", lost);
  }
  auto sessions = segment_.sessions();
  std::size_t reopened = 0;
  for (std::uint32_t slot = 0; slot < sessions.slots(); ++slot) {
    const shm::ConnectionId id = sessions.live_id(slot);
    const Session* s = id ? sessions.find(id) : nullptr;
    if (s == nullptr || s->state != Session::kLoggedIn) continue;
    if (open_stream(id.value(), s->user_id)) {
      if (!batched_.contains(id.value())) reopening_[id.value()] = s->user_id;
      ++reopened;
    }
  }
  if (reopened != 0) {
    metrics_.add(metrics::kGameStreamsReopened, reopened);
    spdlog::warn("reopened the game streams of {} logged-in sessions", reopened);
  }
}

void Bridge::start_link(std::uint32_t backend) {
  Backend& b = *backends_[backend];
  b.link = std::make_shared<BatchLink>(*this, backend, b.gateway_id);
  b.link_started_ns = monotonic_ns();
  b.link->start(b.batch_stub, queue_, b.link);
  metrics_.add(metrics::kGameStreamsOpened);
  // Sessions attached while the link was down (or before a bridge restart)
  // are announced again; the game treats a known session's OPEN as re-attach.
  std::size_t reattached = 0;
  for (const auto& [conn, session] : batched_) {
    if (session.backend != backend) continue;
    send_batched(b, nullptr, batch::Event::OPEN, conn, {}, session.user_id);
    ++reattached;
  }
  if (reattached != 0) {
    spdlog::info("game service {}: batched link up, {} sessions re-attached", b.address,
                 reattached);
  }
}

void Bridge::relink_due_backends() {
  const std::int64_t now = monotonic_ns();
  for (std::uint32_t i = 0; i < backends_.size(); ++i) {
    Backend& b = *backends_[i];
    if (!b.batched || b.down_since_ns == 0) continue;
    if (b.link && now - b.link_started_ns > 1'000'000'000) {
      b.down_since_ns = 0;  // the new link has held for a second: the game service is back
      b.relink_backoff_ms = 50;
      continue;
    }
    // Between attempts only: an attempt in progress may still get through.
    if (!b.link && now - b.down_since_ns > backend_wait_ns()) give_up_sessions(i);
    if (!b.link && b.relink_due_ns != 0 && now >= b.relink_due_ns) {
      b.relink_due_ns = 0;
      start_link(i);
    }
  }
}

/// Kicks (backend_unavailable) every session waiting for batched backend
/// `backend`, which has been away longer than --backend-wait.
void Bridge::give_up_sessions(std::uint32_t backend) {
  std::size_t kicked = 0;
  for (auto it = batched_.begin(); it != batched_.end();) {
    if (it->second.backend != backend) {
      ++it;
      continue;
    }
    post({Event::kEnded, it->first, grpc::StatusCode::UNAVAILABLE, false, {}});
    it = batched_.erase(it);
    ++kicked;
  }
  if (kicked != 0) {
    spdlog::warn("game service {}: away for more than {} s; kicking the {} sessions waiting for it",
                 backends_[backend]->address, settings_.backend_wait_ms / 1000.0, kicked);
  }
}

std::int64_t Bridge::backend_wait_ns() const noexcept {
  return std::int64_t{settings_.backend_wait_ms} * 1'000'000;
}

std::int64_t Bridge::ack_timeout_ns() const noexcept {
  return std::min<std::int64_t>(backend_wait_ns(), 10'000'000'000);
}

template <class Batch>
void Bridge::post_batch(BatchLink& from, Batch& batch) {
  std::uint64_t received = 0;
  bool backlogged = false;
  std::array<bool, kMaxWorkers> touched{};
  for (auto& e : *batch.mutable_events()) {
    Event event;
    if (e.kind() == batch::Event::MESSAGE) {
      event = {Event::kMessage, e.session(), 0, false, {}};
      event.seq = e.seq();
      ++received;
    } else if (e.kind() == batch::Event::KICK) {
      event = {Event::kKick, e.session(), 0, false, {}};
    } else {
      continue;  // OPEN/CLOSE from a game mean nothing
    }
    const std::uint32_t w = worker_of_slot(shm::ConnectionId(event.conn).slot(), settings_);
    if (w >= workers_.size()) {  // not a session id this gateway ever gave out
      direct_dropped_.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("batched link: event for unknown session {:#x} dropped", event.conn);
      continue;
    }
    WorkerLink& link = *workers_[w];
    std::lock_guard lock(link.produce_mutex);
    // Copied from the parsed message straight into the ring: the message
    // keeps its string for the next parse (no allocation per event).
    if (link.backlog.empty() && write_event(link, event, std::as_bytes(std::span(e.message()))) !=
                                    shm::WriteStatus::kFull) {
      touched[w] = true;
      continue;
    }
    // Held in this process now: not acknowledged to the game until written.
    from.backlogged();
    event.bytes = std::move(*e.mutable_message());
    event.link = from.shared_from_this();
    link.backlog.push_back(std::move(event));
    backlogged = true;
  }
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    if (!touched[w]) continue;
    std::lock_guard lock(workers_[w]->produce_mutex);
    workers_[w]->to_worker.publish();
  }
  from.took(static_cast<std::uint64_t>(batch.events_size()));  // in shared memory now
  direct_received_.fetch_add(received, std::memory_order_relaxed);
  // A full ring: the main thread retries its backlog.
  if (backlogged && parked_.load(std::memory_order_seq_cst)) doorbell_.ring();
}

shm::WriteStatus Bridge::write_event(WorkerLink& link, const Event& e,
                                     std::span<const std::byte> bytes) {
  shm::WriteStatus status = shm::WriteStatus::kOk;
  switch (e.kind) {
    case Event::kMessage:
      status = ipc::write_record(link.to_worker, ipc::kGameMessage, ipc::GameMessage{e.conn, e.seq},
                                 bytes);
      break;
    case Event::kKick:
      status = ipc::write_record(link.to_worker, ipc::kGameKick, ipc::GameKick{e.conn});
      break;
    case Event::kEnded:
      status = ipc::write_record(link.to_worker, ipc::kStreamEnded,
                                 ipc::StreamEnded{e.conn, e.grpc_code, 0});
      break;
    case Event::kLinkDown:
      break;  // never for a worker
  }
  if (status == shm::WriteStatus::kTooLarge) {
    // Larger than any client frame; the worker would have to kick for it.
    ipc::write_record(
        link.to_worker, ipc::kStreamEnded,
        ipc::StreamEnded{e.conn, static_cast<std::int32_t>(grpc::RESOURCE_EXHAUSTED), 0});
    spdlog::warn("conn {:#x}: game message of {} bytes is too large", e.conn, bytes.size());
  }
  return status;
}

void Bridge::retry_due_streams() {
  const std::int64_t now = monotonic_ns();
  for (auto& [conn, retry] : retries_) {
    if (retry.due_ns == 0 || now < retry.due_ns) continue;
    retry.due_ns = 0;  // until this attempt ends
    open_stream(conn, retry.user_id);
  }
}

void Bridge::post(Event event) {
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(events_mutex_);
    events_.push_back(std::move(event));
  }
  if (parked_.load(std::memory_order_seq_cst)) doorbell_.ring();
}

std::size_t Bridge::read_worker(WorkerLink& worker) {
  const std::size_t n = worker.from_worker.poll(
      [&](const shm::Record& r) { return on_worker_record(worker, r); }, kRingBatch);
  release_acknowledged(worker);
  return n;
}

/// Commits the worker ring's head up to the first record whose batched
/// events the game has not acknowledged; a link that broke releases its own
/// (on_done counted them lost).
void Bridge::release_acknowledged(WorkerLink& worker) {
  auto& pending = worker.pending;
  while (!pending.empty() && (pending.front().link->down() ||
                              pending.front().link->acknowledged() > pending.front().last_index)) {
    pending.pop_front();
  }
  // A game that holds events unacknowledged stalls this worker's ring: after
  // a while its link is given up as broken (its events counted as dropped).
  if (!pending.empty() && pass_ns_ - pending.front().since_ns > ack_timeout_ns() &&
      pending.front().link->abandon()) {
    spdlog::error(
        "game service link {}: no acknowledgement for {} ms; cancelling the link (a batched "
        "game service must acknowledge what it reads, proto/batch.proto)",
        pending.front().link->backend(), ack_timeout_ns() / 1'000'000);
  }
  const std::uint64_t head =
      pending.empty() ? worker.from_worker.position() : pending.front().position;
  if (head != worker.released) {
    worker.from_worker.commit(head);
    worker.released = head;
  }
}

bool Bridge::on_worker_record(WorkerLink& worker, const shm::Record& record) {
  // A record its dead predecessor handled: batched events go again (the game
  // drops what it had), gonet2 frames do not (their streams got them or died
  // with the bridge).
  const bool replay = record.end <= worker.replay_until;
  if (!replay) worker.from_worker.note_taken(record.end);  // before anything leaves
  const Origin origin{&worker, record.position};
  switch (record.type) {
    case ipc::kStreamOpen:
      if (const auto r = ipc::parse_record<ipc::StreamOpen>(record.payload)) {
        const Backend* b = backend_of(r->header.user_id);
        if (replay && (b == nullptr || !b->batched)) break;
        open_stream(r->header.conn, r->header.user_id, &origin);
      }
      break;
    case ipc::kStreamMessage:
      if (const auto r = ipc::parse_record<ipc::StreamMessage>(record.payload)) {
        const std::uint64_t conn = r->header.conn;
        Backend* b = backend_of(r->header.user_id);
        if (b != nullptr && b->batched) {
          // A session given up on (its game service stayed away) has no
          // place to send to; a replayed one may have closed since.
          if ((replay || batched_.contains(conn)) &&
              send_batched(*b, &origin, batch::Event::MESSAGE, conn, r->tail, 0, r->header.seq)) {
            metrics_.add(metrics::kGameMessagesSent);
            if (replay) metrics_.add(metrics::kGameEventsResent);
          } else {
            metrics_.add(metrics::kDroppedToGame);
            spdlog::debug("conn {:#x}: batched link down, message dropped", conn);
          }
          break;
        }
        if (replay) break;
        const auto it = streams_.find(conn);
        if (it != streams_.end()) {
          metrics_.add(it->second->send(r->tail) ? metrics::kGameMessagesSent
                                                 : metrics::kDroppedToGame);
        } else if (retries_.contains(conn)) {
          // Waiting for the game service to come back: nowhere to send it.
          metrics_.add(metrics::kDroppedToGame);
          spdlog::debug("conn {:#x}: game service down, message dropped", conn);
        } else {
          // No stream (it failed and its end is on the way to the worker):
          // say so again, so the session is kicked rather than talking to
          // nobody.
          metrics_.add(metrics::kDroppedToGame);
          post({Event::kEnded, conn, grpc::StatusCode::UNAVAILABLE, false, {}});
        }
      }
      break;
    case ipc::kStreamClose:
      if (const auto r = ipc::parse_record<ipc::StreamClose>(record.payload)) {
        const std::uint64_t conn = r->header.conn;
        Backend* b = backend_of(r->header.user_id);
        if (b != nullptr && b->batched) {
          if (batched_.erase(conn) != 0 || replay) {
            send_batched(*b, &origin, batch::Event::CLOSE, conn, {});
          }
          break;
        }
        if (replay) break;
        retries_.erase(conn);
        reopening_.erase(conn);
        const auto it = streams_.find(conn);
        if (it != streams_.end()) it->second->close();
      }
      break;
    default:
      spdlog::error("unexpected record type {} from a worker", record.type);
  }
  return true;
}

std::size_t Bridge::deliver_events() {
  {
    std::lock_guard lock(events_mutex_);
    taken_.swap(events_);
  }
  std::size_t work = taken_.size();
  const std::int64_t now = monotonic_ns();
  for (Event& e : taken_) {
    if (e.kind == Event::kLinkDown) {
      in_flight_.fetch_sub(1, std::memory_order_relaxed);  // the event itself
      Backend& b = *backends_[e.conn];
      b.link.reset();
      if (e.lost != 0) metrics_.add(metrics::kDroppedToGame, e.lost);
      if (stop_requested_ != 0) continue;
      if (e.grpc_code != 0) metrics_.add(metrics::kGameStreamsFailed);
      spdlog::warn(
          "game service {}: batched link ended (code {}; {} events it had not acknowledged "
          "are dropped); {} sessions wait for it, retry in {} ms",
          b.address, e.grpc_code, e.lost,
          std::count_if(batched_.begin(), batched_.end(),
                        [&](const auto& kv) { return kv.second.backend == e.conn; }),
          b.relink_backoff_ms);
      b.relink_due_ns = now + std::int64_t{b.relink_backoff_ms} * 1'000'000;
      b.relink_backoff_ms = std::min<std::uint32_t>(b.relink_backoff_ms * 2, 2000);
      if (b.down_since_ns == 0) b.down_since_ns = now;
      continue;
    }
    if (e.kind == Event::kMessage && reopening_.erase(e.conn) != 0) {
      retries_.erase(e.conn);  // the re-opened stream works
    }
    if (e.kind == Event::kEnded && !e.closed_by_us &&
        e.grpc_code == grpc::StatusCode::UNAVAILABLE && reopening_.contains(e.conn)) {
      // A re-opened stream and the game service is down: try again later
      // rather than kick a session that did nothing wrong.
      auto [it, fresh] =
          retries_.try_emplace(e.conn, Retry{reopening_[e.conn], 0, now + backend_wait_ns(), 50});
      Retry& r = it->second;
      if (now < r.give_up_ns) {
        r.backoff_ms = std::min<std::uint32_t>(r.backoff_ms * 2, 5000);
        r.due_ns = now + std::int64_t{r.backoff_ms} * 1'000'000;
        streams_.erase(e.conn);
        in_flight_.fetch_sub(1, std::memory_order_relaxed);
        continue;
      }
      spdlog::warn("conn {:#x}: game service still down after {} s; giving up", e.conn,
                   settings_.backend_wait_ms / 1000.0);
      retries_.erase(e.conn);
      reopening_.erase(e.conn);
    }
    if (e.kind == Event::kEnded && e.closed_by_us) {
      in_flight_.fetch_sub(1, std::memory_order_relaxed);  // nothing to deliver
    }
    if (e.kind == Event::kMessage) metrics_.add(metrics::kGameMessagesReceived);
    if (e.kind == Event::kEnded && e.grpc_code != 0 && !e.closed_by_us) {
      metrics_.add(metrics::kGameStreamsFailed);
    }
    if (e.kind == Event::kEnded) {
      streams_.erase(e.conn);
      retries_.erase(e.conn);
      reopening_.erase(e.conn);
    }
    if (e.kind == Event::kEnded && e.closed_by_us) continue;  // the session is gone already
    const auto worker = worker_of_slot(shm::ConnectionId(e.conn).slot(), settings_);
    std::lock_guard lock(workers_[worker]->produce_mutex);
    workers_[worker]->backlog.push_back(std::move(e));
  }
  taken_.clear();
  metrics_.add(metrics::kGameMessagesReceived,
               direct_received_.exchange(0, std::memory_order_relaxed));
  metrics_.add(metrics::kDroppedToClient, direct_dropped_.exchange(0, std::memory_order_relaxed));
  for (auto& link : workers_) {
    std::lock_guard lock(link->produce_mutex);
    while (!link->backlog.empty()) {
      Event& e = link->backlog.front();
      if (write_event(*link, e, std::as_bytes(std::span(e.bytes))) == shm::WriteStatus::kFull)
        break;
      if (e.link)
        written_.push_back(std::move(e.link));
      else
        in_flight_.fetch_sub(1, std::memory_order_relaxed);
      link->backlog.pop_front();
      ++work;
    }
    link->to_worker.publish();
    for (const auto& batch_link : written_) batch_link->backlog_written();  // published: ack them
    written_.clear();
  }
  return work;
}

void Bridge::flush_links() {
  std::uint64_t unacknowledged = 0;
  for (auto& b : backends_) {
    if (!b->link) continue;
    metrics_.add(metrics::kGameBatchesSent, b->link->flush(pass_ns_));
    unacknowledged += b->link->unacknowledged();
  }
  metrics_.set(metrics::kGameEventsUnacknowledged, static_cast<std::int64_t>(unacknowledged));
  metrics_.add(metrics::kGameBatchesReceived,
               direct_batches_.exchange(0, std::memory_order_relaxed));
}

void Bridge::close_all_streams() {
  for (auto& [conn, stream] : streams_) stream->close();
  for (auto& b : backends_) {
    if (b->link) b->link->close();
  }
}

std::size_t Bridge::links_up() const {
  return static_cast<std::size_t>(
      std::count_if(backends_.begin(), backends_.end(), [](const auto& b) { return b->link; }));
}

void Bridge::park(std::chrono::nanoseconds timeout) {
  parked_.store(true, std::memory_order_seq_cst);
  bool idle;
  {
    std::lock_guard lock(events_mutex_);
    idle = events_.empty();
  }
  std::size_t raised = 0;
  for (; idle && raised < workers_.size(); ++raised) {
    if (!workers_[raised]->from_worker.prepare_park()) break;
  }
  // Records waiting for the game's ack are released soon after it comes
  // (nobody wakes us for an ack: that would cost a wakeup per reply).
  const bool holding = std::any_of(workers_.begin(), workers_.end(),
                                   [](const auto& w) { return !w->pending.empty(); });
  if (holding) timeout = std::min<std::chrono::nanoseconds>(timeout, std::chrono::milliseconds(2));
  if (idle && raised == workers_.size()) doorbell_.wait(timeout);
  for (std::size_t i = 0; i < raised; ++i) workers_[i]->from_worker.unpark();
  parked_.store(false, std::memory_order_relaxed);
}

int Bridge::run() {
  take_over();
  shm::BackoffIdler idler =
      shm::BackoffIdler::duty_cycle(std::chrono::microseconds(settings_.idle_spin_us));
  ProcessStatus& status = segment_.control().bridge;
  bool stopping = false;
  std::int64_t stop_deadline = 0;
  for (;;) {
    std::size_t work = 0;
    ++pass_;
    pass_ns_ = monotonic_ns();
    for (auto& link : workers_) work += read_worker(*link);
    flush_links();
    work += deliver_events();
    if (!retries_.empty()) retry_due_streams();
    relink_due_backends();
    const std::int64_t now = monotonic_ns();
    status.heartbeat_ns.store(now, std::memory_order_relaxed);
    metrics_.set(metrics::kGameStreamsOpen,
                 static_cast<std::int64_t>(streams_.size() + links_up()));
    if (stop_requested_ != 0 && !stopping) {
      stopping = true;
      stop_deadline = now + std::int64_t{settings_.drain_timeout_ms} * 1'000'000;
      spdlog::info("stopping: half-closing {} game streams", streams_.size());
      close_all_streams();
    }
    if (stopping && ((streams_.empty() && links_up() == 0) || now > stop_deadline)) break;
    idler.idle(work, [this](std::chrono::nanoseconds timeout) { park(timeout); });
  }
  if (!streams_.empty()) spdlog::warn("{} game streams did not end in time", streams_.size());
  return 0;
}

}  // namespace gatehouse::bridge
