// The v2 wire (etcd_wire.h): etcd's v2 keys API over HTTP/1.1 (Boost.Beast),
// as gonet2's agent used it; etcd 3.4 serves it with --enable-v2.
//   read   GET /v2/keys/ROOT?recursive=true: the tree, and the store's
//          index in X-Etcd-Index; a ROOT that does not exist (errorCode
//          100) is an empty tree at that index.
//   watch  GET /v2/keys/ROOT?wait=true&recursive=true&waitIndex=N, a long
//          poll answered with the first change under ROOT made at N or
//          later; then again from that change's modifiedIndex + 1. etcd
//          keeps its last 1000 changes (of the whole store): an N older is
//          errorCode 401, outdated. A long poll that ends with no body (a
//          proxy's timeout) is made again from the same N.
// Blocking calls on the discovery's thread, made of asynchronous ones on an
// io_context of the wire's own, so that each step has a deadline and stop()
// (any thread) ends a long poll at once. A long poll has no deadline: TCP
// keepalive notices a peer that vanished. Replies are bounded (kMaxBody) and
// every one that cannot be used is logged and counted (bad replies).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <optional>

#include "gatehouse/base/log.h"
#include "gatehouse/bridge/etcd_v2_json.h"
#include "gatehouse/bridge/etcd_wire.h"

namespace gatehouse::bridge {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

/// Resolving, connecting, sending, and a watch's reply header (etcd sends it
/// at once, before the change it waits for) each within this.
constexpr std::chrono::milliseconds kStepTimeout{3000};
/// A long poll that ends with no change sooner than this is not one.
constexpr std::chrono::milliseconds kShortestPoll{1000};
/// The most a reply may hold: a tree of some 50,000 instances.
constexpr std::uint64_t kMaxBody = 8u << 20;
/// TCP keepalive of a long poll: a silent peer is given up after about
/// kKeepIdle + kKeepCount * kKeepInterval seconds (as v3's gRPC keepalive).
constexpr int kKeepIdle = 10;
constexpr int kKeepInterval = 5;
constexpr int kKeepCount = 2;

/// The path of a key: bytes other than unreserved ones and '/' escaped.
std::string escaped_path(std::string_view key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || c == '/') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

/// "HOST:PORT", "[V6]:PORT" -> host and port.
std::pair<std::string, std::string> host_port(const std::string& endpoint) {
  const std::size_t colon = endpoint.rfind(':');
  std::string host = endpoint.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return {host, colon == std::string::npos ? "" : endpoint.substr(colon + 1)};
}

class EtcdV2Wire final : public EtcdWire {
 public:
  EtcdV2Wire(const std::vector<std::string>& endpoints, std::string root) : endpoints_(endpoints) {
    while (root.size() > 1 && root.back() == '/') root.pop_back();
    root_ = root;
    path_ = "/v2/keys" + escaped_path(root == "/" ? "/" : root);
  }

  const char* index_name() const override { return "index"; }

  bool read(std::size_t e, std::chrono::milliseconds timeout, EtcdTree* tree,
            std::string* error) override {
    const Clock::time_point deadline = Clock::now() + timeout;
    if (!begin(e, path_ + "?recursive=true", deadline, error)) return false;
    if (const error_code ec = step(deadline, [&](auto done) {
          http::async_read(socket_, buffer_, *parser_,
                           [done](error_code read, std::size_t) mutable { done(read); });
        })) {
      *error = failure(e, ec);
      return false;
    }
    const auto& response = parser_->get();
    etcd_v2::Reply reply;
    if (std::string why = etcd_v2::parse(response.body(), true, &reply); !why.empty()) {
      *error = bad_reply(e, response.result_int(), "its tree", why);
      return false;
    }
    const std::optional<std::int64_t> index = etcd_index();
    if (reply.error_code == etcd_v2::kKeyNotFound) {
      // No ROOT yet: nothing registered. Watching it is fine.
      tree->keys.clear();
      tree->index = index.value_or(reply.index);
      return true;
    }
    if (reply.error_code != 0 || response.result_int() != 200) {
      *error = bad_reply(e, response.result_int(), "its tree", error_text(reply));
      return false;
    }
    if (!index) {
      *error = bad_reply(e, 200, "its tree", "no X-Etcd-Index header");
      return false;
    }
    tree->keys.clear();
    for (etcd_v2::Node& key : reply.keys) {
      tree->keys.push_back({std::move(key.key), std::move(key.value), false, key.modified_index});
    }
    tree->index = *index;
    last_bad_.clear();
    return true;
  }

  WatchEnd watch(std::size_t e, std::int64_t from, Sink& sink) override {
    bool established = false;
    for (;;) {
      const std::string target =
          path_ + "?wait=true&recursive=true&waitIndex=" + std::to_string(from);
      const Clock::time_point asked = Clock::now();
      const Clock::time_point deadline = asked + kStepTimeout;
      std::string error;
      if (!begin(e, target, deadline, &error)) {
        if (stopped_) return WatchEnd::kStopped;
        spdlog::debug("etcd {}: watch failed: {}", endpoints_[e], error);
        return WatchEnd::kBroken;
      }
      const unsigned status = parser_->get().result_int();
      // An answer at once (an error) has its body now; a long poll's comes
      // with the change, whenever that is.
      const std::optional<Clock::time_point> body_by =
          status == 200 ? std::nullopt : std::optional(deadline);
      if (status == 200 && !established) {
        established = true;
        sink.watching();
      }
      if (const error_code ec = step(body_by, [&](auto done) {
            http::async_read(socket_, buffer_, *parser_,
                             [done](error_code read, std::size_t) mutable { done(read); });
          })) {
        if (stopped_) return WatchEnd::kStopped;
        error = failure(e, ec);
        spdlog::debug("etcd {}: watch ended: {}", endpoints_[e], error);
        return WatchEnd::kBroken;
      }
      const std::string& body = parser_->get().body();
      if (status == 200 && body.find_first_not_of(" \r\n\t") == std::string::npos) {
        // The long poll ended with no change (a proxy's timeout): again. One
        // that ends at once is no long poll (made again at once, it would
        // spin): a bad reply, tried again after a pause.
        if (Clock::now() - asked < kShortestPoll) {
          bad_reply(e, status, "a change", "an empty reply at once");
          return WatchEnd::kBroken;
        }
        continue;
      }
      etcd_v2::Reply reply;
      if (std::string why = etcd_v2::parse(body, false, &reply); !why.empty()) {
        bad_reply(e, status, "a change", why);
        return status == 200 ? reading_again(e) : WatchEnd::kBroken;
      }
      if (reply.error_code == etcd_v2::kEventIndexCleared) {
        spdlog::warn(
            "etcd {}: index {} was cleared (etcd keeps its last 1000 changes; it is at "
            "{}): reading {} again",
            endpoints_[e], from, reply.index, root_);
        return WatchEnd::kOutdated;
      }
      if (reply.error_code != 0 || status != 200) {
        bad_reply(e, status, "a change", error_text(reply));
        return WatchEnd::kBroken;
      }
      const std::optional<bool> puts = etcd_v2::action_puts(reply.action);
      if (!puts) {
        bad_reply(e, status, "a change", "an unknown action '" + reply.action + "'");
        return reading_again(e);
      }
      if (reply.node.modified_index < from) {
        bad_reply(e, status, "a change",
                  "modifiedIndex " + std::to_string(reply.node.modified_index) +
                      " is before the index waited for");
        return reading_again(e);
      }
      last_bad_.clear();
      from = reply.node.modified_index + 1;
      std::optional<std::string> value;
      if (*puts) value = reply.node.value.value_or("");
      sink.changes({{std::move(reply.node.key), std::move(value), reply.node.dir, from - 1}});
    }
  }

  void stop() override {
    stopped_ = true;
    // Run on the thread that runs ioc_ (the only one that touches the
    // socket): now if it is in a step, else at the next one.
    asio::post(ioc_, [this] { abort(); });
  }

 private:
  /// Connects to endpoint `e`, sends GET `target` and reads the reply's
  /// header, each by `deadline`. False (with `error`) when it failed.
  bool begin(std::size_t e, const std::string& target, Clock::time_point deadline,
             std::string* error) {
    error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
    parser_.emplace();
    parser_->body_limit(kMaxBody);
    const std::pair<std::string, std::string> where = host_port(endpoints_[e]);
    tcp::resolver::results_type addresses;
    error_code ec = step(deadline, [&](auto done) {
      resolver_.async_resolve(
          where.first, where.second,
          [&addresses, done](error_code resolved, tcp::resolver::results_type r) mutable {
            addresses = std::move(r);
            done(resolved);
          });
    });
    if (!ec) {
      ec = step(deadline, [&](auto done) {
        asio::async_connect(
            socket_, addresses,
            [done](error_code connected, const tcp::endpoint&) mutable { done(connected); });
      });
    }
    if (!ec) {
      keep_alive();
      request_.emplace(http::verb::get, target, 11);
      request_->set(http::field::host, endpoints_[e]);
      request_->set(http::field::user_agent, "gatehouse-bridge");
      ec = step(deadline, [&](auto done) {
        http::async_write(socket_, *request_,
                          [done](error_code read, std::size_t) mutable { done(read); });
      });
    }
    if (!ec) {
      ec = step(deadline, [&](auto done) {
        http::async_read_header(socket_, buffer_, *parser_,
                                [done](error_code read, std::size_t) mutable { done(read); });
      });
    }
    if (ec) *error = failure(e, ec);
    return !ec;
  }

  /// Runs one asynchronous operation, which `start` begins with a handler
  /// to call with its result, to its end: by `deadline` (none: as long as
  /// it takes), or until stop().
  template <class Start>
  error_code step(std::optional<Clock::time_point> deadline, Start start) {
    if (stopped_) return asio::error::operation_aborted;
    std::optional<error_code> result;
    bool timed_out = false;
    start([this, &result](error_code ec) {
      result = ec;
      timer_.cancel();
    });
    if (deadline) {
      timer_.expires_at(*deadline);
      timer_.async_wait([this, &result, &timed_out](error_code ec) {
        if (ec || result) return;
        timed_out = true;
        abort();
      });
    }
    ioc_.restart();
    ioc_.run();
    if (stopped_) return asio::error::operation_aborted;
    if (timed_out) return asio::error::timed_out;
    return result.value_or(asio::error::operation_aborted);
  }

  /// Ends the operation in progress (on ioc_'s thread).
  void abort() {
    error_code ignored;
    resolver_.cancel();
    socket_.cancel(ignored);
    socket_.close(ignored);
  }

  void keep_alive() {
    error_code ignored;
    socket_.set_option(asio::socket_base::keep_alive(true), ignored);
    const int fd = socket_.native_handle();
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &kKeepIdle, sizeof kKeepIdle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &kKeepInterval, sizeof kKeepInterval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &kKeepCount, sizeof kKeepCount);
  }

  /// The reply's X-Etcd-Index, when it has a number there.
  std::optional<std::int64_t> etcd_index() const {
    const auto& headers = parser_->get();
    const auto it = headers.find("X-Etcd-Index");
    if (it == headers.end()) return std::nullopt;
    const std::string_view text = it->value();
    std::int64_t index = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
    if (ec != std::errc() || end != text.data() + text.size() || index < 0) return std::nullopt;
    return index;
  }

  /// What went wrong in a step; a reply over kMaxBody is a bad one.
  std::string failure(std::size_t e, error_code ec) {
    if (ec == http::error::body_limit) {
      return bad_reply(e, parser_->get().result_int(), "a reply",
                       "over " + std::to_string(kMaxBody) + " bytes");
    }
    if (ec == asio::error::timed_out) return "no answer within the time given";
    return ec.message();
  }

  /// Logs and counts a reply that cannot be used; its description. The
  /// same one again (a broken proxy answering each retry alike) is logged
  /// at debug level: counted, not flooding the log.
  std::string bad_reply(std::size_t e, unsigned status, std::string_view what,
                        const std::string& why) {
    count_bad_reply();
    std::string text = fmt::format("HTTP {}, {} that cannot be used: {}", status, what, why);
    spdlog::log(text == last_bad_ ? spdlog::level::debug : spdlog::level::warn, "etcd {}: {}",
                endpoints_[e], text);
    last_bad_ = text;
    return text;
  }

  /// A change that cannot be used may have changed the tree: read it again.
  WatchEnd reading_again(std::size_t e) {
    spdlog::warn("etcd {}: reading {} again", endpoints_[e], root_);
    return WatchEnd::kOutdated;
  }

  static std::string error_text(const etcd_v2::Reply& reply) {
    if (reply.error_code == 0) return "not an error, not a change";
    return "error " + std::to_string(reply.error_code) + " " + reply.message +
           (reply.cause.empty() ? "" : " (" + reply.cause + ")");
  }

  const std::vector<std::string> endpoints_;
  std::string root_;
  std::string path_;  // /v2/keys/ROOT
  std::atomic<bool> stopped_{false};
  // The thread that reads or watches.
  asio::io_context ioc_{1};
  tcp::resolver resolver_{ioc_};
  tcp::socket socket_{ioc_};
  asio::steady_timer timer_{ioc_};
  boost::beast::flat_buffer buffer_;
  std::optional<http::request<http::empty_body>> request_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::string last_bad_;  // the last bad reply's description; cleared by a good one
};

}  // namespace

std::unique_ptr<EtcdWire> make_etcd_v2_wire(const std::vector<std::string>& endpoints,
                                            const std::string& root) {
  return std::make_unique<EtcdV2Wire>(endpoints, root);
}

}  // namespace gatehouse::bridge
