// What /ready says for each state of the gateway (not_ready_reasons), and
// /healthz's view of the supervisor's loop (Health).
#include "gatehouse/supervisor/health.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gatehouse::supervisor {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

/// A started gateway with two workers, every child attached.
HealthReport serving() {
  HealthReport r;
  r.started = true;
  r.listening = true;
  r.children = {{{Role::kBridge}, 10, true, false},
                {{Role::kWorker, 0}, 11, true, false},
                {{Role::kWorker, 1}, 12, true, false},
                {{Role::kFrontend}, 13, true, false}};
  return r;
}

const GameServices kOneOfTwoUp{2, {1}};

TEST(NotReadyReasons, ReadyWhenServingWithAGameServiceUp) {
  EXPECT_THAT(not_ready_reasons(serving(), false, kOneOfTwoUp), IsEmpty());
}

TEST(NotReadyReasons, NamesEveryFailingCondition) {
  HealthReport r = serving();
  r.children[2].pid = 0;           // worker-1 crashed, waiting for its restart
  r.children[3].attached = false;  // the frontend was restarted, not attached yet
  EXPECT_THAT(not_ready_reasons(r, false, {2, {0}}),
              ElementsAre("worker-1 down", "frontend starting", "no game service reachable"));
}

TEST(NotReadyReasons, DrainingComesFirst) {
  HealthReport r = serving();
  r.listening = false;  // the drain closed them: not a reason of its own
  EXPECT_THAT(not_ready_reasons(r, true, kOneOfTwoUp), ElementsAre("draining"));
  r.children[3].pid = 0;  // the frontend has left with its last connection
  EXPECT_THAT(not_ready_reasons(r, true, kOneOfTwoUp), ElementsAre("draining", "frontend down"));
}

TEST(NotReadyReasons, StartingOnceForEveryChild) {
  HealthReport r;
  r.children = {{{Role::kBridge}, 10, false, false}, {{Role::kWorker, 0}, 0, false, false}};
  EXPECT_THAT(not_ready_reasons(r, false, {1, {0}}),
              ElementsAre("starting", "no game service reachable"));
}

TEST(NotReadyReasons, AWorkerReplacedByAReloadIsNotAReason) {
  HealthReport r = serving();
  r.children[1] = {{Role::kWorker, 0}, 0, false, true};
  EXPECT_THAT(not_ready_reasons(r, false, kOneOfTwoUp), IsEmpty());
}

// Each bridge serves its own users (bridge shards): one that reaches no game
// service leaves them unable to play, though the others reach one.
TEST(NotReadyReasons, EveryBridgeNeedsAGameServiceItReaches) {
  HealthReport r = serving();
  r.children.push_back({{Role::kBridge, 1}, 14, true, false});
  EXPECT_THAT(not_ready_reasons(r, false, {2, {1, 2}}), IsEmpty());
  EXPECT_THAT(not_ready_reasons(r, false, {2, {1, 0}}),
              ElementsAre("bridge-1 reaches no game service"));
  EXPECT_THAT(not_ready_reasons(r, false, {2, {0, 0}}), ElementsAre("no game service reachable"));
  r.children.back().pid = 0;
  EXPECT_THAT(not_ready_reasons(r, false, {2, {1, 2}}), ElementsAre("bridge-1 down"));
}

TEST(NotReadyReasons, NoGameServiceConfigured) {
  EXPECT_THAT(not_ready_reasons(serving(), false, {0, {0}}),
              ElementsAre("no game service configured"));
}

TEST(Health, AliveWhileTheLoopTurns) {
  Health health;
  constexpr std::int64_t kSecond = 1'000'000'000;
  health.beat(100 * kSecond);
  EXPECT_TRUE(health.alive(100 * kSecond + Health::kLoopStallNs - 1));
  EXPECT_FALSE(health.alive(100 * kSecond + Health::kLoopStallNs));
  EXPECT_EQ(health.stalled_ns(103 * kSecond), 3 * kSecond);
}

TEST(Health, PublishesTheReport) {
  Health health;
  EXPECT_FALSE(health.report().started);
  health.publish(serving());
  EXPECT_EQ(health.report(), serving());
}

}  // namespace
}  // namespace gatehouse::supervisor
