// Rendezvous hashing: adding one instance to N moves about 1/(N+1) of the
// users, all of them to the new instance; removing one moves only its users.
#include "gatehouse/bridge/rendezvous.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gatehouse::bridge {
namespace {

constexpr std::int64_t kUsers = 200'000;

std::vector<std::uint64_t> instances(std::size_t n) {
  std::vector<std::uint64_t> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(instance_hash("game" + std::to_string(i)));
  return out;
}

TEST(Rendezvous, AddingOneInstanceMovesItsShareToItAndNoOthers) {
  for (const std::size_t n : {1u, 2u, 4u, 9u}) {
    const auto before = instances(n);
    const auto after = instances(n + 1);  // the same names, and one more at the end
    std::int64_t moved = 0;
    for (std::int64_t user = 1; user <= kUsers; ++user) {
      const std::size_t was = rendezvous_pick(user, before);
      const std::size_t is = rendezvous_pick(user, after);
      if (was != is) {
        ++moved;
        ASSERT_EQ(is, n) << "user " << user << " moved between two old instances";
      }
    }
    const double share = static_cast<double>(moved) / kUsers;
    EXPECT_NEAR(share, 1.0 / static_cast<double>(n + 1), 0.01) << n << " -> " << n + 1;
  }
}

TEST(Rendezvous, RemovingOneInstanceMovesOnlyItsUsers) {
  const auto all = instances(5);
  std::vector<std::uint64_t> without(all.begin(), all.end() - 1);
  for (std::int64_t user = 1; user <= kUsers; ++user) {
    const std::size_t was = rendezvous_pick(user, all);
    if (was != 4) {
      ASSERT_EQ(rendezvous_pick(user, without), was) << "user " << user;
    }
  }
}

TEST(Rendezvous, SpreadsUsersEvenly) {
  const auto all = instances(8);
  std::vector<std::int64_t> count(all.size());
  for (std::int64_t user = 1; user <= kUsers; ++user) ++count[rendezvous_pick(user, all)];
  for (const std::int64_t c : count)
    EXPECT_NEAR(static_cast<double>(c), kUsers / 8.0, kUsers * 0.01);
}

TEST(Rendezvous, OrderOfTheListDoesNotMatter) {
  auto all = instances(6);
  std::vector<std::uint64_t> reversed(all.rbegin(), all.rend());
  for (std::int64_t user = 1; user <= 10'000; ++user) {
    EXPECT_EQ(all[rendezvous_pick(user, all)], reversed[rendezvous_pick(user, reversed)]);
  }
}

}  // namespace
}  // namespace gatehouse::bridge
