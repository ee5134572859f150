// Drain: phases, deadlines and who is replaced, with an injected clock.
#include "gatehouse/supervisor/drain.h"

#include <gtest/gtest.h>

#include "gatehouse/contract/gateway_segment.h"

namespace gatehouse::supervisor {
namespace {

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kT0 = 1'000 * kMs;

TEST(Drain, ServesUntilStarted) {
  Drain drain;
  EXPECT_FALSE(drain.draining());
  EXPECT_EQ(drain.control_value(), 0u);
  const Drain::Step step = drain.advance(kT0, /*frontend_running=*/false);
  EXPECT_FALSE(step.close_sessions || step.stop_rest || step.kill_rest);
  EXPECT_TRUE(drain.replaces(Role::kFrontend));
}

TEST(Drain, WithoutDrainWaitClosesTheSessionsAtOnce) {
  Drain drain;
  ASSERT_TRUE(drain.start(kT0, /*wait_ms=*/0, /*timeout_ms=*/10'000));
  EXPECT_EQ(drain.phase(), Drain::Phase::kClosing);
  EXPECT_EQ(drain.control_value(), kDrainClosing);
  const Drain::Step step = drain.advance(kT0 + kMs, true);
  EXPECT_FALSE(step.close_sessions) << "published by start()";
  EXPECT_FALSE(step.stop_rest);
  EXPECT_FALSE(step.kill_rest);
}

TEST(Drain, DrainWaitLetsSessionsGoOnThenClosesThem) {
  Drain drain;
  ASSERT_TRUE(drain.start(kT0, 1'500, 10'000));
  EXPECT_EQ(drain.phase(), Drain::Phase::kWaiting);
  EXPECT_EQ(drain.control_value(), kDrainNoNewConnections);
  EXPECT_FALSE(drain.advance(kT0 + 1'499 * kMs, true).close_sessions);
  EXPECT_TRUE(drain.advance(kT0 + 1'500 * kMs, true).close_sessions);
  EXPECT_EQ(drain.control_value(), kDrainClosing);
  EXPECT_FALSE(drain.advance(kT0 + 1'600 * kMs, true).close_sessions) << "once";
}

TEST(Drain, TheFrontendLeavingStopsTheRestOnce) {
  Drain drain;
  ASSERT_TRUE(drain.start(kT0, 60'000, 10'000));
  EXPECT_TRUE(drain.supervising());
  const Drain::Step step = drain.advance(kT0 + kMs, /*frontend_running=*/false);
  EXPECT_TRUE(step.stop_rest) << "the last client left before drain-wait was over";
  EXPECT_FALSE(step.close_sessions);
  EXPECT_TRUE(drain.stopping());
  EXPECT_FALSE(drain.supervising());
  EXPECT_FALSE(drain.advance(kT0 + 2 * kMs, false).stop_rest);
}

TEST(Drain, PastDrainWaitPlusDrainTimeoutWhateverIsLeftIsKilledOnce) {
  Drain drain;
  ASSERT_TRUE(drain.start(kT0, 2'000, 3'000));
  EXPECT_EQ(drain.deadline_ns(), kT0 + 5'000 * kMs);
  EXPECT_FALSE(drain.advance(kT0 + 5'000 * kMs, true).kill_rest);
  const Drain::Step step = drain.advance(kT0 + 5'000 * kMs + 1, true);
  EXPECT_TRUE(step.kill_rest);
  EXPECT_FALSE(drain.advance(kT0 + 6'000 * kMs, true).kill_rest);
}

TEST(Drain, ReplacesWorkersAndTheBridgeUntilTheFrontendHasGone) {
  Drain drain;
  ASSERT_TRUE(drain.start(kT0, 1'000, 10'000));
  EXPECT_TRUE(drain.replaces(Role::kWorker)) << "it still carries sessions";
  EXPECT_TRUE(drain.replaces(Role::kBridge));
  EXPECT_FALSE(drain.replaces(Role::kFrontend)) << "its listeners have left the port";
  drain.advance(kT0 + kMs, /*frontend_running=*/false);
  EXPECT_FALSE(drain.replaces(Role::kWorker));
  EXPECT_FALSE(drain.replaces(Role::kBridge));
}

TEST(Drain, ASecondSigtermChangesNothing) {
  Drain drain;
  ASSERT_TRUE(drain.start(kT0, 1'000, 10'000));
  EXPECT_FALSE(drain.start(kT0 + 500 * kMs, 0, 1));
  EXPECT_EQ(drain.phase(), Drain::Phase::kWaiting);
  EXPECT_EQ(drain.close_ns(), kT0 + 1'000 * kMs);
  EXPECT_EQ(drain.deadline_ns(), kT0 + 11'000 * kMs);
}

}  // namespace
}  // namespace gatehouse::supervisor
