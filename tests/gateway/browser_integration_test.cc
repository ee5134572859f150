// A real browser against the real gateway (issue 15, docs/websocket.md):
// headless Chromium (Debian's chromium, installed by tools/setup.sh) loads a
// page this test serves, which opens a WebSocket (ws, then wss) to the
// gateway, sends a heartbeat, logs in and has the game echo a message, all
// written from shared/protocol.md in a few lines of JavaScript; the page
// posts its result back to the test. The gateway allows only the page's
// origin (ws-origins), so the browser's Origin header is checked too.
#include <signal.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "fake_game_service.h"
#include "gateway_process.h"
#include "http_get.h"
#include "patience.h"
#include "test_certificate.h"

namespace gatehouse::testing {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

constexpr const char* kChromium = "/usr/bin/chromium";
// A browser's first start on a busy machine takes seconds; then the page's
// exchange takes milliseconds.
constexpr std::chrono::seconds kBrowserPatience{90};

// The client side of shared/protocol.md in a page: frames are binary
// messages `| seq u32 | proto i16 | body |` (docs/websocket.md).
constexpr const char* kPage = R"(<!doctype html>
<meta charset="utf-8"><title>gatehouse browser test</title>
<script>
const seen = [];
let reported = false;
function report(result) {
  if (reported) return;
  reported = true;
  fetch('/result', {method: 'POST', body: result + ' protos=' + seen.join(',')});
}
function frame(seq, proto, body) {
  const out = new Uint8Array(6 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, seq);
  view.setInt16(4, proto);
  out.set(body, 6);
  return out;
}
function cat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
function int32(n) { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, n); return b; }
function string(s) {
  const bytes = new TextEncoder().encode(s);
  const b = new Uint8Array(2 + bytes.length);
  new DataView(b.buffer).setUint16(0, bytes.length);
  b.set(bytes, 2);
  return b;
}
const login = cat(int32(0), string('browser-player'), string(''), int32(1), string('en'),
                  string('web'), string('chromium'), string('headless'), string('d1'), int32(0),
                  string(''));
const text = 'hello from the browser';
const ws = new WebSocket(new URLSearchParams(location.search).get('gateway'));
ws.binaryType = 'arraybuffer';
let seq = 0;
const send = (proto, body) => ws.send(frame(++seq, proto, body));
ws.onopen = () => send(0, int32(7));
ws.onmessage = (event) => {
  const view = new DataView(event.data);
  const proto = view.getInt16(0);
  const body = new Uint8Array(event.data, 2);
  seen.push(proto);
  if (proto === 1 && view.getInt32(2) === 7) send(10, login);
  else if (proto === 11) send(1001, new TextEncoder().encode(text));
  else if (proto === 1002) report(new TextDecoder().decode(body) === text ? 'ok' : 'bad echo');
  else report('unexpected proto ' + proto);
};
ws.onerror = () => report('websocket error');
ws.onclose = (event) => report('closed ' + event.code);
</script>
)";

/// Serves kPage at /page and takes the page's POST /result (Beast, a thread
/// per connection: a browser opens connections it sends nothing on yet).
class PageServer {
 public:
  PageServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this] { accept(); });
  }
  ~PageServer() {
    // shutdown() wakes the threads blocked in accept() and read(); close() alone does not.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
    {
      std::lock_guard lock(mu_);
      for (tcp::socket* s : sockets_) ::shutdown(s->native_handle(), SHUT_RDWR);
    }
    for (std::thread& t : connections_) t.join();
  }
  PageServer(const PageServer&) = delete;
  PageServer& operator=(const PageServer&) = delete;

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port()); }

  /// The page's report, once it posted one within `timeout`.
  std::optional<std::string> wait_result(std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [this] { return result_.has_value(); })) return std::nullopt;
    return result_;
  }

 private:
  void accept() {
    for (;;) {
      boost::system::error_code ec;
      auto socket = std::make_unique<tcp::socket>(acceptor_.accept(ec));
      if (ec) return;  // shut down
      std::lock_guard lock(mu_);
      sockets_.push_back(socket.get());
      connections_.emplace_back([this, s = std::move(socket)] { serve(*s); });
    }
  }

  void serve(tcp::socket& socket) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      boost::system::error_code ec;
      http::request<http::string_body> request;
      http::read(socket, buffer, request, ec);
      if (ec) break;
      http::response<http::string_body> response{http::status::ok, request.version()};
      response.set(http::field::content_type, "text/html; charset=utf-8");
      if (request.method() == http::verb::post && request.target() == "/result") {
        std::lock_guard lock(mu_);
        result_ = request.body();
        cv_.notify_all();
      } else if (request.target().starts_with("/page")) {
        response.body() = kPage;
      } else {
        response.result(http::status::not_found);
      }
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      http::write(socket, response, ec);
      if (ec || !request.keep_alive()) break;
    }
    std::lock_guard lock(mu_);
    std::erase(sockets_, &socket);
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<tcp::socket*> sockets_;     // open, for the destructor to shut down
  std::vector<std::thread> connections_;  // guarded by mu_ while thread_ runs
  std::optional<std::string> result_;
};

class Browser : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kChromium))
        << kChromium << " is missing: tools/setup.sh installs Debian's chromium";
    std::string pattern =
        (std::filesystem::temp_directory_path() / "gatehouse-browser-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    certificate_ = make_test_certificate(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  TestCertificate certificate_;
  FakeGameService game_{{.echo = true}};
  PageServer page_;
};

TEST_P(Browser, LogsInAndEchoesOverItsWebSocket) {
  const std::string& scheme = GetParam();
  GatewayOptions options{game_.port(), 1, {}, {}};
  options.listen = "127.0.0.1:0,transport=" + scheme;
  options.extra_args = {"--tls-cert",     certificate_.cert, "--tls-key",
                        certificate_.key, "--ws-origins",    page_.origin()};
  GatewayProcess gateway(options);
  const std::string url = page_.origin() + "/page?gateway=" + scheme +
                          "://127.0.0.1:" + std::to_string(gateway.port()) + "/";
  ChildProcess chromium({kChromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                         "--disable-extensions", "--user-data-dir=" + dir_ + "/profile",
                         // The test's own certificate (wss): trusted here, as a
                         // player's browser trusts a real one.
                         "--ignore-certificate-errors", url},
                        dir_ + "/chromium.log");
  const auto result = page_.wait_result(kBrowserPatience);
  chromium.kill(SIGTERM);
  (void)chromium.wait(kPatience);
  ASSERT_TRUE(result.has_value()) << "the page reported nothing\n" << gateway.log();
  EXPECT_EQ(*result, "ok protos=1,11,1002") << gateway.log();
  EXPECT_TRUE(gateway.wait_log("login conn=")) << gateway.log();
  EXPECT_EQ(metric_sample(http_get(gateway.metrics_port(), "/metrics"),
                          "gatehouse_handshakes_failed_total{reason=\"origin\"}"),
            0);
}

INSTANTIATE_TEST_SUITE_P(Chromium, Browser, ::testing::Values("ws", "wss"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace gatehouse::testing
