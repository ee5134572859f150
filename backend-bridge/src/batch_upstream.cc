#include "gatehouse/bridge/batch_upstream.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/codec/game_link_limits.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/shm/session_table.h"

namespace gatehouse::bridge {

/// The link's call. The main thread queues events with send(); they go out
/// as one Batch per gRPC write, and whatever arrives while a write is in
/// flight rides in the next one, so the batch size follows the load (one
/// event per write when idle, hundreds under load).
///
/// Acknowledgements, both ways: the game's Batch.ack says how many of our
/// events it has read (acknowledged(), the gRPC thread; the worker rings
/// then release their records), and ours says how many of its events are in
/// the worker rings (took() / held() / released(); sent on the next write,
/// or alone once it lags).
class BatchUpstream::BatchLink final : public QueuedCall<batch::Batch>,
                                       public ReplySource,
                                       public Acknowledger,
                                       public std::enable_shared_from_this<BatchLink> {
 public:
  explicit BatchLink(BatchUpstream& upstream)
      : QueuedCall(upstream.calls_), upstream_(upstream), address_(upstream.options_.address) {
    context_.AddMetadata("gateway-id", upstream.options_.gateway_id);
  }

  void start(std::shared_ptr<BatchLink> self) {
    begin(std::move(self), upstream_.stub_->PrepareAsyncBatches(&context_, &calls_.queue()));
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

  /// The link ended: what it had not acknowledged is not coming back.
  bool down() const { return down_.load(std::memory_order_acquire); }
  /// Once down(): how it ended, and the events the game had not acknowledged.
  std::int32_t code() const { return code_; }
  std::uint64_t lost() const { return lost_; }
  /// Events sent that the game has not acknowledged yet.
  std::uint64_t unacknowledged() {
    std::lock_guard lock(mutex_);
    return sent_ - std::min(sent_, acked_.load(std::memory_order_acquire));
  }

  /// The gRPC thread handled `events` game events; those held (waiting for
  /// ring room) are acknowledged once written.
  void took(std::uint64_t events) {
    std::lock_guard lock(ack_mutex_);
    read_ += events;
    if (held_ == 0) ack_ready_.store(read_, std::memory_order_release);
  }

  // ReplySource
  void held() override {
    std::lock_guard lock(ack_mutex_);
    ++held_;
  }
  void released() override {  // main thread
    std::lock_guard lock(ack_mutex_);
    if (--held_ == 0) ack_ready_.store(read_, std::memory_order_release);
  }
  std::shared_ptr<ReplySource> keep() override { return shared_from_this(); }

  // Acknowledger
  bool releases(std::uint64_t index) const override {
    return down() || acked_.load(std::memory_order_acquire) > index;
  }
  bool abandon() override {  // main thread
    if (abandoned_) return false;
    abandoned_ = true;
    cancel();
    return true;
  }
  std::string address() const override { return address_; }
  std::int64_t reading_since_ns() const override { return reads_resumed_ns(); }

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
    sending_.Swap(&out_);
    out_.Clear();
    sending_.set_ack(ack_sent_);
    // Cut by bytes: what does not fit one gRPC message goes in the next
    // write. Our events carry a client's payload (at most 64 KiB), so each
    // write carries at least one.
    game_link::cut_to_fit(sending_, out_);
    last_write_ns_ = monotonic_ns();
    write_locked(&sending_);
    return true;
  }

  void on_read(batch::Batch& in) override {
    if (in.ack() > acked_.load(std::memory_order_relaxed)) {
      acked_.store(in.ack(), std::memory_order_release);
    }
    upstream_.deliver(*this, in);
    upstream_.batches_received_.fetch_add(1, std::memory_order_relaxed);
  }

  // One link feeds every worker, and its events cannot be read selectively:
  // one backed-up worker pauses it all.
  bool backed_up_locked(const std::weak_ptr<PausedReads>& call) override {
    return upstream_.events_.hold_reads(UpstreamEvents::kEveryWorker, call);
  }

  void on_done(const grpc::Status& status, bool) override {
    lost_ = unacknowledged();
    code_ = static_cast<std::int32_t>(status.error_code());
    down_.store(true, std::memory_order_release);
    upstream_.wakeup_.notify();
  }

  BatchUpstream& upstream_;
  const std::string address_;          // for messages: kept by the worker rings past the upstream
  batch::Batch sending_;               // owned by the write in flight
  batch::Batch out_;                   // guarded by mutex_
  std::uint64_t sent_ = 0;             // guarded by mutex_: events queued since the start
  std::uint64_t batches_written_ = 0;  // guarded by mutex_: since the last flush()
  std::uint64_t ack_sent_ = 0;         // guarded by mutex_
  std::int64_t last_write_ns_ = 0;     // guarded by mutex_
  bool ack_due_ = false;               // guarded by mutex_
  std::atomic<std::uint64_t> acked_{0};
  std::atomic<bool> down_{false};
  std::int32_t code_ = 0;   // published by down_
  std::uint64_t lost_ = 0;  // published by down_
  bool abandoned_ = false;  // main thread
  std::mutex ack_mutex_;
  std::uint64_t read_ = 0;  // guarded by ack_mutex_: game events handled
  std::uint64_t held_ = 0;  // guarded by ack_mutex_: of those, waiting for ring room
  std::atomic<std::uint64_t> ack_ready_{0};
};

BatchUpstream::BatchUpstream(Options options, CallQueue& calls, UpstreamEvents& events,
                             Wakeup& wakeup, InstanceMetrics& metrics)
    : options_(std::move(options)),
      calls_(calls),
      events_(events),
      wakeup_(wakeup),
      metrics_(metrics),
      channel_(game_channel(options_.address)),
      stub_(batch::BatchGameService::NewStub(channel_)) {
  start_link();
}

BatchUpstream::~BatchUpstream() {
  cancel_all();
  calls_.queue().wait_for_calls(calls_);
}

void BatchUpstream::move_to(const std::string& address) {
  options_.address = address;
  channel_ = game_channel(address);
  stub_ = batch::BatchGameService::NewStub(channel_);
  if (link_ && !stopping_) {
    // Made again on the new address once this one has ended (link_ended),
    // its sessions re-announced there.
    spdlog::info("game service moved to {}: re-linking {} sessions", address, sessions_.size());
    moving_ = true;
    link_->cancel();
  }
}

void BatchUpstream::deliver(BatchLink& from, batch::Batch& in) {
  UpstreamEvents::Unpublished unpublished;
  {
    std::lock_guard lock(served_mu_);
    for (auto& e : *in.mutable_events()) {
      if (e.kind() != batch::Event::MESSAGE && e.kind() != batch::Event::KICK) {
        continue;  // OPEN/CLOSE from a game mean nothing
      }
      const auto it = served_.find(shm::ConnectionId(e.session()).slot());
      if (it == served_.end() || it->second.conn != e.session()) {
        // Not a session of this link: another backend's (or none at all).
        // This game may not message or kick it.
        foreign_.fetch_add(1, std::memory_order_relaxed);
        foreign_log_.log("game service {}: {} for session {:#x}, which it does not serve; dropped",
                         options_.address, e.kind() == batch::Event::KICK ? "kick" : "message",
                         e.session());
        continue;
      }
      if (!it->second.open) {  // closed here since: late, as for a stream
        late_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (e.kind() == batch::Event::MESSAGE) {
        metrics_.received();
        events_.message(unpublished, e.session(), e.seq(), *e.mutable_message(), from);
      } else {
        events_.kick(unpublished, e.session(), from);
      }
    }
  }
  events_.publish(unpublished);
  from.took(static_cast<std::uint64_t>(in.events_size()));  // in shared memory now
}

void BatchUpstream::serve(std::uint64_t conn, bool open) {
  std::lock_guard lock(served_mu_);
  const std::uint32_t slot = shm::ConnectionId(conn).slot();
  if (open) {
    served_[slot] = Served{conn, true};
  } else if (const auto it = served_.find(slot); it != served_.end() && it->second.conn == conn) {
    it->second.open = false;
  }
}

bool BatchUpstream::send_event(const Origin* origin, batch::Event::Kind kind, std::uint64_t conn,
                               std::span<const std::byte> message, std::int64_t user_id,
                               std::uint64_t seq) {
  if (!link_) return false;
  const auto index = link_->send(kind, conn, message, user_id, seq);
  if (!index) return false;
  if (origin != nullptr && origin->keeper != nullptr) {
    origin->keeper->keep(origin->position, link_acks_, *index);
  }
  return true;
}

void BatchUpstream::unavailable(std::uint64_t conn) {
  metrics_.add(metrics::kGameStreamsFailed);
  UpstreamEvents::Unpublished unpublished;
  events_.ended(unpublished, conn, grpc::StatusCode::UNAVAILABLE);
  events_.publish(unpublished);
}

bool BatchUpstream::open(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                         const Origin* origin) {
  if (sessions_.contains(conn)) return false;
  if (!link_ && down_since_ns_ != 0) {
    // The game service is away: as with a stream that cannot open, the
    // session is kicked (backend_unavailable) rather than left talking to
    // nobody.
    unavailable(conn);
    return true;
  }
  sessions_.emplace(conn, Attached{user_id, login_seq});
  serve(conn, true);
  // A link that is down sends the OPEN when it is back (start_link).
  send_event(origin, batch::Event::OPEN, conn, {}, user_id, login_seq);
  return true;
}

void BatchUpstream::send(std::uint64_t conn, std::uint64_t seq, std::span<const std::byte> message,
                         const Origin& origin) {
  // A session given up on (its game service stayed away) has no place to
  // send to; a replayed one may have closed since.
  if ((origin.replay || sessions_.contains(conn)) &&
      send_event(&origin, batch::Event::MESSAGE, conn, message, 0, seq)) {
    metrics_.add(metrics::kGameMessagesSent);
    if (origin.replay) metrics_.add(metrics::kGameEventsResent);
  } else {
    metrics_.add(metrics::kDroppedToGame);
    spdlog::debug("conn {:#x}: batched link down, message dropped", conn);
  }
}

void BatchUpstream::close(std::uint64_t conn, const Origin& origin) {
  const bool erased = sessions_.erase(conn) != 0;
  if (erased) serve(conn, false);
  if (erased || origin.replay) send_event(&origin, batch::Event::CLOSE, conn, {});
}

std::size_t BatchUpstream::flush(std::int64_t now_ns) {
  std::size_t work = 0;
  if (link_) metrics_.add(metrics::kGameBatchesSent, link_->flush(now_ns));
  metrics_.add(metrics::kGameBatchesReceived,
               batches_received_.exchange(0, std::memory_order_relaxed));
  metrics_.add(metrics::kGameEventsForeign, foreign_.exchange(0, std::memory_order_relaxed));
  metrics_.add(metrics::kDroppedToClient, late_.exchange(0, std::memory_order_relaxed));
  if (link_ && link_->down()) {
    link_ended(now_ns);
    ++work;
  }
  relink_if_due(now_ns);
  return work;
}

std::uint64_t BatchUpstream::unacknowledged() const {
  return link_ ? link_->unacknowledged() : 0;
}

bool BatchUpstream::reachable() {
  return link_ && !link_->down() && down_since_ns_ == 0 &&
         channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

void BatchUpstream::start_link() {
  link_ = std::make_shared<BatchLink>(*this);
  link_acks_ = link_;
  link_started_ns_ = monotonic_ns();
  link_->start(link_);
  metrics_.add(metrics::kGameStreamsOpened);
  // Sessions attached while the link was down (or before a bridge restart)
  // are announced again; the game treats a known session's OPEN as re-attach.
  for (const auto& [conn, attached] : sessions_) {
    send_event(nullptr, batch::Event::OPEN, conn, {}, attached.user_id, attached.login_seq);
  }
  if (!sessions_.empty()) {
    spdlog::info("game service {}: batched link up, {} sessions re-attached", options_.address,
                 sessions_.size());
  }
}

void BatchUpstream::link_ended(std::int64_t now_ns) {
  const std::int32_t code = link_->code();
  const std::uint64_t lost = link_->lost();
  link_.reset();
  link_acks_.reset();
  if (lost != 0) metrics_.add(metrics::kDroppedToGame, lost);
  if (stopping_) return;
  if (std::exchange(moving_, false)) {
    start_link();  // to the new address
    return;
  }
  if (code != 0) metrics_.add(metrics::kGameStreamsFailed);
  if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    // Most likely a Batch over the size limit: the game sends it again on
    // the next link, which fails the same way until the game cuts it.
    spdlog::error(
        "game service {}: batched link failed on a message over {} bytes; the game must cut its "
        "batches by bytes (proto/batch.proto)",
        options_.address, game_link::kMaxMessageBytes);
  }
  if (options_.sessions_move) {
    spdlog::warn(
        "game service {}: batched link ended (code {}; {} events it had not acknowledged are "
        "dropped); its {} sessions move to other instances, retry in {} ms",
        options_.address, code, lost, sessions_.size(), relink_backoff_ms_);
    drop_sessions();
  } else {
    spdlog::warn(
        "game service {}: batched link ended (code {}; {} events it had not acknowledged are "
        "dropped); {} sessions wait for it, retry in {} ms",
        options_.address, code, lost, sessions_.size(), relink_backoff_ms_);
  }
  relink_due_ns_ = now_ns + std::int64_t{relink_backoff_ms_} * 1'000'000;
  relink_backoff_ms_ = std::min<std::uint32_t>(relink_backoff_ms_ * 2, 2000);
  if (down_since_ns_ == 0) down_since_ns_ = now_ns;
}

void BatchUpstream::relink_if_due(std::int64_t now_ns) {
  if (down_since_ns_ == 0) return;
  if (link_ && now_ns - link_started_ns_ > 1'000'000'000) {
    down_since_ns_ = 0;  // the new link has held for a second: the game service is back
    relink_backoff_ms_ = 50;
    return;
  }
  // Between attempts only: an attempt in progress may still get through.
  if (!link_ && now_ns - down_since_ns_ > options_.backend_wait_ns) give_up_sessions();
  if (!link_ && !stopping_ && relink_due_ns_ != 0 && now_ns >= relink_due_ns_) {
    relink_due_ns_ = 0;
    start_link();
  }
}

/// Kicks (backend_unavailable) every session waiting for the game service,
/// which has been away longer than --backend-wait.
void BatchUpstream::give_up_sessions() {
  if (sessions_.empty()) return;
  const std::size_t kicked = sessions_.size();
  drop_sessions();
  spdlog::warn("game service {}: away for more than {} s; kicking the {} sessions waiting for it",
               options_.address, static_cast<double>(options_.backend_wait_ns) / 1e9, kicked);
}

void BatchUpstream::drop_sessions() {
  // Taken out first: whoever hears of one may open it elsewhere, or here.
  const auto dropped = std::exchange(sessions_, {});
  for (const auto& [conn, attached] : dropped) {
    serve(conn, false);
    unavailable(conn);
  }
}

void BatchUpstream::close_all() {
  stopping_ = true;
  if (link_) link_->close();
}

void BatchUpstream::cancel_all() {
  if (link_) link_->cancel();
}

}  // namespace gatehouse::bridge
