// EtcdDiscovery against a real etcd (Debian's etcd-server, /usr/bin/etcd),
// started by the test on free loopback ports in a temp dir, over each of
// its APIs (etcd-api = v3, and v2: etcd started with --enable-v2 and the
// keys written through the v2 keys API): the first read, the watch
// (instances joining and leaving, a service's directory deleted whole),
// etcd stopping and coming back (the view stays, goes stale, and catches
// up, with no change missed or applied twice), and an unreachable etcd at
// start (a prompt false, never a hang). v2 only: a root that does not
// exist yet, and a watch from an index etcd has cleared from its history
// (the tree read again).
#include "gatehouse/bridge/etcd_discovery.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "etcd_server.h"
#include "gatehouse/shm/doorbell.h"
#include "local_port.h"
#include "patience.h"

namespace gatehouse::bridge {
namespace {

using namespace std::chrono_literals;
using testing::EtcdServer;
using testing::kPatience;

class EtcdDiscoveryTest : public ::testing::TestWithParam<EtcdApi> {
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

  std::unique_ptr<EtcdDiscovery> discovery(std::vector<std::string> services = {"game-10000"}) {
    std::string error;
    DiscoveryOptions options{parse_etcd_endpoints(etcd_.url(), &error), "/backends",
                             std::move(services), GetParam()};
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

  /// Waits until the watch is up (or down: `up` false).
  static bool wait_watching(const EtcdDiscovery& d, bool up) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while ((d.stale_since_ns() == 0) != up) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

  EtcdServer etcd_{GetParam()};
  shm::Doorbell doorbell_ = shm::Doorbell::create();
  Wakeup wakeup_{doorbell_};
  DiscoveryView last_;
};

std::string api_name(const ::testing::TestParamInfo<EtcdApi>& info) {
  return std::string(etcd_api_text(info.param));
}

INSTANTIATE_TEST_SUITE_P(Apis, EtcdDiscoveryTest, ::testing::Values(EtcdApi::kV3, EtcdApi::kV2),
                         api_name);

TEST_P(EtcdDiscoveryTest, ReadsTheTreeThenFollowsInstancesJoiningAndLeaving) {
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
  EXPECT_TRUE(wait_watching(*d, true));

  set("/backends/game-10000/game3", "127.0.0.1:7003");
  auto view = wait_view(*d, [](const DiscoveryView& v) {
    return v.count("game-10000") != 0 && v.at("game-10000").size() == 3;
  });
  EXPECT_EQ(view["game-10000"]["game3"], "127.0.0.1:7003");
  set("/backends/chat-1/chat2", "127.0.0.1:7101");  // not in services: no view, no count
  set("/backends/game-10000/game1", std::nullopt);
  view = wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 2; });
  EXPECT_EQ(view["game-10000"].count("game1"), 0u);
  EXPECT_EQ(view.count("chat-1"), 0u);
  const auto counts = d->take_counts();
  EXPECT_EQ(counts.puts, 1u);
  EXPECT_EQ(counts.deletes, 1u);
  EXPECT_EQ(counts.resyncs, 0u);
  EXPECT_EQ(counts.bad_replies, 0u);
}

TEST_P(EtcdDiscoveryTest, AServiceDeletedWholeTakesAllItsInstances) {
  set("/backends/game-10000/game1", "127.0.0.1:7001");
  set("/backends/game-10000/game2", "127.0.0.1:7002");
  set("/backends/chat-1/chat1", "127.0.0.1:7100");
  auto d = discovery({"game-10000", "chat-1"});
  ASSERT_TRUE(d->read(5s));
  d->start();
  ASSERT_TRUE(wait_watching(*d, true));

  std::string error;
  ASSERT_TRUE(etcd_.remove_dir("/backends/game-10000", &error)) << error;
  auto view = wait_view(*d, [](const DiscoveryView& v) {
    return v.count("game-10000") != 0 && v.at("game-10000").empty();
  });
  EXPECT_EQ(view.at("chat-1"), (ServiceInstances{{"chat1", "127.0.0.1:7100"}}));
  EXPECT_EQ(d->take_counts().deletes, 2u);

  // The service comes back with an instance registered again.
  set("/backends/game-10000/game3", "127.0.0.1:7003");
  view = wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 1; });
  EXPECT_EQ(view.at("game-10000"), (ServiceInstances{{"game3", "127.0.0.1:7003"}}));
  EXPECT_EQ(d->take_counts().puts, 1u);
}

TEST_P(EtcdDiscoveryTest, KeepsTheViewWhileEtcdIsDownAndCatchesUpWhenItReturns) {
  set("/backends/game-10000/game1", "127.0.0.1:7001");
  auto d = discovery();
  ASSERT_TRUE(d->read(5s));
  d->start();
  set("/backends/game-10000/game2", "127.0.0.1:7002");
  wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 2; });

  etcd_.stop();
  EXPECT_TRUE(wait_watching(*d, false)) << "the view's age is not reported while etcd is down";
  EXPECT_FALSE(d->take_view().has_value()) << "the last known view stays as it was";

  ASSERT_TRUE(etcd_.start());
  // A change made as soon as etcd is back: the watch resumes from the
  // index after the last change it saw, so it gets this one, and only once.
  set("/backends/game-10000/game3", "127.0.0.1:7003");
  set("/backends/game-10000/game2", std::nullopt);
  const auto view = wait_view(*d, [](const DiscoveryView& v) {
    return v.at("game-10000").size() == 2 && v.at("game-10000").count("game3") != 0;
  });
  EXPECT_EQ(view.at("game-10000"),
            (ServiceInstances{{"game1", "127.0.0.1:7001"}, {"game3", "127.0.0.1:7003"}}));
  EXPECT_TRUE(wait_watching(*d, true));
  const auto counts = d->take_counts();
  EXPECT_EQ(counts.puts, 2u);  // game2 and game3, each once: nothing replayed
  EXPECT_EQ(counts.deletes, 1u);
  EXPECT_EQ(counts.resyncs, 0u);
}

TEST_P(EtcdDiscoveryTest, UnreachableEtcdAtStartIsAPromptNo) {
  std::string error;
  DiscoveryOptions options{
      parse_etcd_endpoints("http://127.0.0.1:" + std::to_string(testing::free_port()), &error),
      "/backends",
      {"game-10000"},
      GetParam()};
  EtcdDiscovery d(options, wakeup_);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(d.read(1s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_NE(d.stale_since_ns(), 0);
}

// The v2 keys API's own cases.
class EtcdV2DiscoveryTest : public EtcdDiscoveryTest {};
INSTANTIATE_TEST_SUITE_P(V2, EtcdV2DiscoveryTest, ::testing::Values(EtcdApi::kV2), api_name);

// gonet2's tree before any game service registered: no /backends at all
// (errorCode 100) is an empty view, and the watch sees the first instance.
TEST_P(EtcdV2DiscoveryTest, ARootNotMadeYetIsAnEmptyView) {
  auto d = discovery();
  ASSERT_TRUE(d->read(5s));
  EXPECT_EQ(d->take_view(), DiscoveryView{});
  d->start();
  ASSERT_TRUE(wait_watching(*d, true));
  set("/backends/game-10000/game1", "127.0.0.1:7001");
  const auto view = wait_view(*d, [](const DiscoveryView& v) { return !v.empty(); });
  EXPECT_EQ(view, (DiscoveryView{{"game-10000", {{"game1", "127.0.0.1:7001"}}}}));
  EXPECT_EQ(d->take_counts().bad_replies, 0u);
}

// etcd's v2 store keeps its last 1000 changes: a watch from an index older
// than those (here: 1100 changes between the read and the watch) is told
// 401, and the tree is read again, its changes meanwhile all in the view.
TEST_P(EtcdV2DiscoveryTest, AnIndexEtcdClearedMeansReadingTheTreeAgain) {
  set("/backends/game-10000/game1", "127.0.0.1:7001");
  set("/backends/game-10000/game2", "127.0.0.1:7002");
  auto d = discovery();
  ASSERT_TRUE(d->read(5s));
  ASSERT_TRUE(d->take_view().has_value());
  set("/backends/game-10000/game1", std::nullopt);
  set("/backends/game-10000/game3", "127.0.0.1:7003");
  for (int i = 0; i < 1100; ++i) set("/elsewhere/counter", std::to_string(i));
  set("/backends/game-10000/game2", "127.0.0.1:7022");
  d->start();
  const auto view = wait_view(*d, [](const DiscoveryView&) { return true; });
  EXPECT_EQ(view.at("game-10000"),
            (ServiceInstances{{"game2", "127.0.0.1:7022"}, {"game3", "127.0.0.1:7003"}}));
  ASSERT_TRUE(wait_watching(*d, true));
  auto counts = d->take_counts();
  EXPECT_EQ(counts.resyncs, 1u);
  EXPECT_EQ(counts.puts + counts.deletes, 0u) << "a resync replaces the view, changes uncounted";
  // And it watches on from the tree's index.
  set("/backends/game-10000/game4", "127.0.0.1:7004");
  wait_view(*d, [](const DiscoveryView& v) { return v.at("game-10000").size() == 3; });
  counts = d->take_counts();
  EXPECT_EQ(counts.puts, 1u);
  EXPECT_EQ(counts.resyncs, 0u);
}

}  // namespace
}  // namespace gatehouse::bridge
