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

std::string ring_region_name(RingKind kind, std::uint32_t worker, std::uint32_t peer) {
  // The first frontend's and bridge's rings keep the names they had before
  // there were several (the ring label of the metrics, dashboards, alerts).
  const auto named = [peer](const char* role) {
    return peer == 0 ? std::string(role) : role + std::to_string(peer);
  };
  switch (kind) {
    case RingKind::kFrontendToWorker:
      return "ring/" + named("fe") + "-w/" + std::to_string(worker);
    case RingKind::kWorkerToFrontend:
      return "ring/w-" + named("fe") + "/" + std::to_string(worker);
    case RingKind::kWorkerToBridge:
      return "ring/w-" + named("br") + "/" + std::to_string(worker);
    case RingKind::kBridgeToWorker:
      return "ring/" + named("br") + "-w/" + std::to_string(worker);
  }
  return "ring/?";
}

std::vector<shm::RegionSpec> gateway_regions(const Settings& settings) {
  std::vector<shm::RegionSpec> regions;
  regions.push_back({"control", sizeof(ControlBlock), [settings](std::span<std::byte> r) {
                       auto* c = new (r.data()) ControlBlock{};
                       c->settings.copies[0] = settings;
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
    const auto add_ring = [&](RingKind kind, std::uint32_t peer) {
      regions.push_back(
          {ring_region_name(kind, w, peer), shm::SpscRing::region_bytes(capacity),
           [capacity](std::span<std::byte> r) { shm::SpscRing::initialise(r, capacity); }});
    };
    for (std::uint32_t f = 0; f < settings.frontends; ++f) {
      add_ring(RingKind::kFrontendToWorker, f);
      add_ring(RingKind::kWorkerToFrontend, f);
    }
    for (std::uint32_t b = 0; b < settings.bridges; ++b) {
      add_ring(RingKind::kWorkerToBridge, b);
      add_ring(RingKind::kBridgeToWorker, b);
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
  frontends_ = first.frontends;
  bridges_ = first.bridges;
  slots_ = first.max_connections;
}

namespace {

/// Reads that overlap a publish before a reader gives up: the supervisor
/// publishes on a reload, so this many in a row means a writer that never
/// stops (corrupt, or hostile), not bad luck.
constexpr std::uint32_t kMaxTornReads = 1u << 20;

/// One whole copy of the current settings (unchecked).
Settings read_settings(const ControlBlock& control) {
  Settings copy;
  if (!control.settings.read(copy, kMaxTornReads)) {
    shm::violation(
        "control: settings generation = " + std::to_string(control.settings.generation.load()) +
        " (changed during " + std::to_string(kMaxTornReads) + " reads in a row)");
  }
  return copy;
}

}  // namespace

Settings GatewaySegment::settings() const {
  const Settings s = read_settings(*control_);
  check_settings(s, "settings");
  // workers_ is 0 only while the constructor reads the first copy.
  if (workers_ != 0 && (s.workers != workers_ || s.frontends != frontends_ ||
                        s.bridges != bridges_ || s.max_connections != slots_)) {
    shm::violation("control: settings: workers " + std::to_string(s.workers) + ", frontends " +
                   std::to_string(s.frontends) + ", bridges " + std::to_string(s.bridges) +
                   " and max_connections " + std::to_string(s.max_connections) +
                   " differ from the segment's " + std::to_string(workers_) + ", " +
                   std::to_string(frontends_) + ", " + std::to_string(bridges_) + " and " +
                   std::to_string(slots_) + " (a reload never changes them)");
  }
  return s;
}

void GatewaySegment::publish_settings(const Settings& settings) noexcept {
  control_->settings.publish(settings);
}

void GatewaySegment::publish_disabled_backends(const std::vector<std::string>& names) noexcept {
  DisabledBackendNames list{};
  for (const std::string& name : names) {
    if (list.count == kMaxDisabledBackends) break;
    std::memcpy(list.names[list.count++], name.data(),
                std::min(name.size(), metrics::kRoutingNameBytes - 1));
  }
  control_->disabled_backends.publish(list);
}

std::vector<std::string> GatewaySegment::disabled_backends() const {
  DisabledBackendNames list{};
  std::vector<std::string> names;
  if (!control_->disabled_backends.published() || !control_->disabled_backends.read(list)) {
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

shm::SpscRing GatewaySegment::ring(RingKind kind, std::uint32_t worker, std::uint32_t peer) const {
  check_worker(worker);
  const bool of_frontend =
      kind == RingKind::kFrontendToWorker || kind == RingKind::kWorkerToFrontend;
  const std::uint32_t peers = of_frontend ? frontends_ : bridges_;
  if (peer >= peers) {
    const char* role = of_frontend ? "frontend" : "bridge";
    throw shm::SegmentError(std::string(role) + " " + std::to_string(peer) + " of a segment of " +
                            std::to_string(peers) + " " + role + "s");
  }
  const std::string name = ring_region_name(kind, worker, peer);
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
