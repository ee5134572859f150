// The gonet2 contract (proto/game.proto): one gRPC bidi Stream per
// logged-in session, metadata `userid` (what gonet2 sent: existing game
// services work unchanged), `gateway-id` and `login-seq` (for a game service
// behind several gateways that sees one user on two: docs/game-services.md).
//
// Per session: open() starts the stream; each send() becomes one
// Frame{Message}; close() half-closes it (WritesDone) so the game sees end of
// stream. From the game (the gRPC thread, straight to UpstreamEvents):
// Message -> message(), Kick -> kick(); the end of the stream (clean or
// failed, including a game service that is down) -> ended() from the main
// thread's flush(), after the stream's last message: the worker kicks the
// session (kicked_by_game / backend_unavailable).
//
// Streams re-opened after a bridge restart (open() without an Origin) are
// retried with backoff (100 ms doubling to 5 s) while the game service is
// unavailable, for up to --backend-wait, instead of kicking their sessions;
// client frames for them meanwhile are dropped and counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "game.grpc.pb.h"
#include "gatehouse/bridge/call_on_queue.h"
#include "gatehouse/bridge/upstream.h"
#include "gatehouse/codec/frame_numbering.h"
#include "gatehouse/contract/metrics.h"

namespace gatehouse::bridge {

class Gonet2Upstream final : public Upstream {
 public:
  struct Options {
    std::string address;  ///< HOST:PORT
    FrameNumbering numbering = FrameNumbering::kGonet2;
    std::int64_t backend_wait_ns = 60'000'000'000;
    std::string gateway_id;  ///< metadata gateway-id
  };
  /// `in_flight`: frames in this process's hands (shared memory; a dead
  /// bridge's successor counts what it left there as lost). Everything given
  /// here outlives this.
  Gonet2Upstream(Options options, CallQueue& calls, UpstreamEvents& events, Wakeup& wakeup,
                 InstanceMetrics& metrics, std::atomic<std::int64_t>& in_flight);
  /// Cancels its calls and waits for them to end.
  ~Gonet2Upstream() override;

  bool open(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
            const Origin* origin) override;
  void send(std::uint64_t conn, std::uint64_t seq, std::span<const std::byte> message,
            const Origin& origin) override;
  void close(std::uint64_t conn, const Origin& origin) override;
  std::size_t flush(std::int64_t now_ns) override;
  bool has_call(std::uint64_t conn) const override { return streams_.contains(conn); }
  void cancel(std::uint64_t conn) override;
  void close_all() override;
  void cancel_all() override;
  std::size_t calls_open() const override { return streams_.size(); }
  bool calls_over() const override { return calls_.queue().calls_live(calls_) == 0; }
  std::uint64_t unacknowledged() const override { return 0; }
  /// Its channel is connected (READY). A game service without sessions has
  /// no stream to tell, so the bridge keeps the channel connected itself.
  bool reachable() override;
  void move_to(const std::string& address) override;

 private:
  class GameStream;
  class InFlight;
  /// What a stream reports when it is over (the gRPC thread).
  struct Ended {
    std::uint64_t conn;
    std::int32_t grpc_code;
    bool closed_by_us;  ///< we half-closed it first: the session is gone already
    bool worked;        ///< it carried a message from the game
    /// Client messages it had taken and could not deliver (queued, or the
    /// write the failure cut): counted as dropped by the main thread.
    std::uint64_t undelivered;
  };
  void on_ended(const Ended& ended);  // any thread
  std::size_t take_ended(std::int64_t now_ns);
  /// Who a session is, for its stream's metadata.
  struct User {
    std::int64_t user_id;
    std::uint64_t login_seq;
  };
  void start_stream(std::uint64_t conn, const User& user);
  void retry_due_streams(std::int64_t now_ns);
  /// Tells the session's worker its game service is unavailable (main thread).
  void end_session(std::uint64_t conn);

  Options options_;  // address: main thread (move_to)
  CallGroup calls_;
  UpstreamEvents& events_;
  Wakeup& wakeup_;
  InstanceMetrics& metrics_;
  std::atomic<std::int64_t>& in_flight_;
  std::shared_ptr<InFlight> in_flight_source_;      // counts replies waiting for ring room
  std::shared_ptr<grpc::Channel> channel_;          // to options_.address
  std::unique_ptr<proto::GameService::Stub> stub_;  // on channel_
  std::unordered_map<std::uint64_t, std::shared_ptr<GameStream>> streams_;
  // Streams re-opened after a bridge restart, until one carries a message.
  std::unordered_map<std::uint64_t, User> reopening_;
  struct Retry {
    User user;
    std::int64_t due_ns;
    std::int64_t give_up_ns;
    std::uint32_t backoff_ms;
  };
  std::unordered_map<std::uint64_t, Retry> retries_;
  bool stopping_ = false;  // close_all() was called: no stream is opened again
  std::mutex ended_mutex_;
  std::vector<Ended> ended_;  // guarded by ended_mutex_
  std::vector<Ended> taken_;  // main thread's copy
};

}  // namespace gatehouse::bridge
