// StreamLink: a client connection whose frames come through a layer over its
// TCP socket (docs/websocket.md): TLS, WebSocket, or WebSocket over TLS. The
// frontend's framing, bounds and deadlines stay its own; a link turns the
// layer into the byte stream a TCP client would have sent, and the workers'
// frames into what the layer carries:
//
//   tls   the TCP protocol's bytes inside TLS (OpenSSL, through Asio's ssl)
//   ws    one binary message per frame: a message is a frame's payload
//         `| seq | proto | body |`, its length in place of the 2-byte size
//         (Boost.Beast); read() hands `| size | payload |` to the framing
//   wss   ws over TLS
//
// Every operation is asynchronous on the frontend's io_context, one of each
// kind at a time (one open, one read, one write, one close). A link is held
// by shared_ptr and its pending handlers hold it too, so the frontend may
// forget a connection while its operations unwind (close() aborts them).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::frontend {

class StreamLink {
 public:
  enum class Kind : std::uint8_t { kTls, kWs, kWss };
  /// Why open() failed: the counters of gatehouse_handshakes_failed_total.
  enum class Failure : std::uint8_t { kNone, kTls, kRequest, kOrigin };
  /// What a read brought.
  enum class Input : std::uint8_t {
    kBytes,     ///< protocol bytes (possibly none: a control frame)
    kClosed,    ///< the client closed cleanly (close frame, close_notify, FIN)
    kError,     ///< the connection broke
    kTooLarge,  ///< a WebSocket message over the frame limit
    kText,      ///< a WebSocket text message
  };

  struct Options {
    std::uint32_t max_payload;  ///< max-frame: the largest message a ws read takes
    /// Origins an upgrade may name, ',' between them; empty: any.
    std::string allowed_origins;
  };

  using OpenHandler = std::function<void(Failure, std::string_view why)>;
  using ReadHandler = std::function<void(Input, std::span<const std::byte>)>;
  /// A write's end: false when the connection broke.
  using WriteHandler = std::function<void(bool ok, std::size_t bytes)>;
  using CloseHandler = std::function<void()>;

  /// `tls` for kTls and kWss (its holder keeps it alive while the link lives).
  static std::shared_ptr<StreamLink> make(Kind kind, boost::asio::ip::tcp::socket socket,
                                          std::shared_ptr<boost::asio::ssl::context> tls,
                                          Options options);

  StreamLink() = default;
  StreamLink(const StreamLink&) = delete;
  StreamLink& operator=(const StreamLink&) = delete;
  virtual ~StreamLink() = default;

  virtual Kind kind() const noexcept = 0;
  /// The TLS handshake and/or the WebSocket upgrade (a refused upgrade gets
  /// its HTTP answer first). `first` are bytes read before (with a PROXY
  /// header). Then `done`.
  virtual void open(std::span<const std::byte> first, OpenHandler done) = 0;
  /// What the client sent next.
  virtual void read(ReadHandler done) = 0;
  /// `frames`: whole `| size | payload |` frames as the workers wrote them.
  virtual void write(std::vector<std::byte> frames, WriteHandler done) = 0;
  /// Bytes handed to write() and not written yet.
  virtual std::size_t writing_bytes() const noexcept = 0;
  /// After the last write: a close frame (ws, wss: code 1000, `reason` as
  /// its reason text: the session's close reason, so that a client can tell
  /// a kick by the game from a drain) or close_notify (tls, which has no
  /// place for a reason), then `done` once the client answered, or the
  /// connection broke.
  virtual void close_gracefully(std::string_view reason, CloseHandler done) = 0;
  /// At once: the socket closes and pending operations end (their handlers
  /// still run).
  virtual void close() noexcept = 0;
  /// A WebSocket ping or pong from the client: it is alive (the frontend
  /// restarts its read deadline).
  void on_control(std::function<void()> alive) { alive_ = std::move(alive); }

 protected:
  std::function<void()> alive_;
};

std::string_view name_of(StreamLink::Kind kind) noexcept;

}  // namespace gatehouse::frontend
