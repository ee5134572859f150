#include "gatehouse/bridge/bridge.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "game.grpc.pb.h"
#include "gatehouse/common/log.h"
#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/session_table.h"
#include "gatehouse/worker/session.h"

namespace gatehouse::bridge {
namespace {

constexpr std::size_t kRingBatch = 256;
/// How long re-opened streams wait for a game service that is down.
constexpr std::int64_t kReopenGiveUpNs = 60'000'000'000;

}  // namespace

// ------------------------------------------------------------------ one stream

class Bridge::GameStream final
    : public grpc::ClientBidiReactor<proto::Game::Frame, proto::Game::Frame> {
 public:
  GameStream(Bridge& bridge, std::uint64_t conn, std::int64_t user_id, FrameTypeValues numbering,
             std::atomic<std::int64_t>& in_flight)
      : bridge_(bridge), conn_(conn), numbering_(numbering), in_flight_(in_flight) {
    context_.AddMetadata("userid", std::to_string(user_id));
  }

  /// Starts the call; `self` keeps the reactor alive until OnDone.
  void start(proto::GameService::Stub& stub, std::shared_ptr<GameStream> self) {
    self_ = std::move(self);
    stub.async()->Stream(&context_, this);
    AddHold();  // writes start from the main thread: no OnDone before close()
    StartRead(&in_);
    StartCall();
  }

  /// Queues one Message frame (main thread); false when the stream is
  /// already ending (the worker hears of that end).
  bool send(std::span<const std::byte> bytes) {
    std::lock_guard lock(mutex_);
    if (closing_ || !held_) return false;
    proto::Game::Frame frame;
    frame.set_type(proto::Game::Message);
    frame.set_message(bytes.data(), bytes.size());
    queue_.push_back(std::move(frame));
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    if (!writing_) write_next();
    return true;
  }

  /// Half-closes after the queued writes (main thread).
  void close() {
    std::lock_guard lock(mutex_);
    closing_ = true;
    if (!writing_) finish_writes();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mutex_);
    writing_ = false;
    in_flight_.fetch_sub(1, std::memory_order_relaxed);  // delivered, or failed with the stream
    if (!ok) {  // the stream broke; OnDone follows once the hold is gone
      in_flight_.fetch_sub(static_cast<std::int64_t>(queue_.size()), std::memory_order_relaxed);
      queue_.clear();
      release_hold();
      return;
    }
    if (!queue_.empty()) {
      write_next();
    } else if (closing_) {
      finish_writes();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the game ended the stream (or it failed)
      std::lock_guard lock(mutex_);
      if (!writing_)
        release_hold();
      else
        closing_ = true;  // OnWriteDone releases it
      return;
    }
    const int type = static_cast<int>(in_.type());
    if (type == numbering_.message) {
      bridge_.post({Event::kMessage, conn_, 0, false, std::move(*in_.mutable_message())});
    } else if (type == numbering_.kick) {
      bridge_.post({Event::kKick, conn_, 0, false, {}});
    } else if (type != numbering_.ping) {
      spdlog::debug("conn {:#x}: ignoring game frame type {}", conn_, type);
    }
    in_.Clear();
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    bool by_us;
    {
      std::lock_guard lock(mutex_);
      by_us = closed_by_us_;
    }
    if (!status.ok() && !by_us) {
      spdlog::warn("conn {:#x}: game stream failed: {} ({})", conn_, status.error_message(),
                   static_cast<int>(status.error_code()));
    }
    bridge_.post({Event::kEnded, conn_, static_cast<std::int32_t>(status.error_code()), by_us, {}});
    auto self = std::move(self_);  // may destroy this at the end of scope
  }

 private:
  void write_next() {  // mutex_ held
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }
  void finish_writes() {  // mutex_ held, no write in flight
    if (!held_) return;
    closed_by_us_ = true;
    StartWritesDone();
    release_hold();
  }
  void release_hold() {  // mutex_ held
    if (!held_) return;
    held_ = false;
    RemoveHold();
  }

  Bridge& bridge_;
  const std::uint64_t conn_;
  const FrameTypeValues numbering_;
  std::atomic<std::int64_t>& in_flight_;
  grpc::ClientContext context_;
  proto::Game::Frame in_;
  proto::Game::Frame current_;
  std::shared_ptr<GameStream> self_;
  std::mutex mutex_;
  std::deque<proto::Game::Frame> queue_;  // guarded by mutex_
  bool writing_ = false;                  // guarded by mutex_
  bool closing_ = false;                  // guarded by mutex_
  bool held_ = true;                      // guarded by mutex_
  bool closed_by_us_ = false;             // guarded by mutex_
};

// ------------------------------------------------------------------ bridge

struct Bridge::Backend {
  explicit Backend(const std::string& address)
      : channel(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                          channel_arguments())),
        stub(channel) {}
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
  std::shared_ptr<grpc::Channel> channel;
  proto::GameService::Stub stub;
};

struct Bridge::WorkerLink {
  WorkerLink(GatewaySegment& segment, std::uint32_t w, shm::Doorbell bell)
      : doorbell(std::move(bell)),
        from_worker(segment.ring(RingKind::kWorkerToBridge, w)),
        to_worker(segment.ring(RingKind::kBridgeToWorker, w), &doorbell) {}
  shm::Doorbell doorbell;
  shm::RingConsumer from_worker;
  shm::RingProducer to_worker;
  std::deque<Event> backlog;  // events waiting for room in to_worker, in order
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
    spdlog::info("game service {}: {}", b, settings_.backends[b]);
  }
  segment_.control().bridge.pid.store(::getpid());
}

Bridge::~Bridge() = default;

bool Bridge::open_stream(std::uint64_t conn, std::int64_t user_id) {
  if (backends_.empty() || streams_.contains(conn)) return false;
  const auto backend = static_cast<std::size_t>(user_id) % backends_.size();
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
      reopening_[id.value()] = s->user_id;
      ++reopened;
    }
  }
  if (reopened != 0) {
    metrics_.add(metrics::kGameStreamsReopened, reopened);
    spdlog::warn("reopened the game streams of {} logged-in sessions", reopened);
  }
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
    if (e.kind == Event::kMessage && reopening_.erase(e.conn) != 0) {
      retries_.erase(e.conn);  // the re-opened stream works
    }
    if (e.kind == Event::kEnded && !e.closed_by_us &&
        e.grpc_code == grpc::StatusCode::UNAVAILABLE && reopening_.contains(e.conn)) {
      // A re-opened stream and the game service is down: try again later
      // rather than kick a session that did nothing wrong.
      auto [it, fresh] =
          retries_.try_emplace(e.conn, Retry{reopening_[e.conn], 0, now + kReopenGiveUpNs, 50});
      Retry& r = it->second;
      if (now < r.give_up_ns) {
        r.backoff_ms = std::min<std::uint32_t>(r.backoff_ms * 2, 5000);
        r.due_ns = now + std::int64_t{r.backoff_ms} * 1'000'000;
        streams_.erase(e.conn);
        in_flight_.fetch_sub(1, std::memory_order_relaxed);
        continue;
      }
      spdlog::warn("conn {:#x}: game service still down after {} s; giving up", e.conn,
                   kReopenGiveUpNs / 1'000'000'000);
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
    const auto worker = static_cast<std::uint32_t>(e.conn & 0xFFFF'FFFF) % settings_.workers;
    workers_[worker]->backlog.push_back(std::move(e));
  }
  taken_.clear();
  for (auto& link : workers_) {
    while (!link->backlog.empty()) {
      const Event& e = link->backlog.front();
      shm::WriteStatus status = shm::WriteStatus::kOk;
      switch (e.kind) {
        case Event::kMessage:
          status = ipc::write_record(
              link->to_worker, ipc::kGameMessage, ipc::GameMessage{e.conn},
              {reinterpret_cast<const std::byte*>(e.bytes.data()), e.bytes.size()});
          break;
        case Event::kKick:
          status = ipc::write_record(link->to_worker, ipc::kGameKick, ipc::GameKick{e.conn});
          break;
        case Event::kEnded:
          status = ipc::write_record(link->to_worker, ipc::kStreamEnded,
                                     ipc::StreamEnded{e.conn, e.grpc_code, 0});
          break;
      }
      if (status == shm::WriteStatus::kFull) break;
      in_flight_.fetch_sub(1, std::memory_order_relaxed);
      if (status == shm::WriteStatus::kTooLarge) {
        // Larger than any client frame; the worker would have to kick for it.
        ipc::write_record(
            link->to_worker, ipc::kStreamEnded,
            ipc::StreamEnded{e.conn, static_cast<std::int32_t>(grpc::RESOURCE_EXHAUSTED), 0});
        spdlog::warn("conn {:#x}: game message of {} bytes is too large", e.conn, e.bytes.size());
      }
      link->backlog.pop_front();
      ++work;
    }
    link->to_worker.publish();
  }
  return work;
}

void Bridge::close_all_streams() {
  for (auto& [conn, stream] : streams_) stream->close();
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
    work += deliver_events();
    if (!retries_.empty()) retry_due_streams();
    const std::int64_t now = monotonic_ns();
    status.heartbeat_ns.store(now, std::memory_order_relaxed);
    metrics_.set(metrics::kGameStreamsOpen, static_cast<std::int64_t>(streams_.size()));
    if (stop_requested_ != 0 && !stopping) {
      stopping = true;
      stop_deadline = now + std::int64_t{settings_.drain_timeout_ms} * 1'000'000;
      spdlog::info("stopping: half-closing {} game streams", streams_.size());
      close_all_streams();
    }
    if (stopping && (streams_.empty() || now > stop_deadline)) break;
    idler.idle(work, [this](std::chrono::nanoseconds timeout) { park(timeout); });
  }
  if (!streams_.empty()) spdlog::warn("{} game streams did not end in time", streams_.size());
  return 0;
}

}  // namespace gatehouse::bridge
