// tls, ws and wss for the client (docs/websocket.md): Boost.Asio's ssl
// (OpenSSL) and Boost.Beast's WebSocket over the TCP socket connect_socket()
// opens. Asio is asynchronous and the Transport interface blocks with
// deadlines: each call runs the transport's own io_context until its
// operation completes or the deadline passes. A read that times out stays
// pending for the next fill(); a write or a handshake that does not complete
// in time closes the connection and throws (ClientError), as a stalled TCP
// send does.
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <deque>
#include <type_traits>

#include "gatehouse/client/client.h"
#include "gatehouse/net/tls_context.h"
#include "stream.h"

namespace gatehouse::client::detail {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using SslStream = asio::ssl::stream<tcp::socket>;
using boost::system::error_code;

constexpr std::size_t kTlsReadBytes = std::size_t{16} * 1024;

/// Runs `io`'s handlers until `done` or `deadline`; false on timeout.
bool run_until(asio::io_context& io, const bool& done, Clock::time_point deadline) {
  while (!done) {
    if (io.stopped()) io.restart();
    if (io.run_one_until(deadline) == 0 && Clock::now() >= deadline) return done;
  }
  return true;
}

/// Closes `socket` and runs the aborted operations' handlers, so that none
/// is left referring to a caller's buffers.
void abort_operations(asio::io_context& io, tcp::socket& socket) noexcept {
  error_code ec;
  socket.close(ec);
  try {
    io.restart();
    io.run();
  } catch (...) {  // the handlers here only store results: nothing throws
  }
}

tcp::socket adopt(asio::io_context& io, int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return tcp::socket(io, address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd);
}

asio::ssl::context client_context(const TransportOptions& o) {
  try {
    return net::client_tls(o.tls_ca_file);
  } catch (const std::runtime_error& e) {
    throw ClientError(std::string("--") + e.what());
  }
}

/// SNI and the certificate check, then the handshake within `deadline`.
void handshake(asio::io_context& io, SslStream& stream, const TransportOptions& o,
               const std::string& host, Clock::time_point deadline) {
  try {
    net::check_server_as(stream.native_handle(), o.tls_name.empty() ? host : o.tls_name,
                         o.tls_insecure);
  } catch (const std::runtime_error& e) {
    throw ClientError(e.what());
  }
  bool done = false;
  error_code result;
  stream.async_handshake(asio::ssl::stream_base::client, [&](error_code e) {
    result = e;
    done = true;
  });
  if (!run_until(io, done, deadline)) {
    abort_operations(io, stream.next_layer());
    throw ClientError("TLS handshake with " + host + " timed out");
  }
  if (result) throw ClientError("TLS handshake with " + host + ": " + result.message());
}

bool is_disconnect(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated ||
         ec == websocket::error::closed || ec == asio::error::connection_aborted ||
         ec == asio::error::not_connected;
}

// ------------------------------------------------------------------ tls

class TlsStream final : public FramedStream {
 public:
  TlsStream(int fd, const TransportOptions& o, const std::string& host, Clock::time_point deadline)
      : context_(client_context(o)), stream_(adopt(io_, fd), context_) {
    handshake(io_, stream_, o, host, deadline);
  }
  ~TlsStream() override { abort_operations(io_, stream_.next_layer()); }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  TransportKind kind() const noexcept override { return TransportKind::kTls; }
  /// The TCP end of stream, below TLS (the gateway reads it as the client
  /// closing): TLS's own close_notify waits for the answer, which would
  /// hold the caller up.
  void shutdown_send() override {
    error_code ec;
    stream_.next_layer().shutdown(tcp::socket::shutdown_send, ec);
  }
  std::uint16_t local_port() const noexcept override { return local_port_of(native_handle()); }
  int native_handle() const noexcept override {
    return const_cast<SslStream&>(stream_).next_layer().native_handle();
  }

 private:
  bool write(std::span<const std::byte> bytes, Duration stall) override {
    bool done = false;
    error_code result;
    asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()),
                      [&](error_code e, std::size_t) {
                        result = e;
                        done = true;
                      });
    if (!run_until(io_, done, Clock::now() + stall)) {
      abort_operations(io_, stream_.next_layer());
      throw ClientError("send stalled: the gateway has not read for " +
                        std::to_string(stall.count()) + " ms");
    }
    if (result && is_disconnect(result)) return false;
    if (result) throw ClientError("TLS send: " + result.message());
    return true;
  }

  Fill read(std::vector<std::byte>& rx, Clock::time_point deadline) override {
    if (!reading_) {
      reading_ = true;
      read_done_ = false;
      stream_.async_read_some(asio::buffer(chunk_), [this](error_code e, std::size_t n) {
        read_result_ = e;
        read_bytes_ = n;
        read_done_ = true;
      });
    }
    if (!run_until(io_, read_done_, deadline)) return Fill::kTimeout;
    reading_ = false;
    if (!read_result_) {
      rx.insert(rx.end(), chunk_.begin(),
                chunk_.begin() + static_cast<std::ptrdiff_t>(read_bytes_));
      return Fill::kData;
    }
    if (!is_disconnect(read_result_)) throw ClientError("TLS receive: " + read_result_.message());
    if (read_result_ != asio::error::eof) {
      close_error_ = std::make_error_code(std::errc::connection_reset);
    }
    return Fill::kClosed;
  }

  asio::io_context io_;
  asio::ssl::context context_;
  SslStream stream_;
  std::array<std::byte, kTlsReadBytes> chunk_;
  bool reading_ = false;
  bool read_done_ = false;
  error_code read_result_;
  std::size_t read_bytes_ = 0;
};

// ------------------------------------------------------------------ ws, wss

/// One binary message per payload; `Next` is tcp::socket (ws) or the TLS
/// stream over it (wss).
template <class Next>
class WsTransport final : public Transport {
  static constexpr bool kSecure = std::is_same_v<Next, SslStream>;

 public:
  WsTransport(int fd, const TransportOptions& o, const std::string& host, std::uint16_t port,
              Clock::time_point deadline)
      : context_(client_context(o)), ws_(make_next(fd)) {
    if constexpr (kSecure) handshake(io_, ws_.next_layer(), o, host, deadline);
    ws_.set_option(
        websocket::stream_base::decorator([origin = o.ws_origin](websocket::request_type& request) {
          request.set(beast::http::field::user_agent, "gatehouse-client");
          if (!origin.empty()) request.set(beast::http::field::origin, origin);
        }));
    ws_.binary(true);
    ws_.read_message_max(std::size_t{1} << 20);
    bool done = false;
    error_code result;
    ws_.async_handshake(host + ":" + std::to_string(port), o.ws_path, [&](error_code e) {
      result = e;
      done = true;
    });
    if (!run_until(io_, done, deadline)) {
      abort_operations(io_, beast::get_lowest_layer(ws_));
      throw ClientError("WebSocket upgrade with " + host + " timed out");
    }
    if (result) throw ClientError("WebSocket upgrade with " + host + ": " + result.message());
  }
  ~WsTransport() override { abort_operations(io_, beast::get_lowest_layer(ws_)); }
  WsTransport(const WsTransport&) = delete;
  WsTransport& operator=(const WsTransport&) = delete;

  TransportKind kind() const noexcept override {
    return kSecure ? TransportKind::kWss : TransportKind::kWs;
  }

  bool send_frame(std::span<const std::byte> payload, Duration stall) override {
    bool done = false;
    error_code result;
    ws_.async_write(asio::buffer(payload.data(), payload.size()), [&](error_code e, std::size_t) {
      result = e;
      done = true;
    });
    if (!run_until(io_, done, Clock::now() + stall)) {
      abort_operations(io_, beast::get_lowest_layer(ws_));
      throw ClientError("send stalled: the gateway has not read for " +
                        std::to_string(stall.count()) + " ms");
    }
    if (result && is_disconnect(result)) return false;
    if (result) throw ClientError("WebSocket send: " + result.message());
    return true;
  }

  /// One message of these bytes, as they are (the frame's size is the
  /// message's: there is nothing below to malform).
  bool send_raw(std::span<const std::byte> bytes, Duration stall) override {
    return send_frame(bytes, stall);
  }

  std::optional<std::vector<std::byte>> next_payload() override {
    if (inbox_.empty()) return std::nullopt;
    std::vector<std::byte> payload = std::move(inbox_.front());
    inbox_.pop_front();
    return payload;
  }

  Fill fill(Clock::time_point deadline) override {
    if (closed_) return Fill::kClosed;
    if (!reading_) {
      reading_ = true;
      read_done_ = false;
      rx_.clear();
      ws_.async_read(rx_, [this](error_code e, std::size_t) {
        read_result_ = e;
        read_done_ = true;
      });
    }
    if (!run_until(io_, read_done_, deadline)) return Fill::kTimeout;
    reading_ = false;
    if (!read_result_) {
      const auto* data = static_cast<const std::byte*>(rx_.data().data());
      inbox_.emplace_back(data, data + rx_.size());
      return Fill::kData;
    }
    if (!is_disconnect(read_result_)) {
      throw ClientError("WebSocket receive: " + read_result_.message());
    }
    closed_ = true;
    if (read_result_ != websocket::error::closed) {
      close_error_ = std::make_error_code(std::errc::connection_reset);
    }
    return Fill::kClosed;
  }

  /// A close frame; the gateway's answer ends the next fill().
  void shutdown_send() override {
    ws_.async_close(websocket::close_code::normal, [](error_code) {});
  }

  std::uint16_t local_port() const noexcept override { return local_port_of(native_handle()); }
  int native_handle() const noexcept override {
    return const_cast<websocket::stream<Next>&>(ws_).next_layer().lowest_layer().native_handle();
  }

 private:
  Next make_next(int fd) {
    if constexpr (kSecure) {
      return SslStream(adopt(io_, fd), context_);
    } else {
      return adopt(io_, fd);
    }
  }

  asio::io_context io_;
  asio::ssl::context context_;
  websocket::stream<Next> ws_;
  beast::flat_buffer rx_;
  std::deque<std::vector<std::byte>> inbox_;
  bool reading_ = false;
  bool read_done_ = false;
  bool closed_ = false;
  error_code read_result_;
};

}  // namespace

std::unique_ptr<Transport> connect_layered(const TransportOptions& options, const std::string& host,
                                           std::uint16_t port, Duration timeout) {
  const auto deadline = Clock::now() + timeout;
  const int fd = connect_socket(host, port, timeout, options.source_address);
  switch (options.kind) {
    case TransportKind::kTls:
      return std::make_unique<TlsStream>(fd, options, host, deadline);
    case TransportKind::kWs:
      return std::make_unique<WsTransport<tcp::socket>>(fd, options, host, port, deadline);
    case TransportKind::kWss:
      return std::make_unique<WsTransport<SslStream>>(fd, options, host, port, deadline);
    default:
      ::close(fd);
      throw std::logic_error("connect_layered: not a layered transport");
  }
}

}  // namespace gatehouse::client::detail
