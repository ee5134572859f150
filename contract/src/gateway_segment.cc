#include "gatehouse/contract/gateway_segment.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>

#include "gatehouse/contract/layout.h"
#include "gatehouse/contract/shm_checks.h"
#include "gatehouse/shm/session_table.h"
#include "gatehouse/shm/violation.h"

namespace gatehouse {

std::string ring_region_name(RingKind kind, std::uint32_t worker) {
  const char* prefix = "";
  switch (kind) {
    case RingKind::kFrontendToWorker:
      prefix = "ring/fe-w/";
      break;
    case RingKind::kWorkerToFrontend:
      prefix = "ring/w-fe/";
      break;
    case RingKind::kWorkerToBridge:
      prefix = "ring/w-br/";
      break;
    case RingKind::kBridgeToWorker:
      prefix = "ring/br-w/";
      break;
  }
  return prefix + std::to_string(worker);
}

std::vector<shm::RegionSpec> gateway_regions(const Settings& settings) {
  std::vector<shm::RegionSpec> regions;
  regions.push_back({"control", sizeof(ControlBlock), [settings](std::span<std::byte> r) {
                       auto* c = new (r.data()) ControlBlock{};
                       c->settings[0] = settings;
                     }});
  regions.push_back({"metrics", sizeof(MetricsBlock),
                     [](std::span<std::byte> r) { new (r.data()) MetricsBlock{}; }});
  regions.push_back({"sessions",
                     shm::SlotTable::region_bytes(settings.max_connections, sizeof(Session)),
                     [slots = settings.max_connections](std::span<std::byte> r) {
                       shm::SlotTable::initialise(r, slots, sizeof(Session));
                     }});
  const std::size_t capacity = settings.ring_bytes;
  for (std::uint32_t w = 0; w < settings.workers; ++w) {
    regions.push_back({"journal/" + std::to_string(w), sizeof(Journal), {}});  // zero: idle
    for (RingKind kind : {RingKind::kFrontendToWorker, RingKind::kWorkerToFrontend,
                          RingKind::kWorkerToBridge, RingKind::kBridgeToWorker}) {
      regions.push_back(
          {ring_region_name(kind, w), shm::SpscRing::region_bytes(capacity),
           [capacity](std::span<std::byte> r) { shm::SpscRing::initialise(r, capacity); }});
    }
  }
  return regions;
}

GatewaySegment GatewaySegment::create(const std::string& name, const Settings& settings) {
  return GatewaySegment(shm::Segment::create(name, kLayoutVersion, gateway_regions(settings)));
}

GatewaySegment GatewaySegment::attach(const std::string& name) {
  return GatewaySegment(shm::Segment::attach(name, kLayoutVersion));
}

GatewaySegment::GatewaySegment(shm::Segment segment) : segment_(std::move(segment)) {
  const auto region = segment_.region("control");
  if (region.size() < sizeof(ControlBlock)) {
    throw std::runtime_error("control region is smaller than this build's ControlBlock");
  }
  control_ = std::launder(reinterpret_cast<ControlBlock*>(region.data()));
  const auto metrics = segment_.region("metrics");
  if (metrics.size() < sizeof(MetricsBlock)) {
    throw std::runtime_error("metrics region is smaller than this build's MetricsBlock");
  }
  metrics_ = std::launder(reinterpret_cast<MetricsBlock*>(metrics.data()));
  const Settings first = settings();
  workers_ = first.workers;
  slots_ = first.max_connections;
}

// A sequence lock over two copies. The generation is even when no publish
// is running, and 2 x the publishes so far; the current copy is
// settings[generation / 2 % 2]. A publish makes the generation odd, writes
// the other copy, then makes it even again, so the copy a reader takes is
// rewritten only by the publish after next: the read is whole if the
// generation has not gone past that publish's start when it is done.
// The copies are read and written a word at a time with atomics (no fences:
// GCC's TSan has none): the reader's acquire loads keep its second look at
// the generation after them, the writer's release stores keep its odd
// generation before them. A read that overlaps a publish is discarded, never
// a data race.
namespace {

constexpr std::size_t kSettingsWords = sizeof(Settings) / sizeof(std::uint64_t);
static_assert(sizeof(Settings) % sizeof(std::uint64_t) == 0 &&
              alignof(Settings) >= alignof(std::uint64_t));

std::uint64_t* words_of(const Settings& s) noexcept {
  return reinterpret_cast<std::uint64_t*>(const_cast<Settings*>(&s));
}

/// Reads that overlap a publish before a reader gives up: the supervisor
/// publishes on a reload, so this many in a row means a writer that never
/// stops (corrupt, or hostile), not bad luck.
constexpr std::uint32_t kMaxTornReads = 1u << 20;

/// One whole copy of the current settings (unchecked).
Settings read_settings(const ControlBlock& control) {
  for (std::uint32_t tries = 0;; ++tries) {
    if (tries == kMaxTornReads) {
      shm::violation(
          "control: settings_generation = " + std::to_string(control.settings_generation.load()) +
          " (changed during " + std::to_string(kMaxTornReads) + " reads in a row)");
    }
    const std::uint64_t seen =
        control.settings_generation.load(std::memory_order_acquire) & ~std::uint64_t{1};
    Settings copy;
    const std::uint64_t* from = words_of(control.settings[seen / 2 % 2]);
    std::uint64_t* to = words_of(copy);
    for (std::size_t i = 0; i < kSettingsWords; ++i) {
      to[i] = std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(from[i]))
                  .load(std::memory_order_acquire);
    }
    // A difference, not seen + 2: a generation near 2^64 (a corrupt one)
    // would make the sum wrap and this loop never end.
    if (control.settings_generation.load(std::memory_order_relaxed) - seen <= 2) return copy;
  }
}

}  // namespace

Settings GatewaySegment::settings() const {
  const Settings s = read_settings(*control_);
  check_settings(s, "settings");
  // workers_ is 0 only while the constructor reads the first copy.
  if (workers_ != 0 && (s.workers != workers_ || s.max_connections != slots_)) {
    shm::violation("control: settings: workers " + std::to_string(s.workers) +
                   " and max_connections " + std::to_string(s.max_connections) +
                   " differ from the segment's " + std::to_string(workers_) + " and " +
                   std::to_string(slots_) + " (a reload never changes them)");
  }
  return s;
}

void GatewaySegment::publish_settings(const Settings& settings) noexcept {
  const std::uint64_t generation = control_->settings_generation.load(std::memory_order_relaxed);
  control_->settings_generation.store(generation + 1, std::memory_order_relaxed);
  const std::uint64_t* from = words_of(settings);
  std::uint64_t* to = words_of(control_->settings[(generation / 2 + 1) % 2]);
  for (std::size_t i = 0; i < kSettingsWords; ++i) {
    std::atomic_ref<std::uint64_t>(to[i]).store(from[i], std::memory_order_release);
  }
  control_->settings_generation.store(generation + 2, std::memory_order_release);
}

void GatewaySegment::publish_disabled_backends(const std::vector<std::string>& names) noexcept {
  DisabledBackendNames list{};
  for (const std::string& name : names) {
    if (list.count == kMaxDisabledBackends) break;
    std::memcpy(list.names[list.count++], name.data(),
                std::min(name.size(), metrics::kRoutingNameBytes - 1));
  }
  seqlock_publish(control_->disabled_backends.generation, control_->disabled_backends.list, list);
}

std::vector<std::string> GatewaySegment::disabled_backends() const {
  DisabledBackendNames list{};
  std::vector<std::string> names;
  if (!seqlock_read(control_->disabled_backends.generation, control_->disabled_backends.list,
                    list)) {
    return names;
  }
  for (std::uint32_t i = 0; i < std::min(list.count, kMaxDisabledBackends); ++i) {
    names.emplace_back(list.names[i], strnlen(list.names[i], metrics::kRoutingNameBytes));
  }
  return names;
}

void GatewaySegment::check_worker(std::uint32_t worker) const {
  if (worker >= workers_) {
    throw shm::SegmentError("worker " + std::to_string(worker) + " of a segment of " +
                            std::to_string(workers_) + " workers");
  }
}

shm::SpscRing GatewaySegment::ring(RingKind kind, std::uint32_t worker) const {
  check_worker(worker);
  const std::string name = ring_region_name(kind, worker);
  return shm::SpscRing::attach(segment_.region(name), name);
}

/// The table's slot count is the settings' max_connections, which the
/// processes split between workers (worker_of_slot).
template <class Table>
Table GatewaySegment::checked_slots(Table table) const {
  if (table.slots() != slots_) {
    throw std::runtime_error("session table has " + std::to_string(table.slots()) +
                             " slots; the settings say max_connections " + std::to_string(slots_));
  }
  return table;
}

shm::SessionTable<Session> GatewaySegment::sessions() const {
  return checked_slots(shm::SessionTable<Session>::attach(segment_.region("sessions")));
}

shm::SlotTable GatewaySegment::session_slots() const {
  return checked_slots(shm::SlotTable::attach_untyped(segment_.region("sessions")));
}

Journal& GatewaySegment::journal(std::uint32_t worker) const {
  check_worker(worker);
  const auto region = segment_.region("journal/" + std::to_string(worker));
  if (region.size() < sizeof(Journal)) {
    throw std::runtime_error("journal region is smaller than this build's Journal");
  }
  Journal& journal = *std::launder(reinterpret_cast<Journal*>(region.data()));
  check_journal(journal, worker);
  return journal;
}

}  // namespace gatehouse
