// SessionTable: (slot, generation) ids, stale-id rejection, exhaustion, and
// an allocator that restarts over a live table.
#include "gatehouse/shm/session_table.h"

#include <optional>

#include <cstdlib>
#include <memory>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "aligned_buffer.h"

namespace gatehouse::shm {
namespace {

struct Session {
  std::uint64_t user_id;
  std::uint32_t seq;
  char name[20];
};

class SessionTableTest : public ::testing::Test {
 protected:
  std::span<std::byte> region(std::uint32_t slots) {
    memory_.emplace(SessionTable<Session>::region_bytes(slots));
    return memory_->span();
  }
  std::optional<testing::AlignedBuffer> memory_;
};

TEST(ConnectionId, PacksGenerationAndSlot) {
  const ConnectionId id(7u, 42u);
  EXPECT_EQ(id.generation(), 7u);
  EXPECT_EQ(id.slot(), 42u);
  EXPECT_EQ(ConnectionId(id.value()), id);
  EXPECT_FALSE(ConnectionId{});
  EXPECT_FALSE(ConnectionId(0u, 5u)) << "generation 0 is never live";
  EXPECT_TRUE(id);
}

TEST_F(SessionTableTest, FreshTableSlotIsFoundZeroedAndWritable) {
  auto table = SessionTable<Session>::initialise(region(4), 4);
  const auto id = table.allocate();
  ASSERT_TRUE(id.has_value());
  EXPECT_GE(id->generation(), 1u);
  Session* s = table.find(*id);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->user_id, 0u);
  s->user_id = 99;
  EXPECT_EQ(table.find(*id)->user_id, 99u);
  EXPECT_EQ(table.live_count(), 1u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(s) % 64, 0u) << "sessions start on a cache line";
}

TEST_F(SessionTableTest, StaleIdNeverReachesTheSlotsNextTenant) {
  auto table = SessionTable<Session>::initialise(region(1), 1);
  const auto old_id = *table.allocate();
  table.find(old_id)->user_id = 1;
  ASSERT_TRUE(table.release(old_id));
  EXPECT_EQ(table.find(old_id), nullptr) << "released";
  EXPECT_FALSE(table.release(old_id)) << "double release";

  const auto new_id = *table.allocate();
  EXPECT_EQ(new_id.slot(), old_id.slot());
  EXPECT_NE(new_id.generation(), old_id.generation());
  EXPECT_EQ(table.find(old_id), nullptr) << "stale id must not see the new tenant";
  EXPECT_FALSE(table.release(old_id)) << "stale id must not free the new tenant";
  ASSERT_NE(table.find(new_id), nullptr);
  // allocate() leaves the value to its owner (the worker initialises a
  // session on kConnOpened): the allocator never touches value pages.
  EXPECT_EQ(table.find(new_id)->user_id, 1u) << "allocate must not write the value";
}

TEST_F(SessionTableTest, ExhaustionAndRecovery) {
  auto table = SessionTable<Session>::initialise(region(8), 8);
  std::vector<ConnectionId> ids;
  std::set<std::uint32_t> slots;
  for (int i = 0; i < 8; ++i) {
    const auto id = table.allocate();
    ASSERT_TRUE(id.has_value());
    ids.push_back(*id);
    slots.insert(id->slot());
  }
  EXPECT_EQ(slots.size(), 8u);
  EXPECT_FALSE(table.allocate().has_value());
  ASSERT_TRUE(table.release(ids[3]));
  const auto again = table.allocate();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->slot(), ids[3].slot());
}

TEST_F(SessionTableTest, PartitionsHandOutOnlyTheirOwnRange) {
  // 10 slots in 3 ranges of 4: [0,4) [4,8) [8,10).
  auto table = SessionTable<Session>::initialise(region(10), 10);
  table.set_partitions(3);
  EXPECT_EQ(SlotTable::partition_slots(10, 3), 4u);
  std::vector<std::vector<ConnectionId>> got(3);
  for (std::uint32_t p = 0; p < 3; ++p) {
    while (const auto id = table.allocate(p)) got[p].push_back(*id);
  }
  ASSERT_EQ(got[0].size(), 4u);
  ASSERT_EQ(got[1].size(), 4u);
  ASSERT_EQ(got[2].size(), 2u);
  for (std::uint32_t p = 0; p < 3; ++p) {
    for (const ConnectionId id : got[p]) EXPECT_EQ(id.slot() / 4, p) << "slot " << id.slot();
  }
  EXPECT_FALSE(table.allocate(3).has_value()) << "no such partition";
  // A released slot goes back to its own range only.
  ASSERT_TRUE(table.release(got[1][2]));
  EXPECT_FALSE(table.allocate(0).has_value());
  EXPECT_FALSE(table.allocate(2).has_value());
  const auto again = table.allocate(1);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->slot(), got[1][2].slot());
}

TEST_F(SessionTableTest, RestartedAllocatorRebuildsEveryRangeFromTheSlots) {
  auto before = SessionTable<Session>::initialise(region(8), 8);
  before.set_partitions(2);
  const ConnectionId live = *before.allocate(1);
  auto after = SessionTable<Session>::attach(memory_->span());
  after.set_partitions(2);
  std::set<std::uint32_t> handed;
  while (const auto id = after.allocate(1)) handed.insert(id->slot());
  EXPECT_EQ(handed.size(), 3u);
  EXPECT_FALSE(handed.contains(live.slot())) << "a live slot must not be handed out again";
}

TEST_F(SessionTableTest, ReleasedSlotsAreReusedOldestFirst) {
  auto table = SessionTable<Session>::initialise(region(4), 4);
  std::vector<ConnectionId> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(*table.allocate());
  table.release(ids[2]);
  table.release(ids[0]);
  EXPECT_EQ(table.allocate()->slot(), ids[2].slot());
  EXPECT_EQ(table.allocate()->slot(), ids[0].slot());
}

TEST_F(SessionTableTest, InvalidIdsAreRejected) {
  auto table = SessionTable<Session>::initialise(region(4), 4);
  EXPECT_EQ(table.find(ConnectionId{}), nullptr);
  EXPECT_EQ(table.find(ConnectionId(1u, 4u)), nullptr) << "slot out of range";
  EXPECT_EQ(table.find(ConnectionId(1u, 0u)), nullptr) << "never allocated";
  EXPECT_FALSE(table.release(ConnectionId(1u, 99u)));
}

TEST_F(SessionTableTest, RestartedAllocatorKeepsLiveSessions) {
  const auto r = region(16);
  auto before = SessionTable<Session>::initialise(r, 16);
  std::vector<ConnectionId> live;
  for (int i = 0; i < 10; ++i) live.push_back(*before.allocate());
  before.release(live[4]);
  live.erase(live.begin() + 4);

  auto after = SessionTable<Session>::attach(r);  // a new process attaching
  EXPECT_EQ(after.live_count(), 9u);
  for (const auto id : live) EXPECT_NE(after.find(id), nullptr);
  std::set<std::uint32_t> taken;
  for (const auto id : live) taken.insert(id.slot());
  for (int i = 0; i < 7; ++i) {
    const auto id = after.allocate();
    ASSERT_TRUE(id.has_value());
    EXPECT_FALSE(taken.contains(id->slot())) << "allocated a live slot";
    taken.insert(id->slot());
  }
  EXPECT_FALSE(after.allocate().has_value());
}

TEST_F(SessionTableTest, AttachRefusesAnotherSessionLayout) {
  const auto r = region(4);
  SessionTable<Session>::initialise(r, 4);
  struct Bigger {
    char bytes[200];
  };
  EXPECT_THROW(SessionTable<Bigger>::attach(r), std::runtime_error);
  std::vector<std::byte> garbage(4096);
  EXPECT_THROW(SessionTable<Session>::attach(garbage), std::runtime_error);
}

}  // namespace
}  // namespace gatehouse::shm
