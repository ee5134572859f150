// GatewaySegment: the one typed accessor of the gateway's segment. What a
// process attaching to it may rely on: the regions its settings ask for, the
// settings as the creator wrote them, typed views of the session table and
// the journals, and a refusal of a segment of another layout version.
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
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

TEST(GatewaySegment, RingRegionsAreNamedByDirectionAndWorker) {
  EXPECT_EQ(ring_region_name(RingKind::kFrontendToWorker, 0), "ring/fe-w/0");
  EXPECT_EQ(ring_region_name(RingKind::kWorkerToFrontend, 1), "ring/w-fe/1");
  EXPECT_EQ(ring_region_name(RingKind::kWorkerToBridge, 2), "ring/w-br/2");
  EXPECT_EQ(ring_region_name(RingKind::kBridgeToWorker, 63), "ring/br-w/63");
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
  EXPECT_EQ(table->generation.load() % 2, 0u);
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
