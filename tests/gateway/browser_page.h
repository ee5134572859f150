// A page for a real browser (headless Chromium, Debian's chromium, installed
// by tools/setup.sh), served by the test: it opens a WebSocket to the
// gateway its URL names (`/page?gateway=wss://HOST:PORT/`), sends a
// heartbeat, logs in and has the game echo a message, all written from
// shared/protocol.md in a few lines of JavaScript, and posts what happened
// back to the test: "ok uid=U protos=1,11,1002" after the echo, then
// "pushed TEXT protos=..." for each 1002 the game pushes, and "closed CODE
// protos=..." when the gateway closes (a kick).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.h"

namespace gatehouse::testing {

inline constexpr const char* kChromium = "/usr/bin/chromium";
// A browser's first start on a busy machine takes seconds; then the page's
// exchange takes milliseconds.
inline constexpr std::chrono::seconds kBrowserPatience{90};

/// Serves the page at /page and takes its POSTs to /result (Beast, a thread
/// per connection: a browser opens connections it sends nothing on yet).
class PageServer {
 public:
  PageServer();
  ~PageServer();
  PageServer(const PageServer&) = delete;
  PageServer& operator=(const PageServer&) = delete;

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port()); }
  /// The page's URL for a gateway at `gateway_url` (ws://... or wss://...).
  std::string page_for(const std::string& gateway_url) const {
    return origin() + "/page?gateway=" + gateway_url;
  }

  /// Serves `body` at `path` too (another test's page, and its scripts).
  void add(const std::string& path, std::string content_type, std::string body);

  /// The page's next report, once it posted one within `timeout`.
  std::optional<std::string> wait_result(std::chrono::seconds timeout);

 private:
  void accept();
  void serve(boost::asio::ip::tcp::socket& socket);
  std::optional<std::pair<std::string, std::string>> find_file(std::string_view target);

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<boost::asio::ip::tcp::socket*> sockets_;  // open, for the destructor to shut down
  std::vector<std::thread> connections_;                // guarded by mu_ while thread_ runs
  std::deque<std::string> results_;                     // posted, not yet taken
  std::map<std::string, std::pair<std::string, std::string>> files_;  // path: type, body
};

/// Headless Chromium on `url`, its profile and log in `dir`; it trusts any
/// certificate (the test's own, for wss), as a player's browser trusts a
/// real one.
ChildProcess start_chromium(const std::string& url, const std::string& dir);

}  // namespace gatehouse::testing
