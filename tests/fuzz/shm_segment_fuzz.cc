// Fuzz target: a gateway segment as another process could leave it. One real
// segment (in /dev/shm) is made once; each input is a list of patches to it
// (the segment header and its region directory, the control block with the
// settings, the session table, worker 0's journal, a ring descriptor, a
// session slot), and the target then does what a starting process does:
// GatewaySegment::attach, the settings, the session table, the journal, each
// ring with a consumer, and the worker's check of a session. What may
// happen: it all passes, or attach refuses (an exception), or a check reports
// a violation (here thrown, so the fuzzer goes on). Nothing may read outside
// the mapping or act on an unchecked value. The patches are undone after
// each input.
//
// Input: patches of 11 bytes: | target u8 | offset u16 (LE) | value u64 (LE) |,
// the offset taken modulo the target's size less 8.
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../throwing_violations.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/shm_checks.h"
#include "gatehouse/shm/segment.h"
#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse {
namespace {

constexpr std::uint32_t kWorkers = 2;
constexpr std::uint32_t kSlots = 4;

Settings fuzz_settings() {
  Settings s{};
  s.frontends = 1;
  s.bridges = 1;
  s.workers = kWorkers;
  s.max_connections = kSlots;
  s.ring_bytes = 4096;
  s.listener_count = 1;
  s.log_level = 2;
  return s;
}

/// The segment the inputs patch, made once for the run.
GatewaySegment& owner() {
  static GatewaySegment segment = [] {
    GatewaySegment s = GatewaySegment::create(
        "gatehouse-fuzz-segment-" + std::to_string(::getpid()), fuzz_settings());
    const auto id = s.session_slots().allocate();  // slot 0 live: a session to check
    (void)id;
    return s;
  }();
  return segment;
}

/// The bytes patch target `t` may change (found once, before any patch can
/// move a region).
std::span<std::byte> target(std::uint8_t t) {
  static const std::array<std::span<std::byte>, 6> targets = [] {
    GatewaySegment& s = owner();
    auto* header = const_cast<shm::SegmentHeader*>(&s.segment().header());
    const auto sessions = s.segment().region("sessions");
    return std::array<std::span<std::byte>, 6>{
        std::span<std::byte>(reinterpret_cast<std::byte*>(header), sizeof *header),
        std::span<std::byte>(reinterpret_cast<std::byte*>(&s.control()), sizeof(ControlBlock)),
        sessions.first(4096),                       // the table's descriptor and slot headers
        s.segment().region("journal/0").first(64),  // state, count, ring positions
        s.segment().region(ring_region_name(RingKind::kWorkerToBridge, 1)).first(512),
        sessions.subspan(4096, sizeof(Session)),  // slot 0's value: after the headers' page
    };
  }();
  return targets[t % targets.size()];
}

/// What a starting process reads, each value checked on the way.
void attach_and_read() {
  const GatewaySegment segment = GatewaySegment::attach(owner().segment().name());
  const Settings settings = segment.settings();
  const auto sessions = segment.sessions();
  (void)segment.session_slots();
  (void)segment.journal(0);
  for (std::uint32_t w = 0; w < settings.workers; ++w) {
    for (RingKind kind : {RingKind::kFrontendToWorker, RingKind::kWorkerToFrontend,
                          RingKind::kWorkerToBridge, RingKind::kBridgeToWorker}) {
      const shm::RingConsumer consumer(segment.ring(kind, w));
      (void)consumer;
    }
  }
  const shm::ConnectionId id = sessions.live_id(0);
  if (const Session* s = sessions.find(id)) {
    check_session(*s, id.value(), settings);
    check_session_cipher(*s, id.value());
  }
}

}  // namespace
}  // namespace gatehouse

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const gatehouse::testing::ThrowingViolations throwing;  // for the whole run
  struct Undo {
    std::byte* at;
    std::uint64_t before;
  };
  std::vector<Undo> undo;
  for (std::size_t i = 0; i + 11 <= size && undo.size() < 16; i += 11) {
    const std::span<std::byte> bytes = gatehouse::target(data[i]);
    std::uint16_t offset;
    std::memcpy(&offset, data + i + 1, sizeof offset);
    std::byte* at = bytes.data() + offset % (bytes.size() - 7);
    Undo u{at, 0};
    std::memcpy(&u.before, at, sizeof u.before);
    undo.push_back(u);
    std::memcpy(at, data + i + 3, sizeof u.before);
  }
  try {
    gatehouse::attach_and_read();
  } catch (const gatehouse::testing::ShmViolation&) {
    // a check refused a value: what the process would exit on
  } catch (const std::runtime_error&) {
    // attach refused the segment (shm::SegmentError among them)
  }
  for (auto u = undo.rbegin(); u != undo.rend(); ++u) {
    std::memcpy(u->at, &u->before, sizeof u->before);
  }
  return 0;
}
