// EtcdDiscovery against a real etcd (Debian's etcd-server, /usr/bin/etcd),
// started by the test on free loopback ports in a temp dir: the first read,
// the watch (instances joining and leaving), etcd stopping and coming back
// (the view stays, goes stale, and catches up), and an unreachable etcd at
// start (a prompt false, never a hang).
#include "gatehouse/bridge/etcd_discovery.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "etcd_server.h"
#include "gatehouse/shm/doorbell.h"
#include "local_port.h"
#include "patience.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using testing::EtcdServer;
using testing::kPatience;

class EtcdDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdServer::available()) {
      GTEST_SKIP() << EtcdServer::kBinary << " is not installed (etcd-server)";
    }
    ASSERT_TRUE(etcd_.start());
  }

  void set(const std::string& key, const std::optional<std::string>& value) {
    std::string error;
    ASSERT_TRUE(etcd_.set(key, value, &error)) << error;
  }

  std::unique_ptr<EtcdDiscovery> discovery() {
    std::string error;
    DiscoveryOptions options{
        parse_etcd_endpoints(etcd_.url(), &error), "/backends", {"game-10000"}};
    EXPECT_EQ(error, "");
    return std::make_unique<EtcdDiscovery>(options, wakeup_);
  }

  /// The latest view once `done` holds for it (the views come whole).
  template <class Done>
  DiscoveryView wait_view(EtcdDiscovery& d, Done done) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < give_up) {
      if (auto view = d.take_view()) {
        last_ = *view;
        if (done(last_)) return last_;
      }
      doorbell_.wait(50ms);
    }
    ADD_FAILURE() << "the view never became what was expected";
    return last_;
  }

  EtcdServer etcd_;
  shm::Doorbell doorbell_ = shm::Doorbell::create();
  Wakeup wakeup_{doorbell_};
  DiscoveryView last_;
};

TEST_F(EtcdDiscoveryTest, ReadsTheTreeThenFollowsInstancesJoiningAndLeaving) {
  set("/backends/game-10000/game1", "127.0.0.1:7001");
  set("/backends/game-10000/game2", "127.0.0.1:7002");
  set("/backends/chat-1/chat1", "127.0.0.1:7100");     // not in services
  set("/backends/game-10000/deep/er", "127.0.0.1:1");  // not SERVICE/INSTANCE
  auto d = discovery();
  ASSERT_TRUE(d->read(5s));
  EXPECT_EQ(
      d->take_view(),
      (DiscoveryView{{"game-10000", {{"game1", "127.0.0.1:7001"}, {"game2", "127.0.0.1:7002"}}}}));
  d->start();
  const auto up_by = std::chrono::steady_clock::now() + kPatience;
  while (d->stale_since_ns() != 0 && std::chrono::steady_clock::now() < up_by)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(d->stale_since_ns(), 0);

  set("/backends/game-10000/game3", "127.0.0.1:7003");
  auto view = wait_view(*d, [](const DiscoveryView& v) {
    return v.count("game-10000") != 0 && v.at("game-10000").size() == 3;
  });
  EXPECT_EQ(view["game-10000"]["game3"], "127.0.0.1:7003");
  set("/backends/game-10000/game1", std::nullopt);
  view = wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 2; });
  EXPECT_EQ(view["game-10000"].count("game1"), 0u);
  const auto counts = d->take_counts();
  EXPECT_EQ(counts.puts, 1u);
  EXPECT_EQ(counts.deletes, 1u);
}

TEST_F(EtcdDiscoveryTest, KeepsTheViewWhileEtcdIsDownAndCatchesUpWhenItReturns) {
  set("/backends/game-10000/game1", "127.0.0.1:7001");
  auto d = discovery();
  ASSERT_TRUE(d->read(5s));
  d->start();
  set("/backends/game-10000/game2", "127.0.0.1:7002");
  wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 2; });

  etcd_.stop();
  const auto down_by = std::chrono::steady_clock::now() + kPatience;
  while (d->stale_since_ns() == 0 && std::chrono::steady_clock::now() < down_by)
    std::this_thread::sleep_for(10ms);
  EXPECT_NE(d->stale_since_ns(), 0) << "the view's age is not reported while etcd is down";
  EXPECT_FALSE(d->take_view().has_value()) << "the last known view stays as it was";

  ASSERT_TRUE(etcd_.start());
  // A change made as soon as etcd is back: the watch resumes from the
  // revision after the last event it saw, so it gets this one, and only once.
  set("/backends/game-10000/game3", "127.0.0.1:7003");
  set("/backends/game-10000/game2", std::nullopt);
  const auto view = wait_view(*d, [](const DiscoveryView& v) {
    return v.at("game-10000").size() == 2 && v.at("game-10000").count("game3") != 0;
  });
  EXPECT_EQ(view.at("game-10000"),
            (ServiceInstances{{"game1", "127.0.0.1:7001"}, {"game3", "127.0.0.1:7003"}}));
  const auto back_by = std::chrono::steady_clock::now() + kPatience;
  while (d->stale_since_ns() != 0 && std::chrono::steady_clock::now() < back_by)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(d->stale_since_ns(), 0);
  const auto counts = d->take_counts();
  EXPECT_EQ(counts.puts, 2u);  // game2 and game3, each once: nothing replayed
  EXPECT_EQ(counts.deletes, 1u);
}

TEST_F(EtcdDiscoveryTest, UnreachableEtcdAtStartIsAPromptNo) {
  std::string error;
  DiscoveryOptions options{
      parse_etcd_endpoints("http://127.0.0.1:" + std::to_string(testing::free_port()), &error),
      "/backends",
      {"game-10000"}};
  EtcdDiscovery d(options, wakeup_);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(d.read(1s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_NE(d.stale_since_ns(), 0);
}

}  // namespace
}  // namespace gatehouse::bridge
