#include "gatehouse/bridge/bridge.h"

#include <grpcpp/grpcpp.h>

#include <array>
#include <chrono>
#include <utility>

#include "batch.grpc.pb.h"
#include "game.grpc.pb.h"
#include "gatehouse/common/log.h"
#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/session_table.h"
#include "gatehouse/worker/session.h"

namespace gatehouse::bridge {
namespace {

constexpr std::size_t kRingBatch = 256;

// ------------------------------------------------------------------ one stream

/// What a gonet2 stream and a batched link share: a client bidi call whose
/// writes are started from the bridge's main thread, one in flight at a time,
/// and which is held open (AddHold) until the bridge half-closes it or it
/// breaks, so OnDone cannot run under a write the main thread is starting.
template <class Message>
class HeldStream : public grpc::ClientBidiReactor<Message, Message> {
 public:
  /// Half-closes after the queued writes (main thread).
  void close() {
    std::lock_guard lock(mutex_);
    closing_ = true;
    if (!writing_) finish_writes();
  }

  void OnWriteDone(bool ok) final {
    std::lock_guard lock(mutex_);
    writing_ = false;
    wrote_locked(ok);
    if (!ok) {  // the call broke; OnDone follows once the hold is gone
      release_hold();
      return;
    }
    if (!write_next_locked() && closing_) finish_writes();
  }

  void OnReadDone(bool ok) final {
    if (!ok) {  // the game ended the call (or it failed)
      std::lock_guard lock(mutex_);
      if (!writing_)
        release_hold();
      else
        closing_ = true;  // OnWriteDone releases it
      return;
    }
    on_read(in_);
    in_.Clear();
    this->StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) final {
    bool by_us;
    {
      std::lock_guard lock(mutex_);
      by_us = closed_by_us_;
    }
    on_done(status, by_us);
    auto self = std::move(self_);  // may destroy this at the end of scope
  }

 protected:
  /// Starts the call the derived class has just bound to context_ and this;
  /// `self` keeps the reactor alive until OnDone.
  void begin(std::shared_ptr<HeldStream> self) {
    self_ = std::move(self);
    this->AddHold();
    this->StartRead(&in_);
    this->StartCall();
  }
  /// False once the call is ending: nothing more may be queued.
  bool open_locked() const { return !closing_ && held_; }
  void write_locked(Message* message) {  // mutex_ held, no write in flight
    writing_ = true;
    this->StartWrite(message);
  }

  /// A write completed (ok) or failed with the call: accounting, and on
  /// failure dropping what is queued. mutex_ held.
  virtual void wrote_locked(bool ok) = 0;
  /// Starts the next write if anything is queued; whether it did. mutex_ held.
  virtual bool write_next_locked() = 0;
  /// One message from the game (a gRPC thread).
  virtual void on_read(Message& in) = 0;
  virtual void on_done(const grpc::Status& status, bool closed_by_us) = 0;

  grpc::ClientContext context_;
  std::mutex mutex_;
  bool writing_ = false;  // guarded by mutex_

 private:
  void finish_writes() {  // mutex_ held, no write in flight
    if (!held_) return;
    closed_by_us_ = true;
    this->StartWritesDone();
    release_hold();
  }
  void release_hold() {  // mutex_ held
    if (!held_) return;
    held_ = false;
    this->RemoveHold();
  }

  Message in_;
  std::shared_ptr<HeldStream> self_;
  bool closing_ = false;       // guarded by mutex_
  bool held_ = true;           // guarded by mutex_
  bool closed_by_us_ = false;  // guarded by mutex_
};

}  // namespace

class Bridge::GameStream final : public HeldStream<proto::Game::Frame> {
 public:
  GameStream(Bridge& bridge, std::uint64_t conn, std::int64_t user_id, FrameTypeValues numbering,
             std::atomic<std::int64_t>& in_flight)
      : bridge_(bridge), conn_(conn), numbering_(numbering), in_flight_(in_flight) {
    context_.AddMetadata("userid", std::to_string(user_id));
  }

  void start(proto::GameService::Stub& stub, std::shared_ptr<GameStream> self) {
    stub.async()->Stream(&context_, this);
    begin(std::move(self));
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
    if (!writing_) write_next_locked();
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
    if (queue_.empty()) return false;
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
    if (!status.ok() && !closed_by_us) {
      spdlog::warn("conn {:#x}: game stream failed: {} ({})", conn_, status.error_message(),
                   static_cast<int>(status.error_code()));
    }
    bridge_.post(
        {Event::kEnded, conn_, static_cast<std::int32_t>(status.error_code()), closed_by_us, {}});
  }

  Bridge& bridge_;
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
class Bridge::BatchLink final : public HeldStream<batch::Batch> {
 public:
  BatchLink(Bridge& bridge, std::uint32_t backend, std::atomic<std::int64_t>& in_flight)
      : bridge_(bridge), backend_(backend), in_flight_(in_flight) {}

  void start(batch::BatchGameService::Stub& stub, std::shared_ptr<BatchLink> self) {
    stub.async()->Batches(&context_, this);
    begin(std::move(self));
  }

  /// Queues one event (main thread) for the next flush(); false when the link
  /// is ending.
  bool send(batch::Event::Kind kind, std::uint64_t conn, std::span<const std::byte> message,
            std::int64_t user_id = 0) {
    std::lock_guard lock(mutex_);
    if (!open_locked()) return false;
    batch::Event* e = out_.add_events();
    e->set_session(conn);
    e->set_kind(kind);
    if (!message.empty()) e->set_message(message.data(), message.size());
    if (user_id != 0) e->set_user_id(user_id);
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  /// Starts a write of what is queued unless one is in flight (main thread,
  /// once per duty-cycle pass: a pass's events share one gRPC message).
  /// Returns the writes completed since the last call.
  std::uint64_t flush() {
    std::lock_guard lock(mutex_);
    if (!writing_ && open_locked()) write_next_locked();
    return std::exchange(batches_written_, 0);
  }

 private:
  void wrote_locked(bool ok) override {
    in_flight_.fetch_sub(sending_.events_size(), std::memory_order_relaxed);
    if (ok) {
      ++batches_written_;
      return;
    }
    // The link broke: this write and what is queued go nowhere.
    lost_ += static_cast<std::uint64_t>(sending_.events_size() + out_.events_size());
    in_flight_.fetch_sub(out_.events_size(), std::memory_order_relaxed);
    out_.Clear();
  }

  bool write_next_locked() override {
    if (out_.events_size() == 0) return false;
    sending_.Swap(&out_);
    out_.Clear();
    write_locked(&sending_);
    return true;
  }

  void on_read(batch::Batch& in) override {
    bridge_.post_batch(in);
    bridge_.direct_batches_.fetch_add(1, std::memory_order_relaxed);
  }

  void on_done(const grpc::Status& status, bool) override {
    std::uint64_t lost;
    {
      std::lock_guard lock(mutex_);
      lost = lost_;
    }
    bridge_.post({Event::kLinkDown,
                  backend_,
                  static_cast<std::int32_t>(status.error_code()),
                  false,
                  {},
                  lost});
  }

  Bridge& bridge_;
  const std::uint32_t backend_;
  std::atomic<std::int64_t>& in_flight_;
  batch::Batch sending_;               // owned by the write in flight
  batch::Batch out_;                   // guarded by mutex_
  std::uint64_t lost_ = 0;             // guarded by mutex_: events queued when the link broke
  std::uint64_t batches_written_ = 0;  // guarded by mutex_: since the last flush()
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
  /// kept waiting.
  static grpc::ChannelArguments channel_arguments() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
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
};

struct Bridge::WorkerLink {
  WorkerLink(GatewaySegment& segment, std::uint32_t w, shm::Doorbell bell)
      : doorbell(std::move(bell)),
        from_worker(segment.ring(RingKind::kWorkerToBridge, w)),
        to_worker(segment.ring(RingKind::kBridgeToWorker, w), &doorbell) {}
  shm::Doorbell doorbell;
  shm::RingConsumer from_worker;
  // Written by the main thread and, for batched links, straight from gRPC's
  // threads (saving the main thread's wakeup on the way back), so under
  // produce_mutex; the backlog keeps the order when the ring is full.
  std::mutex produce_mutex;
  shm::RingProducer to_worker;  // guarded by produce_mutex
  std::deque<Event> backlog;    // guarded by produce_mutex: waiting for room, in order
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
  for (std::uint32_t b = 0; b < settings_.backend_count; ++b) {
    backends_.push_back(std::make_unique<Backend>(settings_.backends[b]));
    spdlog::info("game service {}: {} ({} contract)", b, backends_.back()->address,
                 backends_.back()->batched ? "batched" : "gonet2");
    if (backends_.back()->batched) start_link(b);
  }
  segment_.control().bridge.pid.store(::getpid());
}

Bridge::~Bridge() = default;

bool Bridge::open_stream(std::uint64_t conn, std::int64_t user_id) {
  if (backends_.empty() || streams_.contains(conn) || batched_.contains(conn)) return false;
  const auto backend = static_cast<std::size_t>(user_id) % backends_.size();
  if (Backend& b = *backends_[backend]; b.batched) {
    if (!b.link && b.down_since_ns != 0) {
      // The game service is away: as with a stream that cannot open, the
      // session is kicked (backend_unavailable) rather than left talking to
      // nobody.
      post({Event::kEnded, conn, grpc::StatusCode::UNAVAILABLE, false, {}});
      return true;
    }
    batched_.emplace(conn, BatchedSession{static_cast<std::uint32_t>(backend), user_id});
    // A link that is down sends the OPEN when it is back (start_link).
    if (b.link) b.link->send(batch::Event::OPEN, conn, {}, user_id);
    return true;
  }
  auto stream = std::make_shared<GameStream>(*this, conn, user_id,
                                             frame_type_values(settings_.numbering), in_flight_);
  streams_[conn] = stream;
  stream->start(backends_[backend]->stub, stream);
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
  auto sessions = shm::SessionTable<worker::Session>::attach(segment_.sessions());
  std::size_t reopened = 0;
  for (std::uint32_t slot = 0; slot < sessions.slots(); ++slot) {
    const shm::ConnectionId id = sessions.live_id(slot);
    const worker::Session* s = id ? sessions.find(id) : nullptr;
    if (s == nullptr || s->state != worker::Session::kLoggedIn) continue;
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
  b.link = std::make_shared<BatchLink>(*this, backend, in_flight_);
  b.link_started_ns = monotonic_ns();
  b.link->start(b.batch_stub, b.link);
  metrics_.add(metrics::kGameStreamsOpened);
  // Sessions attached while the link was down (or before a bridge restart)
  // are announced again; the game treats a known session's OPEN as re-attach.
  std::size_t reattached = 0;
  for (const auto& [conn, session] : batched_) {
    if (session.backend != backend) continue;
    b.link->send(batch::Event::OPEN, conn, {}, session.user_id);
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

template <class Batch>
void Bridge::post_batch(Batch& batch) {
  std::uint64_t received = 0;
  bool backlogged = false;
  std::array<bool, kMaxWorkers> touched{};
  for (auto& e : *batch.mutable_events()) {
    Event event;
    if (e.kind() == batch::Event::MESSAGE) {
      event = {Event::kMessage, e.session(), 0, false, std::move(*e.mutable_message())};
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
    if (link.backlog.empty() && write_event(link, event) != shm::WriteStatus::kFull) {
      touched[w] = true;
      continue;
    }
    in_flight_.fetch_add(1, std::memory_order_relaxed);  // held in this process now
    link.backlog.push_back(std::move(event));
    backlogged = true;
  }
  for (std::uint32_t w = 0; w < workers_.size(); ++w) {
    if (!touched[w]) continue;
    std::lock_guard lock(workers_[w]->produce_mutex);
    workers_[w]->to_worker.publish();
  }
  direct_received_.fetch_add(received, std::memory_order_relaxed);
  // A full ring: the main thread retries its backlog.
  if (backlogged && parked_.load(std::memory_order_seq_cst)) doorbell_.ring();
}

/// One event as a record in its worker's ring (produce_mutex held).
shm::WriteStatus Bridge::write_event(WorkerLink& link, const Event& e) {
  shm::WriteStatus status = shm::WriteStatus::kOk;
  switch (e.kind) {
    case Event::kMessage:
      status =
          ipc::write_record(link.to_worker, ipc::kGameMessage, ipc::GameMessage{e.conn},
                            {reinterpret_cast<const std::byte*>(e.bytes.data()), e.bytes.size()});
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
    spdlog::warn("conn {:#x}: game message of {} bytes is too large", e.conn, e.bytes.size());
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

bool Bridge::on_worker_record(const shm::Record& record) {
  switch (record.type) {
    case ipc::kStreamOpen:
      if (const auto r = ipc::parse_record<ipc::StreamOpen>(record.payload)) {
        open_stream(r->header.conn, r->header.user_id);
      }
      break;
    case ipc::kStreamMessage:
      if (const auto r = ipc::parse_record<ipc::StreamMessage>(record.payload)) {
        if (const auto b = batched_.find(r->header.conn); b != batched_.end()) {
          const auto& link = backends_[b->second.backend]->link;
          if (link && link->send(batch::Event::MESSAGE, r->header.conn, r->tail)) {
            metrics_.add(metrics::kGameMessagesSent);
          } else {
            metrics_.add(metrics::kDroppedToGame);
            spdlog::debug("conn {:#x}: batched link down, message dropped", r->header.conn);
          }
          break;
        }
        const auto it = streams_.find(r->header.conn);
        if (it != streams_.end()) {
          metrics_.add(it->second->send(r->tail) ? metrics::kGameMessagesSent
                                                 : metrics::kDroppedToGame);
        } else if (retries_.contains(r->header.conn)) {
          // Waiting for the game service to come back: nowhere to send it.
          metrics_.add(metrics::kDroppedToGame);
          spdlog::debug("conn {:#x}: game service down, message dropped", r->header.conn);
        } else {
          // No stream (it failed and its end is on the way to the worker):
          // say so again, so the session is kicked rather than talking to
          // nobody.
          metrics_.add(metrics::kDroppedToGame);
          post({Event::kEnded, r->header.conn, grpc::StatusCode::UNAVAILABLE, false, {}});
        }
      }
      break;
    case ipc::kStreamClose:
      if (const auto r = ipc::parse_record<ipc::StreamClose>(record.payload)) {
        if (const auto b = batched_.find(r->header.conn); b != batched_.end()) {
          if (const auto& link = backends_[b->second.backend]->link)
            link->send(batch::Event::CLOSE, r->header.conn, {});
          batched_.erase(b);
          break;
        }
        retries_.erase(r->header.conn);
        reopening_.erase(r->header.conn);
        const auto it = streams_.find(r->header.conn);
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
          "game service {}: batched link ended (code {}, {} events lost); {} sessions "
          "wait for it, retry in {} ms",
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
      if (write_event(*link, link->backlog.front()) == shm::WriteStatus::kFull) break;
      in_flight_.fetch_sub(1, std::memory_order_relaxed);
      link->backlog.pop_front();
      ++work;
    }
    link->to_worker.publish();
  }
  return work;
}

void Bridge::flush_links() {
  for (auto& b : backends_) {
    if (!b->link) continue;
    metrics_.add(metrics::kGameBatchesSent, b->link->flush());
  }
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
  if (idle && raised == workers_.size()) doorbell_.wait(timeout);
  for (std::size_t i = 0; i < raised; ++i) workers_[i]->from_worker.unpark();
  parked_.store(false, std::memory_order_relaxed);
}

int Bridge::run() {
  take_over();
  shm::BackoffIdler idler = make_idler(settings_);
  ProcessStatus& status = segment_.control().bridge;
  const auto on_record = [this](const shm::Record& r) { return on_worker_record(r); };
  bool stopping = false;
  std::int64_t stop_deadline = 0;
  for (;;) {
    std::size_t work = 0;
    for (auto& link : workers_) work += link->from_worker.read(on_record, kRingBatch);
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
