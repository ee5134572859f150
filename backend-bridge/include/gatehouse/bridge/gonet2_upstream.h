// The gonet2 contract (proto/game.proto): one gRPC bidi Stream per
// logged-in session, metadata `userid` (what gonet2 sent: existing game
// services work unchanged), `gateway-id` and `login-seq` (for a game service
// behind several gateways that sees one user on two: docs/game-services.md).
//
// Per session: open() starts the stream; each send() becomes one
// Frame{Message}; close() half-closes it (END_STREAM) so the game sees end of
// stream. The streams are HTTP/2 streams on one connection per instance,
// driven by the main thread itself (GrpcChannel, grpc_h2.h: no gRPC call
// objects, no other thread): what every session wrote in a duty-cycle pass
// leaves in flush(), which also reads what the game sent: Message ->
// message(), Kick -> kick(), straight into the worker rings; the end of the
// stream (clean or failed, including a game service that is down) ->
// ended(), after the stream's last message: the worker kicks the session
// (kicked_by_game / backend_unavailable).
//
// Streams re-opened after a bridge restart (open() without an Origin) are
// retried with backoff (100 ms doubling to 5 s) while the game service is
// unavailable, for up to --backend-wait, instead of kicking their sessions;
// client frames for them meanwhile are dropped and counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "game.pb.h"
#include "gatehouse/bridge/grpc_h2.h"
#include "gatehouse/bridge/io_poller.h"
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
  /// bridge's successor counts what it left there as lost). `io`: what the
  /// main thread parks on (the connections' sockets wake it). Everything
  /// given here outlives this.
  Gonet2Upstream(Options options, IoPoller& io, UpstreamEvents& events, InstanceMetrics& metrics,
                 std::atomic<std::int64_t>& in_flight);
  /// Closes its connections; the calls still up end there (reset).
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
  bool calls_over() const override { return channel_.calls() == 0 && ended_.empty(); }
  std::uint64_t unacknowledged() const override { return 0; }
  /// Its connection is up (the game's SETTINGS came). A game service
  /// without sessions has no stream to tell, so the bridge keeps the
  /// connection up itself.
  bool reachable() override;
  void move_to(const std::string& address) override;

 private:
  class GameStream;
  class InFlight;
  /// What a stream reports when it is over.
  struct Ended {
    std::uint64_t conn;
    std::int32_t grpc_code;
    bool closed_by_us;  ///< we half-closed it first: the session is gone already
    bool worked;        ///< it carried a message from the game
    /// Client messages it had taken and could not deliver (queued, or the
    /// write the failure cut): counted as dropped by the main thread.
    std::uint64_t undelivered;
  };
  std::size_t take_ended(std::int64_t now_ns);
  /// Who a session is, for its stream's metadata.
  struct User {
    std::int64_t user_id;
    std::uint64_t login_seq;
  };
  void start_stream(std::uint64_t conn, const User& user);
  void half_close(GameStream& stream);
  void retry_due_streams(std::int64_t now_ns);
  /// Tells the session's worker its game service is unavailable (main thread).
  void end_session(std::uint64_t conn);

  Options options_;
  UpstreamEvents& events_;
  InstanceMetrics& metrics_;
  std::atomic<std::int64_t>& in_flight_;
  std::shared_ptr<InFlight> in_flight_source_;  // counts replies waiting for ring room
  proto::Game::Frame frame_;                    // the one being encoded or decoded
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
  bool stopping_ = false;     // close_all() was called: no stream is opened again
  std::vector<Ended> ended_;  // since the last take_ended()
  std::vector<Ended> taken_;
  // Last: its calls (in streams_) end into ended_ when it goes.
  GrpcChannel channel_;
};

}  // namespace gatehouse::bridge
