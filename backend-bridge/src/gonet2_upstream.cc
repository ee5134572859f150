#include "gatehouse/bridge/gonet2_upstream.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "gatehouse/base/log.h"

namespace gatehouse::bridge {

/// Counts this contract's replies while they wait for ring room: the
/// in-flight metric (a dead bridge's successor reports them lost).
class Gonet2Upstream::InFlight final : public ReplySource,
                                       public std::enable_shared_from_this<InFlight> {
 public:
  explicit InFlight(std::atomic<std::int64_t>& in_flight) : in_flight_(in_flight) {}
  void held() override { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void released() override { in_flight_.fetch_sub(1, std::memory_order_relaxed); }
  std::shared_ptr<ReplySource> keep() override { return shared_from_this(); }

 private:
  std::atomic<std::int64_t>& in_flight_;
};

/// One session's Stream. Client frames are queued by send() (main thread)
/// and written one at a time; the game's frames go from the gRPC thread
/// straight to UpstreamEvents, and its end to the upstream's next flush().
class Gonet2Upstream::GameStream final : public QueuedCall<proto::Game::Frame> {
 public:
  GameStream(Gonet2Upstream& upstream, std::uint64_t conn, const User& user)
      : QueuedCall(upstream.calls_),
        upstream_(upstream),
        conn_(conn),
        numbering_(frame_type_values(upstream.options_.numbering)) {
    context_.AddMetadata("userid", std::to_string(user.user_id));
    context_.AddMetadata("gateway-id", upstream.options_.gateway_id);
    context_.AddMetadata("login-seq", std::to_string(user.login_seq));
  }

  void start(std::shared_ptr<GameStream> self) {
    begin(std::move(self), upstream_.stub_->PrepareAsyncStream(&context_, &calls_.queue()));
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
    upstream_.in_flight_.fetch_add(1, std::memory_order_relaxed);
    write_next_locked();
    return true;
  }

 private:
  void wrote_locked(bool ok) override {
    // Delivered, or failed with the stream.
    upstream_.in_flight_.fetch_sub(1, std::memory_order_relaxed);
    if (!ok) {
      ++undelivered_;
      drop_queued_locked();
    }
  }

  void drop_queued_locked() {
    upstream_.in_flight_.fetch_sub(static_cast<std::int64_t>(queue_.size()),
                                   std::memory_order_relaxed);
    undelivered_ += queue_.size();
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
    UpstreamEvents& events = upstream_.events_;
    UpstreamEvents::Unpublished unpublished;
    // In this process's hands until published in its worker ring (or, if it
    // has to wait for room, until written from there: InFlight).
    upstream_.in_flight_.fetch_add(1, std::memory_order_relaxed);
    if (type == numbering_.message) {
      worked_ = true;
      upstream_.metrics_.received();
      events.message(unpublished, conn_, 0, *in.mutable_message(), *upstream_.in_flight_source_);
    } else if (type == numbering_.kick) {
      events.kick(unpublished, conn_, *upstream_.in_flight_source_);
    } else if (type != numbering_.ping) {
      spdlog::debug("conn {:#x}: ignoring game frame type {}", conn_, type);
    }
    events.publish(unpublished);
    upstream_.in_flight_.fetch_sub(1, std::memory_order_relaxed);
  }

  bool backed_up_locked(const std::weak_ptr<PausedReads>& call) override {
    return upstream_.events_.hold_reads(conn_, call);  // only its session's worker
  }

  void on_done(const grpc::Status& status, bool closed_by_us) override {
    std::uint64_t undelivered = 0;
    {
      // The game ended the call with these still queued: they go with it.
      std::lock_guard lock(mutex_);
      drop_queued_locked();
      undelivered = undelivered_;
    }
    if (!status.ok() && !closed_by_us) {
      spdlog::warn("conn {:#x}: game stream failed: {} ({}); {} client messages undelivered", conn_,
                   status.error_message(), static_cast<int>(status.error_code()), undelivered);
    }
    // After every on_read (this runs once no operation is in flight): the
    // end reaches the worker behind the stream's last message.
    upstream_.on_ended({conn_, static_cast<std::int32_t>(status.error_code()), closed_by_us,
                        worked_, undelivered});
  }

  Gonet2Upstream& upstream_;
  const std::uint64_t conn_;
  const FrameTypeValues numbering_;
  bool worked_ = false;                   // the gRPC thread's: a message came
  proto::Game::Frame current_;            // owned by the write in flight
  std::deque<proto::Game::Frame> queue_;  // guarded by mutex_
  std::uint64_t undelivered_ = 0;         // guarded by mutex_
};

Gonet2Upstream::Gonet2Upstream(Options options, CallQueue& calls, UpstreamEvents& events,
                               Wakeup& wakeup, InstanceMetrics& metrics,
                               std::atomic<std::int64_t>& in_flight)
    : options_(std::move(options)),
      calls_(calls),
      events_(events),
      wakeup_(wakeup),
      metrics_(metrics),
      in_flight_(in_flight),
      in_flight_source_(std::make_shared<InFlight>(in_flight)),
      channel_(game_channel(options_.address, ChannelUse::kCallPerSession)),
      stub_(proto::GameService::NewStub(channel_)) {}

Gonet2Upstream::~Gonet2Upstream() {
  cancel_all();
  calls_.queue().wait_for_calls(calls_);
}

void Gonet2Upstream::move_to(const std::string& address) {
  // Streams up keep the old channel (their context holds it) while they work.
  options_.address = address;
  channel_ = game_channel(address, ChannelUse::kCallPerSession);
  stub_ = proto::GameService::NewStub(channel_);
}

bool Gonet2Upstream::open(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                          const Origin* origin) {
  if (origin != nullptr && origin->replay) return false;  // opened by the dead bridge
  if (streams_.contains(conn)) return false;
  if (stopping_) {
    // The bridge is draining: a stream opened now would never be closed.
    end_session(conn);
    return false;
  }
  const User user{user_id, login_seq};
  start_stream(conn, user);
  if (origin == nullptr) reopening_[conn] = user;  // a take-over: retried while down
  return true;
}

void Gonet2Upstream::start_stream(std::uint64_t conn, const User& user) {
  auto stream = std::make_shared<GameStream>(*this, conn, user);
  streams_[conn] = stream;
  stream->start(stream);
  metrics_.add(metrics::kGameStreamsOpened);
}

void Gonet2Upstream::send(std::uint64_t conn, std::uint64_t, std::span<const std::byte> message,
                          const Origin& origin) {
  if (origin.replay) return;  // its stream got it, or died with the dead bridge
  const auto it = streams_.find(conn);
  if (it != streams_.end()) {
    metrics_.add(it->second->send(message) ? metrics::kGameMessagesSent : metrics::kDroppedToGame);
  } else if (retries_.contains(conn)) {
    // Waiting for the game service to come back: nowhere to send it.
    metrics_.add(metrics::kDroppedToGame);
    spdlog::debug("conn {:#x}: game service down, message dropped", conn);
  } else {
    // No stream (it failed and its end is on the way to the worker): say so
    // again, so the session is kicked rather than talking to nobody.
    metrics_.add(metrics::kDroppedToGame);
    metrics_.add(metrics::kGameStreamsFailed);
    end_session(conn);
  }
}

void Gonet2Upstream::end_session(std::uint64_t conn) {
  UpstreamEvents::Unpublished unpublished;
  events_.ended(unpublished, conn, grpc::StatusCode::UNAVAILABLE);
  events_.publish(unpublished);
}

void Gonet2Upstream::close(std::uint64_t conn, const Origin& origin) {
  if (origin.replay) return;
  retries_.erase(conn);
  reopening_.erase(conn);
  const auto it = streams_.find(conn);
  if (it != streams_.end()) it->second->close();
}

void Gonet2Upstream::on_ended(const Ended& ended) {
  {
    std::lock_guard lock(ended_mutex_);
    ended_.push_back(ended);
  }
  wakeup_.notify();
}

std::size_t Gonet2Upstream::flush(std::int64_t now_ns) {
  const std::size_t work = take_ended(now_ns);
  if (!retries_.empty()) retry_due_streams(now_ns);
  return work;
}

std::size_t Gonet2Upstream::take_ended(std::int64_t now_ns) {
  {
    std::lock_guard lock(ended_mutex_);
    taken_.swap(ended_);
  }
  UpstreamEvents::Unpublished unpublished;
  for (const Ended& e : taken_) {
    metrics_.add(metrics::kDroppedToGame, e.undelivered);
    if (e.worked && reopening_.erase(e.conn) != 0) retries_.erase(e.conn);  // it worked
    if (!stopping_ && !e.closed_by_us && e.grpc_code == grpc::StatusCode::UNAVAILABLE &&
        reopening_.contains(e.conn)) {
      // A re-opened stream and the game service is down: try again later
      // rather than kick a session that did nothing wrong.
      auto [it, fresh] = retries_.try_emplace(
          e.conn, Retry{reopening_[e.conn], 0, now_ns + options_.backend_wait_ns, 50});
      Retry& r = it->second;
      if (now_ns < r.give_up_ns) {
        r.backoff_ms = std::min<std::uint32_t>(r.backoff_ms * 2, 5000);
        r.due_ns = now_ns + std::int64_t{r.backoff_ms} * 1'000'000;
        streams_.erase(e.conn);
        continue;
      }
      spdlog::warn("conn {:#x}: game service still down after {} s; giving up", e.conn,
                   static_cast<double>(options_.backend_wait_ns) / 1e9);
      retries_.erase(e.conn);
      reopening_.erase(e.conn);
    }
    if (e.grpc_code != 0 && !e.closed_by_us) metrics_.add(metrics::kGameStreamsFailed);
    streams_.erase(e.conn);
    // A retry's attempt that the drain closed: its session is still there.
    const bool retrying = retries_.erase(e.conn) != 0;
    reopening_.erase(e.conn);
    if (e.closed_by_us && !retrying) continue;  // the session is gone already
    events_.ended(unpublished, e.conn,
                  e.closed_by_us ? std::int32_t{grpc::StatusCode::UNAVAILABLE} : e.grpc_code);
  }
  events_.publish(unpublished);
  const std::size_t n = taken_.size();
  taken_.clear();
  return n;
}

void Gonet2Upstream::retry_due_streams(std::int64_t now_ns) {
  for (auto& [conn, retry] : retries_) {
    if (retry.due_ns == 0 || now_ns < retry.due_ns) continue;
    retry.due_ns = 0;  // until this attempt ends
    start_stream(conn, retry.user);
  }
}

void Gonet2Upstream::close_all() {
  stopping_ = true;
  for (auto& [conn, stream] : streams_) stream->close();
  // Sessions retrying their game service are not re-opened during the drain:
  // their workers hear it is unavailable, at once when they wait for their
  // next attempt, when it ends when one is in flight (closed above).
  for (auto it = retries_.begin(); it != retries_.end();) {
    if (streams_.contains(it->first)) {
      it->second.due_ns = 0;
      ++it;
      continue;
    }
    metrics_.add(metrics::kGameStreamsFailed);
    end_session(it->first);
    reopening_.erase(it->first);
    it = retries_.erase(it);
  }
}

bool Gonet2Upstream::reachable() {
  return channel_->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY;
}

void Gonet2Upstream::cancel(std::uint64_t conn) {
  const auto it = streams_.find(conn);
  if (it != streams_.end()) it->second->cancel();
}

void Gonet2Upstream::cancel_all() {
  for (auto& [conn, stream] : streams_) stream->cancel();
}

}  // namespace gatehouse::bridge
