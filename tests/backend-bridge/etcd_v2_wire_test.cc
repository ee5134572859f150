// The v2 wire (etcd-api = v2, backend-bridge/src/etcd_v2_wire.cc) against
// what a real etcd never sends: an HTTP server in the test (Boost.Beast)
// answers its requests from a script. A reply that cannot be used (not
// JSON, another shape, an HTTP error, no X-Etcd-Index, a body over the cap)
// is a failed read, logged and counted, never a crash; a long poll that
// ends with no body is made again from the same index (one that ends at
// once is a bad reply: tried again after a pause, never a spin); a change
// that cannot be used makes discovery read the tree again.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/bridge/etcd_discovery.h"
#include "gatehouse/shm/doorbell.h"
#include "patience.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using testing::kPatience;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

/// A reply of the script: status, body, X-Etcd-Index (none: -1); `hold`:
/// no reply, the connection kept open until the server goes.
struct Scripted {
  unsigned status = 200;
  std::string body;
  std::int64_t index = -1;
  bool hold = false;
};

/// One connection at a time, one request per connection (the wire makes a
/// connection per request), answered by `script` from the request's target.
class ScriptedEtcd {
 public:
  explicit ScriptedEtcd(std::function<Scripted(const std::string& target)> script)
      : script_(std::move(script)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedEtcd() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    held_.notify_all();
    // Wakes the accept with a connection of its own.
    boost::system::error_code ignored;
    tcp::socket poke(ioc_);
    poke.connect(acceptor_.local_endpoint(), ignored);
    thread_.join();
  }

  std::string endpoint() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  std::vector<std::string> targets() {
    std::lock_guard lock(mutex_);
    return targets_;
  }

 private:
  void serve() {
    for (;;) {
      tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
      }
      if (ec) continue;
      boost::beast::flat_buffer buffer;
      http::request<http::string_body> request;
      http::read(socket, buffer, request, ec);
      if (ec) continue;
      const std::string target(request.target());
      {
        std::lock_guard lock(mutex_);
        targets_.push_back(target);
      }
      const Scripted reply = script_(target);
      if (reply.hold) {
        std::unique_lock lock(mutex_);
        held_.wait(lock, [this] { return stopping_; });
        return;
      }
      http::response<http::string_body> response(static_cast<http::status>(reply.status), 11);
      response.set(http::field::content_type, "application/json");
      if (reply.index >= 0) response.set("X-Etcd-Index", std::to_string(reply.index));
      response.body() = reply.body;
      response.keep_alive(false);
      response.prepare_payload();
      http::write(socket, response, ec);
    }
  }

  std::function<Scripted(const std::string&)> script_;
  boost::asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  std::mutex mutex_;
  std::condition_variable held_;
  bool stopping_ = false;             // guarded by mutex_
  std::vector<std::string> targets_;  // guarded by mutex_
  std::thread thread_;
};

constexpr const char* kTree =
    R"({"action":"get","node":{"key":"/backends","dir":true,"nodes":[{"key":"/backends/game-10000",)"
    R"("dir":true,"nodes":[{"key":"/backends/game-10000/game1","value":"127.0.0.1:7001",)"
    R"("modifiedIndex":7,"createdIndex":7}],"modifiedIndex":7,"createdIndex":7}],)"
    R"("modifiedIndex":7,"createdIndex":7}})";

class EtcdV2WireTest : public ::testing::Test {
 protected:
  std::unique_ptr<EtcdDiscovery> discovery(const ScriptedEtcd& etcd) {
    DiscoveryOptions options{{etcd.endpoint()}, "/backends", {"game-10000"}, EtcdApi::kV2};
    return std::make_unique<EtcdDiscovery>(options, wakeup_);
  }

  shm::Doorbell doorbell_ = shm::Doorbell::create();
  Wakeup wakeup_{doorbell_};
};

TEST_F(EtcdV2WireTest, RepliesThatCannotBeUsedAreFailedReadsCounted) {
  const std::vector<Scripted> replies{
      {200, "this is not JSON", 7},
      {200, R"({"action":"get","node":{"key":5}})", 7},
      {200, R"([1, 2, 3])", 7},
      {200, R"({"action":"get","node":{"key":"/backends","dir":true,"nodes":{}}})", 7},
      {500, "internal error", 7},
      {403, R"({"errorCode":110,"message":"The request requires user authentication"})", 7},
      {200, kTree, -1},                             // no X-Etcd-Index
      {200, std::string(9u << 20, ' ') + "{}", 7},  // over the cap (8 MiB)
  };
  std::size_t next = 0;
  ScriptedEtcd etcd([&](const std::string&) { return replies[next++]; });
  auto d = discovery(etcd);
  for (std::size_t i = 0; i < replies.size(); ++i) {
    EXPECT_FALSE(d->read(5s)) << "reply " << i;
  }
  EXPECT_EQ(d->take_counts().bad_replies, replies.size());
  EXPECT_FALSE(d->take_view().has_value());
}

TEST_F(EtcdV2WireTest, ALongPollEndedWithNoBodyIsMadeAgainAndAnUnusableChangeMeansReadingAgain) {
  std::mutex mutex;
  int watches = 0;
  int reads = 0;
  ScriptedEtcd etcd([&](const std::string& target) -> Scripted {
    std::lock_guard lock(mutex);
    if (target.find("wait=true") == std::string::npos) {
      ++reads;
      return {200, kTree, reads == 1 ? 7 : 9};
    }
    switch (++watches) {
      case 1:  // a proxy ended the long poll (one that ends at once is a bad reply)
        std::this_thread::sleep_for(1200ms);
        return {200, "", -1};
      case 2:
        return {200,
                R"({"action":"set","node":{"key":"/backends/game-10000/game2",)"
                R"("value":"127.0.0.1:7002","modifiedIndex":8,"createdIndex":8}})",
                7};
      case 3:
        return {200, R"({"action":"set","node":"x"})", 8};  // unusable: read again
      default:
        return {.hold = true};
    }
  });
  auto d = discovery(etcd);
  ASSERT_TRUE(d->read(5s));
  ASSERT_TRUE(d->take_view().has_value());
  d->start();
  // The long poll ended with no body is made again from index 8; the
  // change it then brings (game2, at 8) applies, and the watch goes on from
  // 9; the next change cannot be used, so the tree is read again (at 9) and
  // the watch goes on from 10.
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  std::vector<std::string> targets;
  while (std::chrono::steady_clock::now() < give_up) {
    targets = etcd.targets();
    if (targets.size() >= 6) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(targets.size(), 6u);
  EXPECT_EQ(targets[0], "/v2/keys/backends?recursive=true");
  EXPECT_EQ(targets[1], "/v2/keys/backends?wait=true&recursive=true&waitIndex=8");
  EXPECT_EQ(targets[2], targets[1]) << "made again from the same index";
  EXPECT_EQ(targets[3], "/v2/keys/backends?wait=true&recursive=true&waitIndex=9");
  EXPECT_EQ(targets[4], "/v2/keys/backends?recursive=true");
  EXPECT_EQ(targets[5], "/v2/keys/backends?wait=true&recursive=true&waitIndex=10");
  // The view went through game2 and back to the tree read again (the views
  // come whole: the last is the one read again).
  DiscoveryView view;
  while (auto v = d->take_view()) view = *v;
  EXPECT_EQ(view, (DiscoveryView{{"game-10000", {{"game1", "127.0.0.1:7001"}}}}));
  const auto counts = d->take_counts();
  EXPECT_EQ(counts.puts, 1u);
  EXPECT_EQ(counts.bad_replies, 1u);
  EXPECT_EQ(counts.resyncs, 1u);
}

TEST_F(EtcdV2WireTest, ALongPollEndedAtOnceWithNoBodyIsABadReplyNotASpin) {
  std::atomic<int> watches = 0;
  ScriptedEtcd etcd([&](const std::string& target) -> Scripted {
    if (target.find("wait=true") == std::string::npos) return {200, kTree, 7};
    ++watches;
    return {200, "", -1};
  });
  auto d = discovery(etcd);
  ASSERT_TRUE(d->read(5s));
  d->start();
  // Each try is a bad reply, then a pause (200 ms doubling to 2 s): over a
  // second a few tries, where a spin would make thousands.
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (watches.load() < 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GE(watches.load(), 2);
  const int before = watches.load();
  std::this_thread::sleep_for(1s);
  EXPECT_LE(watches.load() - before, 4);
  EXPECT_GE(d->take_counts().bad_replies, 2u);
}

}  // namespace
}  // namespace gatehouse::bridge
