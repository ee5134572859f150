#include "gatehouse/supervisor/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstdlib>
#include <exception>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>

#include "gatehouse/base/log.h"
#include "gatehouse/supervisor/listen_socket.h"

namespace gatehouse::supervisor {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

/// How long accepting pauses when the process is out of file descriptors.
constexpr std::chrono::milliseconds kAcceptRetry{100};

/// The protocol of a bound socket, for Asio.
tcp protocol_of(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
}

/// A read error that is the peer's request's fault (worth a 4xx), or
/// nullopt when there is nobody to answer (closed, reset, timed out).
std::optional<http::status> refusal_for(const beast::error_code& ec) {
  if (ec == http::error::header_limit) return http::status::request_header_fields_too_large;
  if (ec == http::error::body_limit) return http::status::payload_too_large;
  if (ec == http::error::buffer_overflow) return http::status::request_header_fields_too_large;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;
  if (ec.category() == make_error_code(http::error::bad_target).category()) {
    return http::status::bad_request;
  }
  return std::nullopt;
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(int listening_fd, Handler handler, Limits limits)
      : handler_(std::move(handler)),
        limits_(limits),
        port_(port_of(listening_fd)),
        protocol_(protocol_of(listening_fd)),
        acceptor_(io_, protocol_, listening_fd),
        accept_retry_(io_) {
    wait_for_peers();
    thread_ = std::thread([this] { run(); });
  }

  ~Impl() {
    try {
      asio::post(io_, [this] {
        stopping_ = true;
        beast::error_code ignored;
        acceptor_.close(ignored);
        accept_retry_.cancel();
        for (Connection* c : connections_) c->close();
      });
      thread_.join();  // run() returns once every operation has ended
    } catch (const std::exception& e) {
      give_up("cannot stop", e);
    }
  }

  std::uint16_t port() const { return port_; }

 private:
  /// One peer: read a request, answer it, again while it keeps the
  /// connection alive. Owned by its operation in flight (there is always one
  /// until it ends).
  class Connection : public std::enable_shared_from_this<Connection> {
   public:
    Connection(Impl& server, tcp::socket socket)
        : server_(server),
          stream_(std::move(socket)),
          buffer_(std::size_t{server.limits_.header_bytes} + server.limits_.body_bytes) {
      server_.connections_.insert(this);
    }
    ~Connection() { server_.closed(*this); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void start() { read_request(); }
    /// Ends it: its operation in flight completes with an error.
    void close() { stream_.close(); }

   private:
    void read_request() {
      parser_.emplace();
      parser_->header_limit(server_.limits_.header_bytes);
      parser_->body_limit(server_.limits_.body_bytes);
      // One deadline for the whole request, however it trickles in.
      stream_.expires_after(server_.limits_.request_timeout);
      http::async_read(stream_, buffer_, *parser_,
                       beast::bind_front_handler(&Connection::on_request, shared_from_this()));
    }

    void on_request(beast::error_code ec, std::size_t) {
      if (ec) {
        if (const auto status = refusal_for(ec)) {
          respond(11, false,
                  {.status = static_cast<unsigned>(*status),
                   .body = std::string(http::obsolete_reason(*status)) + "\n"});
        }
        return;  // otherwise it closes here
      }
      const http::request<http::string_body>& request = parser_->get();
      const bool head = request.method() == http::verb::head;
      if (!head && request.method() != http::verb::get) {
        response_.set(http::field::allow, "GET, HEAD");
        respond(request.version(), request.keep_alive(),
                {.status = static_cast<unsigned>(http::status::method_not_allowed),
                 .body = "method not allowed\n"});
        return;
      }
      std::string_view path = request.target();
      path = path.substr(0, path.find('?'));
      Response answer;
      try {
        answer = server_.handler_(path);
      } catch (const std::exception& e) {
        spdlog::error("metrics endpoint: {} failed: {}", path, e.what());
        answer = {.status = 500, .body = "internal error\n"};
      }
      respond(request.version(), request.keep_alive(), std::move(answer), head);
    }

    void respond(unsigned version, bool keep_alive, Response answer, bool head = false) {
      response_.result(answer.status);
      response_.version(version);
      response_.keep_alive(keep_alive);
      response_.set(http::field::content_type, answer.content_type);
      response_.set(http::field::cache_control, "no-store");
      response_.body() = std::move(answer.body);
      response_.prepare_payload();
      if (head) response_.body().clear();  // Content-Length stays the GET's
      stream_.expires_after(server_.limits_.write_timeout);
      http::async_write(stream_, response_,
                        beast::bind_front_handler(&Connection::on_written, shared_from_this()));
    }

    void on_written(beast::error_code ec, std::size_t) {
      if (ec) return;
      if (!response_.keep_alive()) {
        // The peer reads to the end of the response, then sees the close.
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        return;
      }
      response_ = {};
      read_request();
    }

    Impl& server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;  // bounded: header and body limits
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
  };

  void run() {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("metrics endpoint: {}", e.what());
      }
    }
  }

  /// Waits for the next peers, unless at the connection cap (then the
  /// kernel queues them until a connection closes).
  void wait_for_peers() {
    if (waiting_ || stopping_ || connections_.size() >= limits_.max_connections) return;
    waiting_ = true;
    acceptor_.async_wait(tcp::acceptor::wait_read, [this](beast::error_code ec) {
      waiting_ = false;
      if (!ec) {
        accept_peers();
      } else if (ec != asio::error::operation_aborted) {
        spdlog::error("metrics endpoint: waiting for connections: {}", ec.message());
        retry_accept_later();
      }
    });
  }

  /// Waits a moment before accepting again (out of descriptors, or the
  /// listener failed): the peers wait in the listen queue meanwhile.
  void retry_accept_later() {
    accept_retry_.expires_after(kAcceptRetry);
    accept_retry_.async_wait([this](beast::error_code ec) {
      if (!ec) wait_for_peers();
    });
  }

  /// Takes what the listen queue holds, up to the cap. accept4() rather than
  /// Asio's accept: the socket must be close-on-exec from its first moment,
  /// since the supervisor's loop forks children meanwhile.
  void accept_peers() {
    while (!stopping_ && connections_.size() < limits_.max_connections) {
      const int fd =
          ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          retry_accept_later();
          return;
        }
        break;  // EAGAIN: the queue is empty
      }
      tcp::socket socket(io_);
      beast::error_code ec;
      socket.assign(protocol_, fd, ec);
      if (ec) {
        ::close(fd);
        continue;
      }
      std::make_shared<Connection>(*this, std::move(socket))->start();
    }
    wait_for_peers();
  }

  /// A connection has ended: its place is free.
  void closed(Connection& c) noexcept {
    connections_.erase(&c);
    try {
      wait_for_peers();
    } catch (const std::exception& e) {
      give_up("cannot wait for connections", e);
    }
  }

  /// Out of memory (or threads) where the server cannot go on without
  /// leaving the endpoint dead for good: the error policy's crash.
  [[noreturn]] static void give_up(const char* what, const std::exception& e) noexcept {
    spdlog::critical("metrics endpoint: {}: {}", what, e.what());
    std::abort();
  }

  const Handler handler_;
  const Limits limits_;
  const std::uint16_t port_;
  const tcp protocol_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  // The server's thread only (and the destructor's post).
  std::unordered_set<Connection*> connections_;
  bool waiting_ = false;  // an async_wait for peers is in flight
  bool stopping_ = false;
  std::thread thread_;  // last: it starts once the rest is built
};

HttpServer::HttpServer(int listening_fd, Handler handler, Limits limits)
    : impl_(std::make_unique<Impl>(listening_fd, std::move(handler), limits)) {}

HttpServer::~HttpServer() = default;

std::uint16_t HttpServer::port() const {
  return impl_->port();
}

}  // namespace gatehouse::supervisor
