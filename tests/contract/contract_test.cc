// GatewaySegment: the one typed accessor of the gateway's segment. What a
// process attaching to it may rely on: the regions its settings ask for, the
// settings as the creator wrote them, typed views of the session table and
// the journals, and a refusal of a segment of another layout version.
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/layout.h"

namespace gatehouse {
namespace {

using ::testing::HasSubstr;

std::string unique_name(const char* what) {
  return std::string("gatehouse-test-contract-") + what + "-" + std::to_string(::getpid());
}

Settings small_settings() {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = 3;
  s.max_connections = 30;
  s.ring_bytes = 1 << 16;
  s.rpm_limit = 123;
  return s;
}

TEST(GatewaySegment, AnAttacherSeesWhatTheCreatorLaidOut) {
  const std::string name = unique_name("attach");
  const GatewaySegment created = GatewaySegment::create(name, small_settings());
  GatewaySegment attached = GatewaySegment::attach(name);

  EXPECT_EQ(attached.settings().rpm_limit, 123u);
  EXPECT_EQ(attached.settings().workers, 3u);
  EXPECT_EQ(attached.segment().header().layout_version, kLayoutVersion);
  for (std::uint32_t w = 0; w < 3; ++w) {
    for (RingKind kind : {RingKind::kFrontendToWorker, RingKind::kWorkerToFrontend,
                          RingKind::kWorkerToBridge, RingKind::kBridgeToWorker}) {
      EXPECT_NO_THROW((void)attached.ring(kind, w)) << ring_region_name(kind, w);
    }
    EXPECT_EQ(attached.journal(w).state.load(), Journal::kIdle);
  }
  EXPECT_THROW((void)attached.ring(RingKind::kFrontendToWorker, 3), shm::SegmentError);
  EXPECT_THROW((void)attached.journal(3), shm::SegmentError);
}

TEST(GatewaySegment, TheSessionTableHoldsThisBuildsSessions) {
  const std::string name = unique_name("sessions");
  const GatewaySegment segment = GatewaySegment::create(name, small_settings());
  shm::SlotTable slots = segment.session_slots();
  const auto id = slots.allocate();
  ASSERT_TRUE(id.has_value());

  auto sessions = segment.sessions();
  EXPECT_EQ(sessions.slots(), 30u);
  Session* session = sessions.find(*id);
  ASSERT_NE(session, nullptr);
  session->user_id = 42;
  EXPECT_EQ(segment.sessions().find(*id)->user_id, 42);
}

TEST(GatewaySegment, ASegmentOfAnotherLayoutVersionIsRefusedWithBothVersions) {
  const std::string name = unique_name("version");
  const shm::Segment other =
      shm::Segment::create(name, kLayoutVersion + 1, gateway_regions(small_settings()));
  try {
    (void)GatewaySegment::attach(name);
    FAIL() << "attached to a segment of layout version " << kLayoutVersion + 1;
  } catch (const shm::SegmentError& e) {
    EXPECT_THAT(e.what(), HasSubstr("layout version " + std::to_string(kLayoutVersion + 1)));
    EXPECT_THAT(e.what(), HasSubstr("speaks version " + std::to_string(kLayoutVersion)));
  }
}

TEST(GatewaySegment, SeveralFrontendsAndBridgesHaveRingsWithEveryWorker) {
  Settings s = small_settings();
  s.workers = 2;
  s.frontends = 3;
  s.bridges = 2;
  s.max_connections = 60;
  const std::string name = unique_name("peers");
  GatewaySegment owner = GatewaySegment::create(name, s);
  GatewaySegment attached = GatewaySegment::attach(name);
  for (std::uint32_t w = 0; w < 2; ++w) {
    for (std::uint32_t f = 0; f < 3; ++f) {
      EXPECT_NO_THROW((void)attached.ring(RingKind::kFrontendToWorker, w, f));
      EXPECT_NO_THROW((void)attached.ring(RingKind::kWorkerToFrontend, w, f));
    }
    for (std::uint32_t b = 0; b < 2; ++b) {
      EXPECT_NO_THROW((void)attached.ring(RingKind::kWorkerToBridge, w, b));
      EXPECT_NO_THROW((void)attached.ring(RingKind::kBridgeToWorker, w, b));
    }
  }
  // Each count bounds its own rings.
  EXPECT_THROW((void)attached.ring(RingKind::kFrontendToWorker, 0, 3), shm::SegmentError);
  EXPECT_NO_THROW((void)attached.ring(RingKind::kWorkerToFrontend, 0, 2));
  EXPECT_THROW((void)attached.ring(RingKind::kBridgeToWorker, 0, 2), shm::SegmentError);
}

// Every session of a user meets in one bridge; users and slots spread over
// all of them, sequential ids included (the first bridge keeps everything
// when there is one).
TEST(BridgeOwners, UsersAndLoginSlotsSpreadOverTheBridges) {
  Settings s{};
  for (const std::uint32_t bridges : {1u, 2u, 3u, 8u}) {
    s.bridges = bridges;
    std::vector<std::uint32_t> users(bridges);
    std::vector<std::uint32_t> slots(bridges);
    constexpr std::uint32_t kUsers = 8000;
    for (std::uint32_t i = 0; i < kUsers; ++i) {
      const std::uint32_t b = bridge_of_user(std::int64_t{i} * 2, s);  // even ids only
      ASSERT_LT(b, bridges);
      ASSERT_EQ(b, bridge_of_user(std::int64_t{i} * 2, s)) << "the same user, the same bridge";
      ++users[b];
      ++slots[bridge_of_slot(i, s)];
    }
    const double share = double{kUsers} / bridges;
    for (std::uint32_t b = 0; b < bridges; ++b) {
      EXPECT_NEAR(users[b], share, share / 5) << b << " of " << bridges;
      EXPECT_NEAR(slots[b], share, 1) << b << " of " << bridges;
    }
  }
}

// Each slot has one worker and one frontend; a worker's slots are one
// contiguous range, split between the frontends; every frontend has slots of
// every worker.
TEST(SlotOwners, WorkersOwnRangesThatTheFrontendsSplit) {
  for (const auto& [workers, frontends, slots] :
       {std::tuple{1u, 1u, 8u}, std::tuple{3u, 1u, 10u}, std::tuple{2u, 2u, 8u},
        std::tuple{3u, 2u, 100u}, std::tuple{4u, 8u, 1000u}, std::tuple{2u, 3u, 7u}}) {
    Settings s{};
    s.workers = workers;
    s.frontends = frontends;
    s.max_connections = slots;
    std::vector<std::vector<std::uint32_t>> per_pair(std::size_t{workers} * frontends);
    std::uint32_t last_worker = 0;
    for (std::uint32_t slot = 0; slot < slots; ++slot) {
      const std::uint32_t w = worker_of_slot(slot, s);
      const std::uint32_t f = frontend_of_slot(slot, s);
      ASSERT_LT(w, workers) << slot;
      ASSERT_LT(f, frontends) << slot;
      EXPECT_GE(w, last_worker) << "worker ranges are contiguous";
      last_worker = w;
      const SlotRange range = slots_of_worker(w, s);
      EXPECT_GE(slot, range.first);
      EXPECT_LT(slot, range.end);
      EXPECT_EQ(partition_of(w, f, s), partition_of_slot(slot, s));
      per_pair[partition_of(w, f, s)].push_back(slot);
    }
    if (slots >= 2 * workers * frontends) {
      for (const auto& pair : per_pair) EXPECT_FALSE(pair.empty()) << workers << "x" << frontends;
    }
  }
}

TEST(GatewaySegment, RingRegionsAreNamedByDirectionAndWorker) {
  EXPECT_EQ(ring_region_name(RingKind::kFrontendToWorker, 0), "ring/fe-w/0");
  EXPECT_EQ(ring_region_name(RingKind::kWorkerToFrontend, 1), "ring/w-fe/1");
  // The first frontend's keep their names; the others' say which.
  EXPECT_EQ(ring_region_name(RingKind::kFrontendToWorker, 0, 2), "ring/fe2-w/0");
  EXPECT_EQ(ring_region_name(RingKind::kWorkerToFrontend, 1, 3), "ring/w-fe3/1");
  EXPECT_EQ(ring_region_name(RingKind::kWorkerToBridge, 2), "ring/w-br/2");
  EXPECT_EQ(ring_region_name(RingKind::kBridgeToWorker, 63), "ring/br-w/63");
  // So do the first bridge's.
  EXPECT_EQ(ring_region_name(RingKind::kWorkerToBridge, 2, 1), "ring/w-br1/2");
  EXPECT_EQ(ring_region_name(RingKind::kBridgeToWorker, 63, 7), "ring/br7-w/63");
}

TEST(EtcdEndpoints, TakesGonet2sFormAndRefusesWhatItCannotReach) {
  std::string error;
  EXPECT_EQ(parse_etcd_endpoints("http://127.0.0.1:2379, http://10.0.0.2:2379/", &error),
            (std::vector<std::string>{"127.0.0.1:2379", "10.0.0.2:2379"}));
  EXPECT_EQ(error, "");
  EXPECT_TRUE(parse_etcd_endpoints("https://127.0.0.1:2379", &error).empty());
  EXPECT_NE(error.find("https"), std::string::npos);
  EXPECT_TRUE(parse_etcd_endpoints("", &error).empty());
}

TEST(RoutingTable, NamesPublishedWholeAreReadWhole) {
  auto table = std::make_unique<metrics::RoutingTable>();
  metrics::RoutingNames out{};
  EXPECT_FALSE(metrics::read_routing(*table, out)) << "never published";
  metrics::RoutingNames names{};
  names.service_count = 1;
  std::strcpy(names.services[0].name, "game-10000");
  names.services[0].instances = 2;
  names.instance_count = 2;
  std::strcpy(names.instances[0].name, "game1");
  std::strcpy(names.instances[1].name, "game2");
  names.instances[1].state = metrics::kInstanceDisabled;
  metrics::publish_routing(*table, names);
  ASSERT_TRUE(metrics::read_routing(*table, out));
  EXPECT_EQ(std::memcmp(&out, &names, sizeof names), 0);
  EXPECT_EQ(table->names.generation.load() % 2, 0u);
}

TEST(RoutingTable, AWriterKilledWhilePublishingLeavesTheLastWholeTable) {
  auto table = std::make_unique<metrics::RoutingTable>();
  metrics::RoutingNames names{};
  names.instance_count = 1;
  std::strcpy(names.instances[0].name, "game1");
  names.instances[0].counts[metrics::kInstanceMessagesSent] = 41;
  metrics::publish_routing(*table, names);
  // The next publish, cut off half-way: the generation is odd and the copy
  // it was writing holds part of another table.
  const std::uint64_t whole = table->names.generation.load();
  table->names.generation.store(whole + 1);
  metrics::RoutingNames& written = table->names.copies[(whole / 2 + 1) % 2];
  std::strcpy(written.instances[0].name, "game2");
  written.instances[0].counts[metrics::kInstanceMessagesSent] = 7;

  metrics::RoutingNames out{};
  ASSERT_TRUE(metrics::read_routing(*table, out)) << "a successor reads the last whole table";
  EXPECT_STREQ(out.instances[0].name, "game1");
  EXPECT_EQ(out.instances[0].counts[metrics::kInstanceMessagesSent], 41u);

  // The successor publishes over the torn copy; readers see its table.
  names.instances[0].counts[metrics::kInstanceMessagesSent] = 42;
  metrics::publish_routing(*table, names);
  ASSERT_TRUE(metrics::read_routing(*table, out));
  EXPECT_STREQ(out.instances[0].name, "game1");
  EXPECT_EQ(out.instances[0].counts[metrics::kInstanceMessagesSent], 42u);
  EXPECT_EQ(table->names.generation.load() % 2, 0u);
}

TEST(CloseReason, NamesRoundTrip) {
  for (int i = 0; i < static_cast<int>(CloseReason::kCount); ++i) {
    const auto r = static_cast<CloseReason>(i);
    EXPECT_EQ(close_reason_from(to_string(r)), r);
  }
  EXPECT_EQ(to_string(CloseReason::kRpmExceeded), "rpm_exceeded");
  EXPECT_FALSE(close_reason_from("nope").has_value());
}

}  // namespace
}  // namespace gatehouse
