// merge_routing: the bridges' routing tables, each in its own row order, as
// the one table gatehousectl, /metrics and /ready show.
#include "gatehouse/supervisor/routing_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

namespace gatehouse::supervisor {
namespace {

using ::testing::ElementsAre;

struct Service {
  const char* name;
  std::int64_t instances;
  std::uint64_t moved_removed = 0;
  std::uint64_t moved_failed = 0;
};
struct Row {
  const char* name;
  std::uint32_t state;
  bool up;
  std::int64_t sessions;
  std::uint64_t sent = 0;
  std::uint32_t service = 0;
};

/// What a bridge publishes: its services, its rows in its order.
void publish(metrics::RoutingTable& table, const std::vector<Service>& services,
             const std::vector<Row>& rows) {
  metrics::RoutingNames names{};
  for (const Service& s : services) {
    metrics::ServiceRow& row = names.services[names.service_count++];
    std::strncpy(row.name, s.name, sizeof row.name - 1);
    row.instances = s.instances;
    row.moved[metrics::kMovedRemoved] = s.moved_removed;
    row.moved[metrics::kMovedFailed] = s.moved_failed;
  }
  for (const Row& r : rows) {
    const std::uint32_t i = names.instance_count++;
    metrics::InstanceRow& row = names.instances[i];
    std::strncpy(row.name, r.name, sizeof row.name - 1);
    row.service = r.service;
    row.state = r.state;
    row.counts[metrics::kInstanceMessagesSent] = r.sent;
    table.up[i].store(r.up ? 1 : 0);
    table.sessions[i].store(r.sessions);
  }
  metrics::publish_routing(table, names);
}

/// The tables of `bridges` bridges, as MetricsBlock::routing holds them.
std::unique_ptr<metrics::RoutingTable[]> tables(std::size_t bridges) {
  return std::make_unique<metrics::RoutingTable[]>(bridges);
}

std::vector<std::string> names_of(const RoutingView& view) {
  std::vector<std::string> names;
  for (const RoutedInstance& i : view.instances) names.push_back(i.name);
  return names;
}

constexpr auto kLive = metrics::kInstanceLive;
constexpr auto kDisabled = metrics::kInstanceDisabled;
constexpr auto kRemoved = metrics::kInstanceRemoved;

TEST(MergeRouting, JoinsTheBridgesRowsByName) {
  auto t = tables(2);
  publish(t[0], {{"game", 2, 1, 0}, {"chat", 1}},
          {{"a", kLive, true, 2, 10}, {"b", kLive, false, 1, 20}, {"c1", kLive, true, 5, 1, 1}});
  // Bridge 1 lists them in its own order, sees b up, and has one more game
  // instance in its view already.
  publish(t[1], {{"game", 3, 0, 2}, {"chat", 1}},
          {{"c1", kLive, true, 7, 2, 1},
           {"d", kLive, true, 0},
           {"b", kLive, true, 3, 30},
           {"a", kLive, true, 4, 40}});
  const RoutingView view = merge_routing(std::span(t.get(), 2));
  EXPECT_EQ(view.published, 0b11u);

  ASSERT_EQ(view.services.size(), 2u);
  EXPECT_EQ(view.services[0].name, "game");
  EXPECT_EQ(view.services[0].instances, 3) << "the most of any bridge";
  EXPECT_THAT(view.services[0].moved, ElementsAre(1u, 2u)) << "summed";
  EXPECT_EQ(view.services[1].name, "chat");
  EXPECT_EQ(view.services[1].instances, 1);

  EXPECT_THAT(names_of(view), ElementsAre("a", "b", "c1", "d"))
      << "bridge 0's order, then what only bridge 1 has";
  const RoutedInstance& a = view.instances[0];
  EXPECT_EQ(a.service, "game");
  EXPECT_EQ(a.state, kLive);
  EXPECT_TRUE(a.up);
  EXPECT_EQ(a.sessions, 6);
  EXPECT_EQ(a.counts[metrics::kInstanceMessagesSent], 50u);
  EXPECT_EQ(a.listed_by, 0b11u);
  const RoutedInstance& b = view.instances[1];
  EXPECT_FALSE(b.up) << "bridge 0 does not reach it";
  EXPECT_EQ(b.sessions, 4);
  const RoutedInstance& c1 = view.instances[2];
  EXPECT_EQ(c1.service, "chat") << "by the service's name, not its row";
  EXPECT_EQ(c1.sessions, 12);
  const RoutedInstance& d = view.instances[3];
  EXPECT_EQ(d.listed_by, 0b10u);
  EXPECT_TRUE(d.up) << "every bridge that lists it reaches it";
  // Bridge 0 reaches a and c1 (not b); bridge 1 all four.
  EXPECT_THAT(view.reachable, ElementsAre(2u, 4u));
}

TEST(MergeRouting, DisabledWinsThenLiveAndARemovedRowStaysApart) {
  auto t = tables(2);
  publish(t[0], {{"game", 1}},
          {{"a", kDisabled, true, 1}, {"b", kLive, true, 2}, {"c", kRemoved, false, 3}});
  // Bridge 1 has not taken the switch of a yet; b left its view (its
  // sessions there stay) while bridge 0 still has it live.
  publish(t[1], {{"game", 2}},
          {{"a", kLive, true, 4}, {"b", kRemoved, false, 5}, {"c", kRemoved, true, 6}});
  const RoutingView view = merge_routing(std::span(t.get(), 2));
  ASSERT_THAT(names_of(view), ElementsAre("a", "b", "c", "b"));
  const RoutedInstance& a = view.instances[0];
  EXPECT_EQ(a.state, kDisabled);
  EXPECT_EQ(a.disabled_by, 0b01u);
  EXPECT_EQ(a.listed_by, 0b11u);
  EXPECT_EQ(a.sessions, 5);
  EXPECT_EQ(view.instances[1].state, kLive);
  EXPECT_EQ(view.instances[1].sessions, 2);
  EXPECT_TRUE(view.instances[1].up);
  EXPECT_EQ(view.instances[2].state, kRemoved);
  EXPECT_EQ(view.instances[2].sessions, 9);
  EXPECT_FALSE(view.instances[2].up);
  EXPECT_EQ(view.instances[3].state, kRemoved) << "bridge 1's sessions left on b";
  EXPECT_EQ(view.instances[3].sessions, 5);
  EXPECT_EQ(view.instances[3].listed_by, 0b10u);
  // A disabled instance takes no session: bridge 0 reaches b only, bridge 1
  // its live a.
  EXPECT_THAT(view.reachable, ElementsAre(1u, 1u));
}

// One bridge's view is its table as it is: an instance that left with
// sessions stays beside its namesake that came back.
TEST(MergeRouting, OneBridgeIsItsOwnTable) {
  auto t = tables(1);
  publish(t[0], {{"", 2}},
          {{"x", kRemoved, false, 3, 7}, {"y", kLive, true, 1}, {"x", kLive, true, 2}});
  const RoutingView view = merge_routing(std::span(t.get(), 1));
  ASSERT_THAT(names_of(view), ElementsAre("x", "y", "x"));
  EXPECT_EQ(view.instances[0].state, kRemoved);
  EXPECT_EQ(view.instances[0].sessions, 3);
  EXPECT_EQ(view.instances[0].counts[metrics::kInstanceMessagesSent], 7u);
  EXPECT_EQ(view.instances[2].state, kLive);
  EXPECT_EQ(view.instances[2].sessions, 2);
  ASSERT_EQ(view.services.size(), 1u);
  EXPECT_EQ(view.services[0].name, "");
  EXPECT_THAT(view.reachable, ElementsAre(2u));
}

TEST(MergeRouting, ABridgeThatHasNotPublishedAddsNothing) {
  auto t = tables(3);
  publish(t[1], {{"game", 1}}, {{"a", kLive, true, 4}});
  const RoutingView view = merge_routing(std::span(t.get(), 3));
  EXPECT_EQ(view.published, 0b010u);
  ASSERT_THAT(names_of(view), ElementsAre("a"));
  EXPECT_EQ(view.instances[0].listed_by, 0b010u);
  EXPECT_THAT(view.reachable, ElementsAre(0u, 1u, 0u));
  EXPECT_EQ(merge_routing(std::span(t.get(), 1)).published, 0u) << "bridge 0 alone";
}

}  // namespace
}  // namespace gatehouse::supervisor
