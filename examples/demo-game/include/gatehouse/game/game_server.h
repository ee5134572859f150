// GameServer: a reusable implementation of the gonet2 GameService contract
// (shared/protocol.md section 2, proto/game.proto), on gRPC's completion-queue
// API.
//
//   gateway ==Stream(metadata userid=N)==> GameServer --events--> GameHandler
//           <==Frame{Message|Kick|Ping}==            <--push/kick/finish-- any thread
//
// One bidi stream per logged-in client session. The same server also serves
// the batched contract (proto/batch.proto): each session carried on a
// gateway's batched link is a "stream" to the handler too (StreamHandle,
// push, kick), so one handler serves both. On a link, finish() with any status
// but UNAVAILABLE is a Kick (the contract has no per-session status), and
// UNAVAILABLE (what shutdown() does) ends the session here only: no KICK, and
// a later OPEN of it is a new session. Batched sessions outlive their link:
// they are kept per `gateway-id` (call metadata), and when a link breaks its
// sessions are detached, not ended; whatever the gateway had not acknowledged
// and whatever is pushed meanwhile is kept, and is sent again, in order and
// with the same Event.seq, when a new link of that gateway-id re-attaches the
// session (OPEN; no second on_open). A session detached for longer than
// GameServerOptions::reattach_grace ends (on_end); a kicked one stays until
// the gateway acknowledged its KICK, so that a new link gets the KICK again.
// A link without `gateway-id` ends its sessions with it.
//
// A stream whose `userid` metadata is missing or not a decimal int32 is
// finished with INVALID_ARGUMENT before the handler hears of it. Message
// frames go to the handler; a Ping is answered with a Ping carrying the same
// bytes; other types are ignored. When the gateway half-closes (its client left), the
// stream ends OK once what is queued to it is written, as a Go game's
// handler returns on io.EOF.
//
// Threading: the server's own threads (GameServerOptions::threads, no thread
// per stream) poll gRPC's completion queue and run every call's completions
// and the handler's calls. Handler callbacks of one stream are serial
// (on_open, then on_message..., then on_end); different streams call in
// concurrently when there is more than one thread. The
// on_end of a batched session that expired runs on the server's janitor
// thread, and that of a batched session a handler callback ended (kick,
// finish) once that callback returned. Every public GameServer and
// StreamHandle operation is thread-safe, never blocks on the network, and may
// be called from handler callbacks, except shutdown().
//
// Sizes: every message of the server is at most game_link::kMaxMessageBytes
// both ways (gRPC's default, set explicitly). A pushed message larger than
// game_link::kMaxEventMessageBytes could never reach the gateway (it would
// fail the call, and on a batched link every session's with it): push() and
// the others refuse it (false / 0) and count it (oversize_refused()).
// Batches are cut by bytes as well as by count, so each fits.
//
// Writes: each stream has one write in flight and a queue behind it. A stream
// whose queue exceeds GameServerOptions::max_queued_frames is not silently
// trimmed: the call is cancelled (a slow consumer; its write in flight may
// never complete, so a status could not get through), and on_end runs.
#pragma once

#include "gatehouse/codec/frame_numbering.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/support/status.h>

namespace grpc {
class Service;
}

namespace gatehouse::game {

using Bytes = std::vector<std::byte>;

/// Which enum numbering of Game.FrameType the peer was built against. The
/// gonet2 gateway used Message=0, Kick=1, Ping=2; a later game-service
/// generation renumbered to Message=0, Register=1, Kick=2, Ping=3 and added
/// Frame.UserId. On the wire the enum is only an int, so both work.
using gatehouse::frame_type_values;
using gatehouse::FrameNumbering;
using gatehouse::FrameTypeValues;
using gatehouse::parse_frame_numbering;
using gatehouse::to_string;

/// Identifies one stream; unique within the process, never reused.
enum class StreamId : std::uint64_t {};

class GameServer;

/// A value handle on one stream: cheap to copy and safe to keep after the
/// stream ended (operations then return false). It must not outlive the
/// GameServer it came from.
class StreamHandle {
 public:
  StreamHandle(GameServer& server, StreamId id, std::int32_t user_id) noexcept
      : server_(&server), id_(id), user_id_(user_id) {}

  StreamId id() const noexcept { return id_; }
  std::int32_t user_id() const noexcept { return user_id_; }
  GameServer& server() const noexcept { return *server_; }

  /// Shorthands for GameServer::push / kick / finish on this stream.
  bool push(std::span<const std::byte> message) const;
  bool kick() const;
  bool finish(grpc::Status status) const;

 private:
  GameServer* server_;
  StreamId id_;
  std::int32_t user_id_;
};

/// What a game does with its streams. Runs on gRPC callback threads: it must
/// not block (no waiting on I/O, locks held long, or GameServer::shutdown()).
class GameHandler {
 public:
  virtual ~GameHandler() = default;

  /// A stream with a valid userid was accepted; it is already in the registry,
  /// so pushing to it from here works.
  virtual void on_open(StreamHandle stream) = 0;
  /// One Message frame from the gateway: `| proto i16 | body |`. The span is
  /// valid only during the call.
  virtual void on_message(StreamHandle stream, std::span<const std::byte> message) = 0;
  /// The stream is over and already gone from the registry. Called exactly
  /// once per on_open (a batched session re-attached to a new link is the
  /// same stream: no second on_open). `client_half_closed`: the gateway half-closed (client
  /// left) before the server decided to end the stream, and the call was not
  /// cancelled; false for kicks, finish(), cancellations and shutdown.
  virtual void on_end(StreamHandle stream, bool client_half_closed) = 0;
};

struct GameServerOptions {
  /// host:port; port 0 picks a free one (read it back with port()).
  std::string address = "127.0.0.1:0";
  FrameNumbering numbering = FrameNumbering::kGonet2;
  /// Frames queued behind the one being written, per stream; on a batched
  /// link, events queued or written but not yet acknowledged by the gateway
  /// (beyond it the link is cancelled, its sessions detached), and events
  /// per detached session.
  std::size_t max_queued_frames = 65536;
  /// How long a batched session whose link broke waits for a new link of its
  /// gateway-id before it ends; also how long a closed session's id is kept
  /// (a late OPEN of it is ignored).
  std::chrono::milliseconds reattach_grace{60000};
  /// Threads serving the calls (gRPC's completion-queue API); the handler's
  /// calls run on them.
  std::size_t threads = 1;
  /// More gRPC services to serve on the same port, e.g. DemoAuth::service()
  /// (demo_auth.h), so that one process is both the game and the user centre
  /// the gateway's `login = auth:HOST:PORT` calls. Registered as they are:
  /// they run on gRPC's own threads (sync or callback API), not on `threads`,
  /// and must not be async (completion-queue) services, which no thread here
  /// would poll. Each must outlive the server and be registered in no other
  /// server while this one runs. shutdown() stops them with the rest (calls
  /// still open after its grace are cancelled).
  std::vector<grpc::Service*> services{};
};

class GameServer {
 public:
  /// Binds and starts serving; throws std::runtime_error when the address
  /// cannot be bound. `handler` must outlive the server.
  GameServer(GameHandler& handler, GameServerOptions options);
  /// shutdown().
  ~GameServer();
  GameServer(const GameServer&) = delete;
  GameServer& operator=(const GameServer&) = delete;

  int port() const noexcept;
  FrameNumbering numbering() const noexcept;

  /// Queues a Message frame carrying `message` (`| proto i16 | body |`).
  /// False when the stream is gone or already ending, or its queue overflowed
  /// (the call is then cancelled, see above).
  bool push(StreamId stream, std::span<const std::byte> message);
  /// push() to every live stream of `user_id`; returns how many took it.
  std::size_t push_to_user(std::int32_t user_id, std::span<const std::byte> message);
  /// push() to every live stream; returns how many took it.
  std::size_t broadcast(std::span<const std::byte> message);

  /// Queues a Kick frame, then finishes the stream OK once the frames queued
  /// before it are written. False when the stream is gone or already ending.
  bool kick(StreamId stream);
  std::size_t kick_user(std::int32_t user_id);

  /// Finishes the stream with `status` after the frames already queued.
  bool finish(StreamId stream, grpc::Status status);
  std::size_t finish_user(std::int32_t user_id, const grpc::Status& status);

  std::vector<StreamHandle> streams() const;
  std::size_t stream_count() const;
  /// Messages push(), push_to_user() or broadcast() refused because they
  /// were larger than game_link::kMaxEventMessageBytes (one per call).
  std::uint64_t oversize_refused() const noexcept;

  /// Finishes every stream with UNAVAILABLE, refuses new ones, and stops the
  /// server; calls still open after `grace` are cancelled. Returns when every
  /// stream's on_end has run. Idempotent; not from a handler callback.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(1000));

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gatehouse::game
