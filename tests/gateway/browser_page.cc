#include "browser_page.h"

#include <sys/socket.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <memory>

namespace gatehouse::testing {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

// The client side of shared/protocol.md in a page: frames are binary
// messages `| seq u32 | proto i16 | body |` (docs/websocket.md).
constexpr const char* kPage = R"(<!doctype html>
<meta charset="utf-8"><title>gatehouse browser test</title>
<script>
const seen = [];
let uid = 0;
let echoed = false;
function report(result) {
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
  if (proto === 1 && view.getInt32(2) === 7) {
    send(10, login);
  } else if (proto === 11) {
    uid = view.getInt32(2);
    send(1001, new TextEncoder().encode(text));
  } else if (proto === 1002) {
    // The echo, then what the game pushes.
    const got = new TextDecoder().decode(body);
    report(echoed ? 'pushed ' + got : (got === text ? 'ok uid=' : 'bad echo uid=') + uid);
    echoed = true;
  } else {
    report('unexpected proto ' + proto);
  }
};
ws.onerror = () => report('websocket error');
ws.onclose = (event) => report('closed ' + event.code);
</script>
)";

}  // namespace

PageServer::PageServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  thread_ = std::thread([this] { accept(); });
}

PageServer::~PageServer() {
  // shutdown() wakes the threads blocked in accept() and read(); close() alone does not.
  ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
  thread_.join();
  {
    std::lock_guard lock(mu_);
    for (tcp::socket* s : sockets_) ::shutdown(s->native_handle(), SHUT_RDWR);
  }
  for (std::thread& t : connections_) t.join();
}

std::optional<std::string> PageServer::wait_result(std::chrono::seconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [this] { return !results_.empty(); })) return std::nullopt;
  std::string result = std::move(results_.front());
  results_.pop_front();
  return result;
}

void PageServer::add(const std::string& path, std::string content_type, std::string body) {
  std::lock_guard lock(mu_);
  files_[path] = {std::move(content_type), std::move(body)};
}

void PageServer::accept() {
  for (;;) {
    boost::system::error_code ec;
    auto socket = std::make_unique<tcp::socket>(acceptor_.accept(ec));
    if (ec) return;  // shut down
    std::lock_guard lock(mu_);
    sockets_.push_back(socket.get());
    connections_.emplace_back([this, s = std::move(socket)] { serve(*s); });
  }
}

std::optional<std::pair<std::string, std::string>> PageServer::find_file(std::string_view target) {
  const std::string path(target.substr(0, target.find('?')));
  std::lock_guard lock(mu_);
  const auto it = files_.find(path);
  if (it == files_.end()) return std::nullopt;
  return it->second;
}

void PageServer::serve(tcp::socket& socket) {
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
      results_.push_back(request.body());
      cv_.notify_all();
    } else if (request.target().starts_with("/page")) {
      response.body() = kPage;
    } else if (const auto file = find_file(request.target())) {
      response.set(http::field::content_type, file->first);
      response.body() = file->second;
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

ChildProcess start_chromium(const std::string& url, const std::string& dir) {
  return ChildProcess(
      {kChromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
       "--no-first-run", "--no-default-browser-check", "--disable-extensions",
       "--user-data-dir=" + dir + "/profile", "--ignore-certificate-errors", url},
      dir + "/chromium.log");
}

}  // namespace gatehouse::testing
