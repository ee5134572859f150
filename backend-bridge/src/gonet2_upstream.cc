#include "gatehouse/bridge/gonet2_upstream.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <utility>

#include "game.grpc.pb.h"
#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/codec/game_link_limits.h"

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

/// One session's Stream: an HTTP/2 stream on the instance's connection.
/// Client frames are written by send() and leave at the next flush(); the
/// game's frames go to UpstreamEvents as they are read, and its end to
/// ended_, which the same flush() hands to the worker behind them.
class Gonet2Upstream::GameStream final : public GrpcCall,
                                         public PausedReads,
                                         public std::enable_shared_from_this<GameStream> {
 public:
  GameStream(Gonet2Upstream& upstream, std::uint64_t conn)
      : upstream_(upstream),
        conn_(conn),
        numbering_(frame_type_values(upstream.options_.numbering)) {}

  /// Half-closed by us (the session is gone, or the drain).
  bool closed_by_us = false;

 private:
  void on_message(std::span<const std::byte> bytes) override {
    proto::Game::Frame& in = upstream_.frame_;
    if (!in.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      upstream_.channel_.abort(*this, grpc::StatusCode::INTERNAL,
                               "the game service sent a frame that is not a Game.Frame");
      return;
    }
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
    // Its worker's backlog is full: the stream's window is not given back
    // until it drains (the game service then holds its writes).
    if (events.hold_reads(conn_, weak_from_this())) pause_reads();
  }

  void resume() override { upstream_.channel_.resume(*this); }

  void on_end(std::int32_t code, std::string_view message, std::uint64_t unsent) override {
    if (code != 0 && !closed_by_us) {
      spdlog::warn("conn {:#x}: game stream failed: {} ({}); {} client messages undelivered", conn_,
                   message, code, unsent);
    }
    // After every on_message: the end reaches the worker behind the
    // stream's last message.
    upstream_.ended_.push_back({conn_, code, closed_by_us, worked_, unsent});
  }

  Gonet2Upstream& upstream_;
  const std::uint64_t conn_;
  const FrameTypeValues numbering_;
  bool worked_ = false;  // a message came
};

namespace {

/// The gonet2 contract's one method (proto/game.proto).
const std::string& stream_path() {
  static const std::string path =
      std::string("/") + proto::GameService::service_full_name() + "/Stream";
  return path;
}

GrpcChannelOptions channel_options(std::atomic<std::int64_t>& in_flight) {
  GrpcChannelOptions options;
  // The same bound as gw::game_server's: a game keeps its messages (frames)
  // within it (game_link_limits.h).
  options.max_message_bytes = static_cast<std::uint32_t>(game_link::kMaxMessageBytes);
  options.in_flight = &in_flight;
  return options;
}

}  // namespace

Gonet2Upstream::Gonet2Upstream(Options options, IoPoller& io, UpstreamEvents& events,
                               InstanceMetrics& metrics, std::atomic<std::int64_t>& in_flight)
    : options_(std::move(options)),
      events_(events),
      metrics_(metrics),
      in_flight_(in_flight),
      in_flight_source_(std::make_shared<InFlight>(in_flight)),
      channel_(options_.address, channel_options(in_flight), io) {}

Gonet2Upstream::~Gonet2Upstream() = default;

void Gonet2Upstream::move_to(const std::string& address) {
  channel_.move_to(address);  // streams up keep the old connection while they work
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
  auto stream = std::make_shared<GameStream>(*this, conn);
  streams_[conn] = stream;
  // What gonet2 sent (userid: existing game services work unchanged), and
  // what tells a game service behind several gateways who is who.
  const std::string user_id = std::to_string(user.user_id);
  const std::string login_seq = std::to_string(user.login_seq);
  const std::pair<std::string_view, std::string_view> metadata[] = {
      {"userid", user_id}, {"gateway-id", options_.gateway_id}, {"login-seq", login_seq}};
  metrics_.add(metrics::kGameStreamsOpened);
  channel_.start(*stream, stream_path(), metadata, monotonic_ns());
}

void Gonet2Upstream::send(std::uint64_t conn, std::uint64_t, std::span<const std::byte> message,
                          const Origin& origin) {
  if (origin.replay) return;  // its stream got it, or died with the dead bridge
  const auto it = streams_.find(conn);
  if (it != streams_.end()) {
    frame_.Clear();
    frame_.set_type(proto::Game::Message);
    frame_.set_message(message.data(), message.size());
    metrics_.add(channel_.write(*it->second, frame_) ? metrics::kGameMessagesSent
                                                     : metrics::kDroppedToGame);
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
  if (it != streams_.end()) half_close(*it->second);
}

void Gonet2Upstream::half_close(GameStream& stream) {
  stream.closed_by_us = true;
  channel_.close_send(stream);
}

std::size_t Gonet2Upstream::flush(std::int64_t now_ns) {
  std::size_t work = channel_.pump(now_ns);
  if (!retries_.empty()) retry_due_streams(now_ns);
  // Last: a retry that failed at once is told in the same pass.
  work += take_ended(now_ns);
  return work;
}

std::size_t Gonet2Upstream::take_ended(std::int64_t now_ns) {
  taken_.swap(ended_);
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
  for (auto& [conn, stream] : streams_) half_close(*stream);
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
  return channel_.ready(monotonic_ns());
}

void Gonet2Upstream::cancel(std::uint64_t conn) {
  const auto it = streams_.find(conn);
  if (it != streams_.end()) channel_.cancel(*it->second);
}

void Gonet2Upstream::cancel_all() {
  for (auto& [conn, stream] : streams_) channel_.cancel(*stream);
}

}  // namespace gatehouse::bridge
