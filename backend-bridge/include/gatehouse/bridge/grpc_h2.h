// A gRPC client on HTTP/2 (nghttp2) that the bridge's main thread drives
// itself, for the gonet2 contract's one stream per session (issue 18).
//
// gRPC's C++ call machinery costs a call object of ~24 KiB per session, a
// completion-queue round per operation and a hand-off between gRPC's
// threads and ours for every message. Here one connection per game-service
// instance carries every session's stream; a call is a few hundred bytes
// (GrpcCall's state and nghttp2's stream); the messages all sessions wrote
// in one duty-cycle pass leave in one write(2), and what the game sent is
// read, framed and delivered into the worker rings by the same thread,
// without waking another.
//
//   GrpcChannel: one game service's address; the connection in use, the
//       ones going away (GOAWAY, a new address) until their calls end, and
//       reconnecting with backoff after a failure (while the last attempt
//       failed and the next is not due, a new call fails UNAVAILABLE at
//       once, as gRPC fails a call fast in TRANSIENT_FAILURE)
//   GrpcConnection: one TCP connection, one nghttp2 client session
//   GrpcCall: one call (stream), as the code that made it sees it
//
// What makes it a gRPC client (the HTTP/2 protocol of grpc/doc/PROTOCOL-HTTP2):
// POST with te: trailers and content-type application/grpc, the metadata as
// headers; messages length-prefixed (uncompressed: no grpc-encoding is
// offered, a compressed message fails the call INTERNAL); the status from
// the trailers (or a Trailers-Only response), else from the HTTP status or
// the stream's RST_STREAM code; a lost connection ends its calls
// UNAVAILABLE. Flow control: the stream window stays HTTP/2's initial
// 64 KiB; once the call's owner holds its reads (pause_reads: the worker's
// backlog is full) nothing more is delivered, and what arrives is kept as
// it came and not given back to the window, so the game service stops
// sending within 64 KiB; resume() reads it (and gives the window back); the
// end of the stream comes after it. The connection window is given back at
// once, so one held session never stalls the others.
//
// Main thread only. Cleartext, like the gRPC channels it replaces (no TLS
// to game services yet).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <google/protobuf/message_lite.h>

#include "gatehouse/bridge/grpc_message_reader.h"
#include "gatehouse/bridge/io_poller.h"

struct nghttp2_session;

namespace gatehouse::bridge {

class GrpcConnection;

/// One call. Its owner keeps it alive until on_end() (which a GrpcChannel
/// calls before it is destroyed, for every call it still has).
class GrpcCall {
 public:
  GrpcCall() = default;
  GrpcCall(const GrpcCall&) = delete;
  GrpcCall& operator=(const GrpcCall&) = delete;

  /// One message from the server (valid during the call).
  virtual void on_message(std::span<const std::byte> message) = 0;
  /// The call is over, once: the server's status, UNAVAILABLE (the
  /// connection failed or was refused), CANCELLED (cancel()), INTERNAL
  /// (the server broke the protocol). `unsent`: messages written and never
  /// handed to HTTP/2.
  virtual void on_end(std::int32_t code, std::string_view message, std::uint64_t unsent) = 0;

  /// From on_message: stop giving this stream's window back (resume() on
  /// its channel gives back what came since).
  void pause_reads() noexcept { paused_ = true; }

 protected:
  // Virtual only because the friends below could otherwise delete one
  // through this base (GCC's -Wnon-virtual-dtor); nothing does.
  virtual ~GrpcCall() = default;

 private:
  friend class GrpcConnection;
  friend class GrpcChannel;
  GrpcConnection* connection_ = nullptr;  // null before start and after on_end
  GrpcCall* prev_ = nullptr;              // the connection's calls
  GrpcCall* next_ = nullptr;
  std::int32_t stream_id_ = 0;  // 0 before start, and once the stream closed under held bytes
  std::uint32_t out_messages_ = 0;
  std::int32_t grpc_status_ = -1;  // from the trailers
  std::uint16_t http_status_ = 0;
  bool paused_ = false;
  bool resuming_ = false;      // on its connection's resumed_ list
  bool remote_ended_ = false;  // the server's END_STREAM came while bytes were held
  bool deferred_ = false;      // nghttp2 waits for resume_data
  bool send_closed_ = false;   // close_send(): END_STREAM after `out_`
  bool cancelled_ = false;
  bool ended_ = false;
  std::string out_;  // messages written, not yet taken by HTTP/2 framing
  std::size_t out_taken_ = 0;
  GrpcMessageReader in_;  // the server's messages
  // DATA that came while the reads were held (or after them): read on
  // resume; its window is given back as it is read.
  std::string held_;
  std::string grpc_message_;
};

/// Metadata of a call (name, value): lower-case names.
using GrpcMetadata = std::span<const std::pair<std::string_view, std::string_view>>;

struct GrpcChannelOptions {
  std::uint32_t max_message_bytes = 4u << 20;  ///< larger from the server: RESOURCE_EXHAUSTED
  /// Messages in this process's hands (written, not yet handed to HTTP/2);
  /// may be null.
  std::atomic<std::int64_t>* in_flight = nullptr;
  std::chrono::milliseconds connect_timeout{20'000};
  /// A connection with calls that has heard nothing for this long sends a
  /// PING; one unanswered for keepalive_timeout ends it (a game host gone
  /// without a word). Just over the 5 minutes gRPC servers allow between
  /// pings on a quiet connection (more often: GOAWAY too_many_pings).
  std::chrono::milliseconds keepalive_interval{310'000};
  std::chrono::milliseconds keepalive_timeout{20'000};
  /// TCP_USER_TIMEOUT: what the kernel has sent unacknowledged this long
  /// ends the connection (a game host gone while we write).
  std::chrono::milliseconds user_timeout{30'000};
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{2'000};
};

/// One TCP connection and its HTTP/2 session (GrpcChannel's).
class GrpcConnection {
 public:
  /// Starts connecting to `address` (HOST:PORT; numeric or a name resolved
  /// here). A failure shows as state() kClosed with error().
  GrpcConnection(const std::string& address, const GrpcChannelOptions& options, IoPoller& io,
                 std::int64_t now_ns);
  /// Ends the calls still on it UNAVAILABLE ("shut down").
  ~GrpcConnection();
  GrpcConnection(const GrpcConnection&) = delete;
  GrpcConnection& operator=(const GrpcConnection&) = delete;

  enum class State { kConnecting, kReady, kClosed };
  State state() const noexcept { return state_; }
  /// Ready and the server has sent its SETTINGS.
  bool ready() const noexcept { return state_ == State::kReady && settings_seen_; }
  /// Connecting or ready, and neither told to go away nor out of stream ids.
  bool accepts_calls() const noexcept;
  bool ever_ready() const noexcept { return settings_seen_; }
  std::size_t calls() const noexcept { return calls_; }
  /// No call left and nothing left to send, or closed: it may go.
  bool quiet() const noexcept;
  const std::string& error() const noexcept { return error_; }

  void start(GrpcCall& call, std::string_view path, std::string_view authority,
             GrpcMetadata metadata);
  bool write(GrpcCall& call, const google::protobuf::MessageLite& message);
  void close_send(GrpcCall& call);
  void cancel(GrpcCall& call);
  void abort(GrpcCall& call, std::int32_t code, std::string_view message);
  void resume(GrpcCall& call);
  /// Connects, reads what came, writes what is due. Returns how much it did.
  std::size_t pump(std::int64_t now_ns);
  /// Fails every call UNAVAILABLE with `reason` and closes.
  void fail(const std::string& reason);

 private:
  struct Callbacks;
  void link(GrpcCall& call) noexcept;
  void end(GrpcCall& call, std::int32_t code, std::string_view message);
  /// The server ended the stream (END_STREAM): its status.
  void finished(GrpcCall& call);
  /// Reads the call's messages out of `data` until its reads are held;
  /// returns the bytes taken.
  std::size_t deliver(GrpcCall& call, const std::byte* data, std::size_t size);
  /// The calls resumed since the last pump: what they held is read.
  std::size_t read_held();
  bool check_connected();
  std::size_t read_socket(std::int64_t now_ns);
  /// PINGs a quiet connection; ends one whose PING went unanswered.
  void keep_alive(std::int64_t now_ns);
  bool write_socket();
  void want_write(bool want);
  GrpcCall* call_of(std::int32_t stream_id) const noexcept;

  const GrpcChannelOptions& options_;
  IoPoller& io_;
  int fd_ = -1;
  nghttp2_session* session_ = nullptr;
  State state_ = State::kConnecting;
  bool settings_seen_ = false;
  bool going_away_ = false;
  bool watching_write_ = false;
  std::int64_t connect_deadline_ns_;
  std::int64_t last_read_ns_;
  std::int64_t ping_sent_ns_ = 0;  // 0: none unanswered
  GrpcCall* calls_head_ = nullptr;
  std::vector<GrpcCall*> resumed_;
  std::size_t calls_ = 0;
  std::string out_;  // HTTP/2 bytes the socket has not taken yet
  std::size_t out_sent_ = 0;
  std::string error_;
  std::string protocol_error_;  // the first one nghttp2 reported
};

class GrpcChannel {
 public:
  GrpcChannel(std::string address, GrpcChannelOptions options, IoPoller& io);
  /// Ends every call still up UNAVAILABLE (their on_end runs here).
  ~GrpcChannel();
  GrpcChannel(const GrpcChannel&) = delete;
  GrpcChannel& operator=(const GrpcChannel&) = delete;

  /// Starts `call` (a POST to `path`) on the connection in use, making one
  /// if none is; when the last attempt failed and the next is not due, the
  /// call ends UNAVAILABLE here, before this returns.
  void start(GrpcCall& call, std::string_view path, GrpcMetadata metadata, std::int64_t now_ns);
  /// Queues a message (sent at the next pump()); false when the call is
  /// over or half-closed.
  bool write(GrpcCall& call, const google::protobuf::MessageLite& message);
  /// Half-closes: END_STREAM after what was written.
  void close_send(GrpcCall& call);
  /// RST_STREAM(CANCEL); the call ends CANCELLED (unless it ended first).
  void cancel(GrpcCall& call);
  /// Ends the call here with `code` (the client's own verdict: a message
  /// it cannot parse) and resets its stream.
  void abort(GrpcCall& call, std::int32_t code, std::string_view message);
  /// Gives back the window a paused call held (pause_reads).
  void resume(GrpcCall& call);
  /// Every connection: connect, read, write; drops the ones gone quiet.
  std::size_t pump(std::int64_t now_ns);
  /// Connected to the current address (the server's SETTINGS came);
  /// connects now when idle and due (gRPC's GetState(try_to_connect)).
  bool ready(std::int64_t now_ns);
  /// New calls go to `address`; the calls up keep their connection.
  void move_to(std::string address);
  const std::string& address() const noexcept { return address_; }
  /// Calls up on every connection of the channel.
  std::size_t calls() const noexcept;

 private:
  /// The connection for a new call: the current one, or a new attempt when
  /// due; null while backing off.
  GrpcConnection* usable(std::int64_t now_ns);
  /// The current connection failed: drops it, and says when to try again.
  void reap(std::int64_t now_ns);
  void retire_current();

  std::string address_;
  std::string authority_;
  GrpcChannelOptions options_;
  IoPoller& io_;
  std::unique_ptr<GrpcConnection> current_;
  std::vector<std::unique_ptr<GrpcConnection>> retiring_;  // until their calls end
  std::int64_t next_attempt_ns_ = 0;
  std::chrono::milliseconds backoff_;
  std::string last_error_;
};

}  // namespace gatehouse::bridge
