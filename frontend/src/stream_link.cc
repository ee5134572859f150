#include "gatehouse/frontend/stream_link.h"

#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>

#include "gatehouse/base/log_text.h"
#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"

namespace gatehouse::frontend {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using SslStream = asio::ssl::stream<tcp::socket>;
using boost::system::error_code;

namespace {

// What one TLS read takes: a busy client's records arrive in pieces of this.
constexpr std::size_t kTlsReadBytes = 2048;
// An upgrade request's header: a browser's is well under 2 KiB.
constexpr std::uint32_t kRequestHeaderLimit = 8192;
// A message buffer larger than this is given back once the message is taken,
// so that a connection that sent one large frame does not keep its buffer.
constexpr std::size_t kKeptReadBytes = 4096;

/// End of stream or a reset: the client went away (as a TCP client's FIN).
bool is_close(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::ssl::error::stream_truncated || ec == websocket::error::closed;
}

/// `origin` is one of the ','-joined `allowed` (ASCII case ignored, as
/// browsers send scheme and host in lower case and operators may not).
bool origin_allowed(std::string_view allowed, std::string_view origin) {
  while (!allowed.empty()) {
    const std::string_view one = allowed.substr(0, allowed.find(','));
    if (beast::iequals(one, origin)) return true;
    allowed = one.size() == allowed.size() ? std::string_view() : allowed.substr(one.size() + 1);
  }
  return false;
}

// ------------------------------------------------------------------ tls

class TlsLink final : public StreamLink, public std::enable_shared_from_this<TlsLink> {
 public:
  TlsLink(tcp::socket socket, std::shared_ptr<asio::ssl::context> tls)
      : tls_(std::move(tls)), stream_(std::move(socket), *tls_) {}

  Kind kind() const noexcept override { return Kind::kTls; }

  void open(std::span<const std::byte> first, OpenHandler done) override {
    first_.assign(first.begin(), first.end());  // the handshake reads it later
    stream_.async_handshake(
        asio::ssl::stream_base::server, asio::buffer(first_),
        [self = shared_from_this(), done = std::move(done)](error_code ec, std::size_t) {
          std::vector<std::byte>().swap(self->first_);
          if (ec) {
            done(Failure::kTls, ec.message());
          } else {
            done(Failure::kNone, {});
          }
        });
  }

  void read(ReadHandler done) override {
    reading_ = true;
    stream_.async_read_some(
        asio::buffer(buffer_),
        [self = shared_from_this(), done = std::move(done)](error_code ec, std::size_t n) {
          self->reading_ = false;
          if (!ec) {
            done(Input::kBytes, std::span<const std::byte>(self->buffer_.data(), n));
          } else {
            done(is_close(ec) ? Input::kClosed : Input::kError, {});
          }
          if (self->close_done_ && !self->shutting_down_) self->shut_down();
        });
  }

  void write(std::vector<std::byte> frames, WriteHandler done) override {
    out_ = std::move(frames);
    asio::async_write(
        stream_, asio::buffer(out_),
        [self = shared_from_this(), done = std::move(done)](error_code ec, std::size_t n) {
          std::vector<std::byte>().swap(self->out_);
          done(!ec, n);
        });
  }

  std::size_t writing_bytes() const noexcept override { return out_.size(); }

  /// close_notify: the pending read (one at a time on the stream) is
  /// cancelled first, and the shutdown starts when it has ended.
  void close_gracefully(std::string_view /*reason*/, CloseHandler done) override {
    close_done_ = std::move(done);
    if (reading_) {
      error_code ec;
      stream_.next_layer().cancel(ec);
      return;
    }
    shut_down();
  }

  void close() noexcept override {
    error_code ec;
    stream_.next_layer().close(ec);
  }

 private:
  void shut_down() {
    shutting_down_ = true;
    stream_.async_shutdown([self = shared_from_this()](error_code) {
      const CloseHandler done = std::move(self->close_done_);
      if (done) done();
    });
  }

  std::shared_ptr<asio::ssl::context> tls_;  // before stream_, which uses it
  SslStream stream_;
  std::vector<std::byte> first_;
  std::array<std::byte, kTlsReadBytes> buffer_;
  std::vector<std::byte> out_;
  CloseHandler close_done_;
  bool reading_ = false;
  bool shutting_down_ = false;
};

// ------------------------------------------------------------------ ws, wss

/// `Next`: tcp::socket (ws) or the TLS stream over it (wss).
template <class Next>
class WsLink final : public StreamLink, public std::enable_shared_from_this<WsLink<Next>> {
  static constexpr bool kSecure = std::is_same_v<Next, SslStream>;

 public:
  template <class... NextArgs>
  WsLink(std::shared_ptr<asio::ssl::context> tls, Options options, NextArgs&&... next)
      : tls_(std::move(tls)), options_(std::move(options)), ws_(std::forward<NextArgs>(next)...) {}

  Kind kind() const noexcept override { return kSecure ? Kind::kWss : Kind::kWs; }

  void open(std::span<const std::byte> first, OpenHandler done) override {
    open_done_ = std::move(done);
    if constexpr (kSecure) {
      first_.assign(first.begin(), first.end());
      ws_.next_layer().async_handshake(
          asio::ssl::stream_base::server, asio::buffer(first_),
          [self = this->shared_from_this()](error_code ec, std::size_t used) {
            if (ec) {
              self->fail(Failure::kTls, ec.message());
              return;
            }
            // What came after the handshake's records is the request's start.
            self->buffer(std::span(self->first_).subspan(used));
            std::vector<std::byte>().swap(self->first_);
            self->read_request();
          });
    } else {
      buffer(first);
      read_request();
    }
  }

  void read(ReadHandler done) override {
    // The message lands after two bytes that become its frame's size. A
    // buffer a large message grew is given back (the last one is consumed).
    if (rx_.capacity() > kKeptReadBytes) rx_ = beast::flat_buffer();
    rx_.clear();
    rx_.commit(asio::buffer_copy(rx_.prepare(protocol::kSizeBytes),
                                 asio::buffer("\0\0", protocol::kSizeBytes)));
    ws_.async_read(rx_, [self = this->shared_from_this(), done = std::move(done)](error_code ec,
                                                                                  std::size_t n) {
      if (ec == websocket::error::message_too_big) {
        done(Input::kTooLarge, {});
      } else if (ec) {
        done(is_close(ec) ? Input::kClosed : Input::kError, {});
      } else if (!self->ws_.got_binary()) {
        done(Input::kText, {});
      } else {
        auto* frame = static_cast<std::byte*>(self->rx_.data().data());
        store_u16(frame, static_cast<std::uint16_t>(n));
        // (done() may start the next read: nothing of rx_ is touched after it.)
        done(Input::kBytes, std::span<const std::byte>(frame, protocol::kSizeBytes + n));
      }
    });
  }

  void write(std::vector<std::byte> frames, WriteHandler done) override {
    out_ = std::move(frames);
    out_at_ = 0;
    write_done_ = std::move(done);
    write_next();
  }

  std::size_t writing_bytes() const noexcept override { return out_.size() - out_at_; }

  void close_gracefully(std::string_view reason, CloseHandler done) override {
    ws_.async_close(
        websocket::close_reason(websocket::close_code::normal, reason),
        [self = this->shared_from_this(), done = std::move(done)](error_code) { done(); });
  }

  void close() noexcept override {
    error_code ec;
    beast::get_lowest_layer(ws_).close(ec);
  }

 private:
  void buffer(std::span<const std::byte> bytes) {
    request_buffer_.commit(asio::buffer_copy(request_buffer_.prepare(bytes.size()),
                                             asio::buffer(bytes.data(), bytes.size())));
  }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(kRequestHeaderLimit);
    parser_->body_limit(0);
    http::async_read(ws_.next_layer(), request_buffer_, *parser_,
                     [self = this->shared_from_this()](error_code ec, std::size_t) {
                       if (ec) {
                         self->fail(Failure::kRequest, "unreadable request: " + ec.message());
                         return;
                       }
                       self->check_request();
                     });
  }

  void check_request() {
    const http::request<http::empty_body>& request = parser_->get();
    if (!websocket::is_upgrade(request)) {
      refuse(http::status::upgrade_required, Failure::kRequest, "not a WebSocket upgrade");
      return;
    }
    if (const auto origin = request.find(http::field::origin);
        !options_.allowed_origins.empty() && origin != request.end() &&
        !origin_allowed(options_.allowed_origins, origin->value())) {
      refuse(http::status::forbidden, Failure::kOrigin,
             "origin " + log_text(origin->value()) + " is not in ws-origins");
      return;
    }
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
      response.set(http::field::server, "gatehouse");
    }));
    ws_.read_message_max(options_.max_payload);
    ws_.auto_fragment(false);
    ws_.binary(true);
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind != websocket::frame_type::close && alive_) alive_();
    });
    ws_.async_accept(request, [self = this->shared_from_this()](error_code ec) {
      self->parser_.reset();
      self->request_buffer_ = beast::flat_buffer();  // its memory back
      if (ec) {
        self->fail(Failure::kRequest, "upgrade refused: " + ec.message());
        return;
      }
      const OpenHandler done = std::move(self->open_done_);
      done(Failure::kNone, {});
    });
  }

  /// Answers the request with `status` and `why`, then fails the open.
  void refuse(http::status status, Failure failure, std::string why) {
    auto response =
        std::make_shared<http::response<http::string_body>>(status, parser_->get().version());
    response->set(http::field::server, "gatehouse");
    response->set(http::field::content_type, "text/plain");
    if (status == http::status::upgrade_required) {
      response->set(http::field::upgrade, "websocket");
    }
    response->keep_alive(false);
    response->body() = why + "\n";
    response->prepare_payload();
    http::async_write(ws_.next_layer(), *response,
                      [self = this->shared_from_this(), response, failure, why = std::move(why)](
                          error_code, std::size_t) { self->fail(failure, why); });
  }

  void fail(Failure failure, std::string_view why) {
    const OpenHandler done = std::move(open_done_);
    done(failure, why);
  }

  /// One message per frame, in order; the payload without its size.
  void write_next() {
    if (out_at_ >= out_.size()) {
      const std::size_t n = out_.size();
      std::vector<std::byte>().swap(out_);
      out_at_ = 0;
      const WriteHandler done = std::move(write_done_);
      done(true, n);
      return;
    }
    const std::size_t payload = std::min<std::size_t>(load_u16(out_.data() + out_at_),
                                                      out_.size() - out_at_ - protocol::kSizeBytes);
    ws_.async_write(asio::buffer(out_.data() + out_at_ + protocol::kSizeBytes, payload),
                    [self = this->shared_from_this(), payload](error_code ec, std::size_t) {
                      if (ec) {
                        const std::size_t written = self->out_at_;
                        std::vector<std::byte>().swap(self->out_);
                        self->out_at_ = 0;
                        const WriteHandler done = std::move(self->write_done_);
                        done(false, written);
                        return;
                      }
                      self->out_at_ += protocol::kSizeBytes + payload;
                      self->write_next();
                    });
  }

  std::shared_ptr<asio::ssl::context> tls_;  // before ws_, whose TLS stream uses it
  Options options_;
  websocket::stream<Next> ws_;
  std::vector<std::byte> first_;
  beast::flat_buffer request_buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  OpenHandler open_done_;
  beast::flat_buffer rx_;
  std::vector<std::byte> out_;
  std::size_t out_at_ = 0;
  WriteHandler write_done_;
};

}  // namespace

std::shared_ptr<StreamLink> StreamLink::make(Kind kind, tcp::socket socket,
                                             std::shared_ptr<asio::ssl::context> tls,
                                             Options options) {
  switch (kind) {
    case Kind::kTls:
      return std::make_shared<TlsLink>(std::move(socket), std::move(tls));
    case Kind::kWs:
      return std::make_shared<WsLink<tcp::socket>>(nullptr, std::move(options), std::move(socket));
    case Kind::kWss: {
      asio::ssl::context& context = *tls;
      return std::make_shared<WsLink<SslStream>>(std::move(tls), std::move(options),
                                                 std::move(socket), context);
    }
  }
  return nullptr;
}

std::string_view name_of(StreamLink::Kind kind) noexcept {
  switch (kind) {
    case StreamLink::Kind::kTls:
      return "tls";
    case StreamLink::Kind::kWs:
      return "ws";
    case StreamLink::Kind::kWss:
      return "wss";
  }
  return "unknown";
}

}  // namespace gatehouse::frontend
