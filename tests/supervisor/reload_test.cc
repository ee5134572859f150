// Reload: the decision (layout check, configuration read again) and the
// roll of the workers one at a time, with an injected clock.
#include "gatehouse/supervisor/reload.h"

#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gatehouse::supervisor {
namespace {

using ::testing::HasSubstr;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kReloadAt = 10'000 * kMs;

ParseResult parse(std::vector<std::string> args) {
  args.insert(args.begin(), "gatehouse");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_config(static_cast<int>(argv.size()), argv.data());
}

TEST(Reload, AnIncompatibleWorkerBinaryRefusesIt) {
  const auto running = parse({});
  ASSERT_TRUE(running.config);
  const ReloadDecision d =
      decide_reload({1, "incompatible: layout version 999\n"}, *running.config, parse({}));
  EXPECT_FALSE(d.plan);
  EXPECT_EQ(d.refused,
            "reload refused, the running workers stay: incompatible: layout version 999");
}

TEST(Reload, AConfigurationThatDoesNotParseRefusesIt) {
  const auto running = parse({});
  ASSERT_TRUE(running.config);
  const ReloadDecision d =
      decide_reload({0, "compatible\n"}, *running.config, parse({"--rpm-limit", "lots"}));
  EXPECT_FALSE(d.plan);
  EXPECT_THAT(d.refused, HasSubstr("reload refused, the configuration does not parse"));
  EXPECT_THAT(d.refused, HasSubstr("--rpm-limit"));
  EXPECT_NE(d.refused.back(), '\n');
}

TEST(Reload, OtherwiseItPlansTheChange) {
  const auto running = parse({"--listen", "127.0.0.1:8888"});
  ASSERT_TRUE(running.config);
  const ReloadDecision d = decide_reload({0, "compatible\n"}, *running.config,
                                         parse({"--listen", "127.0.0.1:8888", "--rpm-limit", "8"}));
  ASSERT_TRUE(d.plan) << d.refused;
  EXPECT_EQ(d.plan->applied, std::vector<std::string>{"rpm-limit 200 -> 8"});
  EXPECT_EQ(d.plan->config.settings.rpm_limit, 8u);
}

// `login = any` proves nothing: a reload cannot bring it to a listener that
// is not loopback unless login-any-allow-public says so.
TEST(Reload, LoginAnyOnAPublicListenerIsRefusedUnlessAllowed) {
  const auto running = parse({"--listen", "0.0.0.0:8888", "--login-any-allow-public"});
  ASSERT_TRUE(running.config);
  const ReloadDecision refused =
      decide_reload({0, "compatible\n"}, *running.config, parse({"--listen", "0.0.0.0:8888"}));
  EXPECT_FALSE(refused.plan);
  EXPECT_THAT(refused.refused, HasSubstr("login = any on listener 0.0.0.0:8888"));
  const ReloadDecision allowed = decide_reload(
      {0, "compatible\n"}, *running.config,
      parse({"--listen", "0.0.0.0:8888", "--login-any-allow-public", "--rpm-limit", "8"}));
  EXPECT_TRUE(allowed.plan) << allowed.refused;
}

/// Three workers started before the reload, attached.
std::vector<Reload::Worker> old_workers() {
  return {{101, 1 * kMs, true}, {102, 2 * kMs, true}, {103, 3 * kMs, true}};
}

TEST(Reload, RollsTheWorkersOneAtATime) {
  auto w = old_workers();
  Reload reload(kReloadAt);
  std::int64_t now = kReloadAt;
  for (std::uint32_t i = 0; i < 3; ++i) {
    Reload::Step step = reload.advance(now += kMs, w);
    ASSERT_EQ(step.action, Reload::Action::kStop) << i;
    EXPECT_EQ(step.worker, i);
    EXPECT_EQ(reload.advance(now += kMs, w).action, Reload::Action::kWait) << "it is stopping";
    // It exits: the supervisor replaces it at once.
    w[i].pid = 0;
    EXPECT_TRUE(reload.exited(i));
    EXPECT_EQ(reload.advance(now += kMs, w).action, Reload::Action::kWait);
    w[i] = {static_cast<pid_t>(200 + i), now, /*attached=*/false};
    EXPECT_EQ(reload.advance(now += kMs, w).action, Reload::Action::kWait)
        << "the next one waits until the replacement has attached";
    w[i].attached = true;
  }
  EXPECT_EQ(reload.advance(now += kMs, w).action, Reload::Action::kDone);
}

TEST(Reload, AWorkerThatDoesNotStopInTimeIsKilledOnce) {
  auto w = old_workers();
  Reload reload(kReloadAt);
  ASSERT_EQ(reload.advance(kReloadAt, w).action, Reload::Action::kStop);
  const std::int64_t deadline = kReloadAt + Reload::kStopTimeoutNs;
  EXPECT_EQ(reload.advance(deadline, w).action, Reload::Action::kWait);
  const Reload::Step kill = reload.advance(deadline + 1, w);
  EXPECT_EQ(kill.action, Reload::Action::kKill);
  EXPECT_EQ(kill.worker, 0u);
  EXPECT_EQ(reload.advance(deadline + 2, w).action, Reload::Action::kWait);
}

TEST(Reload, OnlyTheWorkerItStoppedIsItsToReplace) {
  auto w = old_workers();
  Reload reload(kReloadAt);
  EXPECT_FALSE(reload.exited(0)) << "not stopped yet: a crash";
  ASSERT_EQ(reload.advance(kReloadAt, w).action, Reload::Action::kStop);
  EXPECT_FALSE(reload.exited(2)) << "another worker crashing meanwhile";
  EXPECT_TRUE(reload.exited(0));
  EXPECT_FALSE(reload.exited(0)) << "once";
}

TEST(Reload, AWorkerAlreadyRestartedSinceTheReloadBeganCountsAsReplaced) {
  auto w = old_workers();
  w[0] = {300, kReloadAt + kMs, true};  // crashed and came back during the reload
  Reload reload(kReloadAt);
  const Reload::Step step = reload.advance(kReloadAt + 2 * kMs, w);
  EXPECT_EQ(step.action, Reload::Action::kStop);
  EXPECT_EQ(step.worker, 1u);
}

TEST(Reload, AWorkerDownWhenItsTurnComesIsWaitedFor) {
  auto w = old_workers();
  w[0].pid = 0;  // crashed, its restart due later
  Reload reload(kReloadAt);
  EXPECT_EQ(reload.advance(kReloadAt + kMs, w).action, Reload::Action::kWait);
  EXPECT_EQ(reload.current(), 0u);
}

}  // namespace
}  // namespace gatehouse::supervisor
