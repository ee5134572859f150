// HttpServer: the small HTTP/1.1 server of the metrics endpoint (/metrics,
// /healthz, /ready), on Boost.Beast, on a thread of its own so that neither a
// scrape nor a slow peer ever holds up the supervisor's loop.
//
// It faces a network, so everything a peer can make it hold is bounded:
//   - connections at once (max_connections): at the cap it stops accepting
//     and new peers wait in the kernel's listen queue until one closes;
//   - time: a request must arrive whole within request_timeout of the
//     moment the server starts waiting for it (a connection that sends
//     nothing, or too slowly, or idles between keep-alive requests, is
//     closed), and a response must be taken within write_timeout;
//   - size: a request's header within header_bytes and its body within
//     body_bytes (431 / 413, then the connection closes).
// GET and HEAD only (405 otherwise, with Allow); what a path answers is the
// handler's. Keep-alive as the request asks (HTTP/1.1 by default).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace gatehouse::supervisor {

class HttpServer {
 public:
  struct Response {
    unsigned status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  /// Answers a GET (or HEAD: the body is not sent) of `path`, the target
  /// without its query. Runs on the server's thread; an exception becomes a
  /// 500.
  using Handler = std::function<Response(std::string_view path)>;

  struct Limits {
    std::size_t max_connections = 16;
    std::chrono::milliseconds request_timeout{2000};
    std::chrono::milliseconds write_timeout{2000};
    std::uint32_t header_bytes = 8192;
    std::uint32_t body_bytes = 1024;
  };

  /// Serves on `listening_fd` (a bound, listening, non-blocking TCP socket,
  /// which it takes over) from a thread it starts.
  HttpServer(int listening_fd, Handler handler, Limits limits);
  /// Closes the listener and every connection, then joins the thread.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// The port it listens on.
  std::uint16_t port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gatehouse::supervisor
