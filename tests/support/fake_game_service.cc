#include "fake_game_service.h"

#include <atomic>
#include <condition_variable>
#include <string>
#include <unordered_map>
#include <utility>

#include "gatehouse/game/demo_game.h"

namespace gatehouse::testing {

/// The GameHandler: records under mu_, wakes the waits on changed_.
class FakeGameService::Recorder final : public game::GameHandler {
 public:
  Recorder(bool echo, bool echo_any) : echo_(echo), echo_any_(echo_any) {}

  void on_open(game::StreamHandle stream) override {
    std::lock_guard lock(mu_);
    index_.emplace(static_cast<std::uint64_t>(stream.id()), streams_.size());
    FakeStream& record = streams_.emplace_back();
    record.id = stream.id();
    record.user_id = stream.user_id();
    record.opened_at = std::chrono::steady_clock::now();
    changed_.notify_all();
  }

  void on_message(game::StreamHandle stream, std::span<const std::byte> message) override {
    {
      std::lock_guard lock(mu_);
      find(stream.id()).frames.emplace_back(message.begin(), message.end());
      changed_.notify_all();
    }
    if (echo_any_ && message.size() >= 2) {
      // | proto + 1 | the same body |
      Bytes reply(message.begin(), message.end());
      const auto proto = static_cast<std::uint16_t>(
          ((std::to_integer<unsigned>(reply[0]) << 8) | std::to_integer<unsigned>(reply[1])) + 1);
      reply[0] = static_cast<std::byte>(proto >> 8);
      reply[1] = static_cast<std::byte>(proto & 0xFF);
      stream.push(reply);
    } else if (echo_.load(std::memory_order_relaxed)) {
      if (const auto reply = game::demo::echo_reply(message)) stream.push(*reply);
    }
  }

  void on_end(game::StreamHandle stream, bool client_half_closed) override {
    std::lock_guard lock(mu_);
    FakeStream& record = find(stream.id());
    record.ended = true;
    record.client_half_closed = client_half_closed;
    record.ended_at = std::chrono::steady_clock::now();
    changed_.notify_all();
  }

  void set_echo(bool on) { echo_.store(on, std::memory_order_relaxed); }

  /// Waits until `done()` (called under mu_) holds; false on timeout.
  template <class Predicate>
  bool wait(Duration timeout, Predicate done) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, done);
  }

  // Under mu_ (from wait predicates) or through the locked accessors below.
  std::size_t frame_count_locked(std::int32_t user_id) const {
    std::size_t n = 0;
    for (const FakeStream& s : streams_) {
      if (s.user_id == user_id) n += s.frames.size();
    }
    return n;
  }
  const FakeStream* latest_locked(std::int32_t user_id) const {
    for (auto it = streams_.rbegin(); it != streams_.rend(); ++it) {
      if (it->user_id == user_id) return &*it;
    }
    return nullptr;
  }
  std::size_t stream_count_locked() const { return streams_.size(); }

  std::vector<FakeStream> streams() const {
    std::lock_guard lock(mu_);
    return streams_;
  }
  std::vector<Bytes> frames(std::int32_t user_id) const {
    std::lock_guard lock(mu_);
    std::vector<Bytes> out;
    for (const FakeStream& s : streams_) {
      if (s.user_id == user_id) out.insert(out.end(), s.frames.begin(), s.frames.end());
    }
    return out;
  }
  std::size_t live_stream_count() const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const FakeStream& s : streams_) n += s.ended ? 0 : 1;
    return n;
  }

 private:
  FakeStream& find(StreamId id) { return streams_[index_.at(static_cast<std::uint64_t>(id))]; }

  std::atomic<bool> echo_;
  const bool echo_any_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<FakeStream> streams_;                       ///< in opening order
  std::unordered_map<std::uint64_t, std::size_t> index_;  ///< stream id -> streams_ index
};

FakeGameService::FakeGameService(FakeGameServiceOptions options)
    : options_(options),
      recorder_(std::make_unique<Recorder>(options.echo, options.echo_any)),
      port_(options.port) {
  start();
}

FakeGameService::~FakeGameService() {
  stop();
}

int FakeGameService::port() const {
  std::lock_guard lock(server_mu_);
  return port_;
}

std::string FakeGameService::address() const {
  return "127.0.0.1:" + std::to_string(port());
}

void FakeGameService::start() {
  std::lock_guard lock(server_mu_);
  if (server_) return;
  game::GameServerOptions server_options;
  server_options.address = "127.0.0.1:" + std::to_string(port_);
  server_options.numbering = options_.numbering;
  server_ = std::make_shared<game::GameServer>(*recorder_, std::move(server_options));
  port_ = server_->port();
}

void FakeGameService::stop() {
  std::shared_ptr<game::GameServer> server;
  {
    std::lock_guard lock(server_mu_);
    server = std::move(server_);
  }
  // Unlocked: shutting down runs the recorder's on_end for every stream.
  if (server) server->shutdown();
}

bool FakeGameService::running() const {
  return server() != nullptr;
}

std::shared_ptr<game::GameServer> FakeGameService::server() const {
  std::lock_guard lock(server_mu_);
  return server_;
}

bool FakeGameService::push(std::int32_t user_id, std::span<const std::byte> message) {
  const auto server = this->server();
  return server && server->push_to_user(user_id, message) > 0;
}

bool FakeGameService::kick(std::int32_t user_id) {
  const auto server = this->server();
  return server && server->kick_user(user_id) > 0;
}

bool FakeGameService::fail_stream(std::int32_t user_id) {
  const auto server = this->server();
  return server &&
         server->finish_user(user_id, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                   "failed by the fake game service")) > 0;
}

void FakeGameService::set_echo(bool on) {
  recorder_->set_echo(on);
}

bool FakeGameService::wait_for_streams(std::size_t n, Duration timeout) {
  return recorder_->wait(timeout, [&] { return recorder_->stream_count_locked() >= n; });
}

bool FakeGameService::wait_for_frames(std::int32_t user_id, std::size_t n, Duration timeout) {
  return recorder_->wait(timeout, [&] { return recorder_->frame_count_locked(user_id) >= n; });
}

std::optional<FakeStream> FakeGameService::wait_for_stream_end(std::int32_t user_id,
                                                               Duration timeout) {
  std::optional<FakeStream> ended;
  recorder_->wait(timeout, [&] {
    const FakeStream* latest = recorder_->latest_locked(user_id);
    if (latest == nullptr || !latest->ended) return false;
    ended = *latest;
    return true;
  });
  return ended;
}

std::vector<FakeStream> FakeGameService::streams() const {
  return recorder_->streams();
}

std::vector<Bytes> FakeGameService::frames(std::int32_t user_id) const {
  return recorder_->frames(user_id);
}

std::size_t FakeGameService::live_stream_count() const {
  return recorder_->live_stream_count();
}

}  // namespace gatehouse::testing
