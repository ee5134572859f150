// FakeGameService: an in-process game service for integration tests, in the
// spirit of Envoy's FakeUpstream. A GameServer (gw::game_server) whose handler
// records every stream; tests drive it (push, kick, fail, stop/start) and wait
// on what it saw.
//
//   gateway under test ==gRPC==> FakeGameService (127.0.0.1:port)
//                                  records: user id, Message frames, how and when each stream ended
//
// Thread-safe. Waits block on a condition variable up to their timeout and
// return false (or nullopt) when it passes. Records survive stop()/start(),
// so counts are "since construction".
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/game/game_server.h"

namespace gatehouse::testing {

using game::Bytes;
using game::FrameNumbering;
using game::StreamId;

struct FakeGameServiceOptions {
  /// 0 picks a free port; a fixed port lets a test restart on the same one.
  int port = 0;
  FrameNumbering numbering = FrameNumbering::kGonet2;
  /// Answer 1001 proto_ping_req with 1002 proto_ping_ack, as the demo game does.
  bool echo = false;
  /// Answer every message (of two bytes or more) with itself, its proto
  /// number + 1: a service beside the game (a chat) with protos of its own.
  bool echo_any = false;
};

/// What the fake saw of one stream.
struct FakeStream {
  StreamId id{};
  std::int32_t user_id = 0;
  std::vector<Bytes> frames;  ///< every Message frame received, in order
  bool ended = false;
  bool client_half_closed = false;  ///< ended by the gateway's half-close (see GameHandler)
  std::chrono::steady_clock::time_point opened_at;
  std::chrono::steady_clock::time_point ended_at;  ///< when ended
};

class FakeGameService {
 public:
  using Duration = std::chrono::steady_clock::duration;

  explicit FakeGameService(FakeGameServiceOptions options = {});
  ~FakeGameService();
  FakeGameService(const FakeGameService&) = delete;
  FakeGameService& operator=(const FakeGameService&) = delete;

  /// The bound port (kept across stop()/start()).
  int port() const;
  /// "127.0.0.1:port", for a gateway's backend address.
  std::string address() const;

  /// Ends every stream with UNAVAILABLE and stops listening (a game outage).
  void stop();
  /// Listens again on the same port; throws std::runtime_error if it is taken.
  void start();
  bool running() const;

  // ------------------------------------------------------------ actions
  /// Queue a Message frame to every live stream of `user_id`; false if it has none.
  bool push(std::int32_t user_id, std::span<const std::byte> message);
  /// Send Kick, then end OK, on every live stream of `user_id`.
  bool kick(std::int32_t user_id);
  /// End every live stream of `user_id` with UNAVAILABLE.
  bool fail_stream(std::int32_t user_id);
  void set_echo(bool on);

  // ------------------------------------------------------------ waits
  /// At least `n` streams opened in total.
  bool wait_for_streams(std::size_t n, Duration timeout);
  /// At least `n` Message frames received from `user_id` in total.
  bool wait_for_frames(std::int32_t user_id, std::size_t n, Duration timeout);
  /// The latest stream of `user_id` has ended (waits for one to open, too).
  std::optional<FakeStream> wait_for_stream_end(std::int32_t user_id, Duration timeout);

  // ------------------------------------------------------------ snapshots
  std::vector<FakeStream> streams() const;
  /// Every Message frame from `user_id`, across its streams, in order.
  std::vector<Bytes> frames(std::int32_t user_id) const;
  std::size_t live_stream_count() const;

 private:
  class Recorder;

  /// The running server, or null while stopped. Operations take a short
  /// lock to find it; stop() takes it out and shuts it down unlocked.
  std::shared_ptr<game::GameServer> server() const;

  FakeGameServiceOptions options_;
  std::unique_ptr<Recorder> recorder_;
  mutable std::mutex server_mu_;
  std::shared_ptr<game::GameServer> server_;  ///< guarded by server_mu_
  int port_ = 0;                              ///< guarded by server_mu_
};

}  // namespace gatehouse::testing
