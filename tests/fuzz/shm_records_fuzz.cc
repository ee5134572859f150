// Fuzz target: a ring of the gateway segment as another process could leave
// it. The input is a ring descriptor's cursors (and, in one mode, its
// constants) and the bytes of its buffer; the target attaches to the ring,
// reads it with RingConsumer and hands every record to the RecordReader of
// one of the four rings, as the frontend, a worker or the bridge does. What
// may happen: records decode, or the reader reports a violation (here the
// handler throws instead of aborting, so the fuzzer goes on), or attach
// refuses the ring. Nothing may read outside the ring, loop, or hand on a
// record that breaks the contract.
//
// Input:
//   byte 0     ring kind (bits 0-1); bit 2: the next 24 bytes of data
//              replace the descriptor's magic, capacity and max_payload;
//              bridges - 1 (bits 3-4); a bridge ring's bridge (bits 5-6, modulo)
//   byte 1     workers - 1 (bits 0-1), this ring's worker (bits 2-3, modulo)
//   bytes 2-25 head, tail, taken (u64, little-endian)
//   the rest   the ring's buffer, from offset 0 (kCapacity bytes at most)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <type_traits>

#include "../throwing_violations.h"
#include "gatehouse/contract/close_reason.h"
#include "gatehouse/contract/record_reader.h"
#include "gatehouse/contract/shm_checks.h"
#include "gatehouse/shm/spsc_ring.h"
#include "gatehouse/shm/violation.h"

namespace gatehouse {
namespace {

constexpr std::size_t kCapacity = 1024;
constexpr std::size_t kRegionBytes = shm::SpscRing::region_bytes(kCapacity);
constexpr std::size_t kMaxConnections = 16;

std::uint64_t u64_at(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// What every decoded record must be, whatever the ring: the checks
/// RecordReader promises (a failure is a bug, not a violation).
template <RingKind Kind, class Header>
void expect_checked(const ipc::Parsed<Header>& p, const Settings& settings, std::uint32_t worker,
                    std::uint32_t peer) {
  const auto owner = worker_of(p.header.conn, settings);
  if (!owner || *owner != worker) __builtin_trap();
  if constexpr (Kind == RingKind::kWorkerToBridge) {
    // Bridge `peer`'s ring: its users' streams, its slots' logins.
    if constexpr (std::is_same_v<Header, ipc::AuthRequest>) {
      if (bridge_of_slot(shm::ConnectionId(p.header.conn).slot(), settings) != peer) {
        __builtin_trap();
      }
    } else if (bridge_of_user(p.header.user_id, settings) != peer) {
      __builtin_trap();
    }
  }
  if constexpr (std::is_same_v<Header, ipc::ConnClosed> ||
                std::is_same_v<Header, ipc::CloseCommand>) {
    if (p.header.reason >= static_cast<std::uint32_t>(CloseReason::kCount)) __builtin_trap();
  }
  if constexpr (std::is_same_v<Header, ipc::ConnOpened>) {
    if (p.header.listener >= settings.listener_count) __builtin_trap();
    if (p.header.accepted_unix_ms < 0 || p.header.accepted_unix_ms > kMaxUnixMs) __builtin_trap();
  }
}

template <RingKind Kind>
void read_ring(shm::SpscRing ring, const Settings& settings, std::uint32_t worker,
               std::uint32_t peer) {
  const ipc::RecordReader<Kind> reader(worker, settings, peer);
  shm::RingConsumer consumer(ring);
  const std::byte* const begin = ring.data();
  const std::byte* const end = begin + ring.capacity();
  // Every record the ring could hold, then stop (a corrupt ring cannot make
  // the reader loop).
  for (std::size_t polls = 0; polls < kCapacity / 8 + 1; ++polls) {
    const std::size_t n = consumer.poll(
        [&](const shm::Record& r) {
          if (r.payload.data() < begin || r.payload.data() + r.payload.size() > end) {
            __builtin_trap();
          }
          if (r.payload.size() > ring.max_payload()) __builtin_trap();
          reader.visit(
              r, [&](const auto& parsed) { expect_checked<Kind>(parsed, settings, worker, peer); });
        },
        kCapacity);
    if (n == 0) break;
    consumer.commit();
  }
}

}  // namespace
}  // namespace gatehouse

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gatehouse;
  static const testing::ThrowingViolations throwing;  // for the whole run
  if (size < 26) return 0;
  const auto kind = static_cast<RingKind>(data[0] & 3);
  const bool corrupt_constants = (data[0] & 4) != 0;
  Settings settings{};
  settings.frontends = 1;
  // Up to four bridges: a bridge ring's reader refuses another bridge's
  // users and logins.
  settings.bridges = 1 + ((data[0] >> 3) & 3);
  settings.workers = 1 + (data[1] & 3);
  settings.max_connections = kMaxConnections;
  settings.listener_count = 2;
  const std::uint32_t worker = ((data[1] >> 2) & 3) % settings.workers;
  const bool of_bridge = kind == RingKind::kWorkerToBridge || kind == RingKind::kBridgeToWorker;
  const std::uint32_t peer = of_bridge ? ((data[0] >> 5) & 3) % settings.bridges : 0;

  // Exactly the region, so that a read past it is one past the allocation.
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  const std::unique_ptr<std::byte, Free> memory(
      static_cast<std::byte*>(std::aligned_alloc(shm::kFalseSharingRange, kRegionBytes)));
  const std::span<std::byte> region(memory.get(), kRegionBytes);
  std::memset(region.data(), 0, region.size());
  shm::SpscRing formatted = shm::SpscRing::initialise(region, kCapacity);
  shm::RingDescriptor& d = formatted.descriptor();
  d.head.store(u64_at(data + 2));
  d.tail.store(u64_at(data + 10));
  d.taken.store(u64_at(data + 18));
  std::span<const std::uint8_t> rest(data + 26, size - 26);
  if (corrupt_constants && rest.size() >= 24) {
    d.magic = u64_at(rest.data());
    d.capacity = u64_at(rest.data() + 8);
    d.max_payload = u64_at(rest.data() + 16);
    rest = rest.subspan(24);
  }
  std::memcpy(formatted.data(), rest.data(), std::min(rest.size(), kCapacity));

  try {
    const shm::SpscRing ring = shm::SpscRing::attach(region, ring_region_name(kind, worker, peer));
    if (ring.capacity() != kCapacity) __builtin_trap();  // only this region's ring attaches
    switch (kind) {
      case RingKind::kFrontendToWorker:
        read_ring<RingKind::kFrontendToWorker>(ring, settings, worker, peer);
        break;
      case RingKind::kWorkerToFrontend:
        read_ring<RingKind::kWorkerToFrontend>(ring, settings, worker, peer);
        break;
      case RingKind::kWorkerToBridge:
        read_ring<RingKind::kWorkerToBridge>(ring, settings, worker, peer);
        break;
      case RingKind::kBridgeToWorker:
        read_ring<RingKind::kBridgeToWorker>(ring, settings, worker, peer);
        break;
    }
  } catch (const testing::ShmViolation&) {
    // the reader refused the ring: what the process would exit on
  } catch (const std::runtime_error&) {
    // attach refused the descriptor
  }
  return 0;
}
