// The gateway's shared-memory segment: which regions exist and the one typed
// accessor every process uses to reach them. Nothing outside contract/ names
// a region or lays out a struct in the segment (tools/check-architecture.sh).
//
//   region "control"        ControlBlock: settings, drain flag, process status (control.h)
//   region "metrics"        MetricsBlock: one metrics shard per process role, and the
//                           bridge's routing table (metrics.h)
//   region "sessions"       the session table of Session values (session.h)
//   region "ring/fe-w/<i>"  frontend  -> worker i   (records.h); with several
//                           frontends, frontend f > 0's are "ring/fe<f>-w/<i>"
//   region "ring/w-fe/<i>"  worker i  -> frontend (frontend f > 0: "ring/w-fe<f>/<i>")
//   region "ring/w-br/<i>"  worker i  -> bridge (bridge b > 0: "ring/w-br<b>/<i>")
//   region "ring/br-w/<i>"  bridge    -> worker i (bridge b > 0: "ring/br<b>-w/<i>")
//   region "journal/<i>"    worker i's crash journal (journal.h)
//
// The segment carries layout.h's kLayoutVersion: a process of another layout
// refuses to attach, with a message that says so.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gatehouse/contract/control.h"
#include "gatehouse/contract/journal.h"
#include "gatehouse/contract/session.h"
#include "gatehouse/shm/segment.h"
#include "gatehouse/shm/session_table.h"
#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse {

enum class RingKind { kFrontendToWorker, kWorkerToFrontend, kWorkerToBridge, kBridgeToWorker };
/// `peer`: the frontend of a frontend ring (fe-w, w-fe), the bridge of a
/// bridge ring (w-br, br-w).
std::string ring_region_name(RingKind kind, std::uint32_t worker, std::uint32_t peer = 0);

/// The regions of a gateway segment with these settings, for its creator.
std::vector<shm::RegionSpec> gateway_regions(const Settings& settings);

/// Typed access to a gateway segment.
class GatewaySegment {
 public:
  /// Creates /dev/shm/`name` laid out for `settings` (the supervisor).
  static GatewaySegment create(const std::string& name, const Settings& settings);
  /// Attaches a ready segment of this build's layout; throws shm::SegmentError
  /// naming the cause (absent, another layout version, half-initialised).
  static GatewaySegment attach(const std::string& name);

  explicit GatewaySegment(shm::Segment segment);

  ControlBlock& control() const noexcept { return *control_; }
  MetricsBlock& metrics() const noexcept { return *metrics_; }
  /// The current settings (a copy: a reload may change them), checked
  /// (check_settings, shm_checks.h) and of the shape the segment was attached
  /// with (workers, max_connections: a reload never changes them): a copy
  /// that is not is a violation (shm/violation.h).
  Settings settings() const;
  /// Bumped by every publish_settings(): a process that applies settings
  /// live polls it.
  std::uint64_t settings_generation() const noexcept {
    return control_->settings.generation.load(std::memory_order_acquire);
  }
  /// Supervisor only (one writer): makes `settings` the current settings.
  void publish_settings(const Settings& settings) noexcept;
  /// Supervisor only (one writer): the game-service instances out of
  /// rotation from now on (ControlBlock::disabled_backends); the caller keeps
  /// to kMaxDisabledBackends names shorter than metrics::kRoutingNameBytes.
  void publish_disabled_backends(const std::vector<std::string>& names) noexcept;
  /// The instances out of rotation as last published (none if never).
  std::vector<std::string> disabled_backends() const;
  /// Bumped by every publish_disabled_backends(): the bridge polls it.
  std::uint64_t disabled_backends_generation() const noexcept {
    return control_->disabled_backends.generation.load(std::memory_order_acquire);
  }
  /// Throws for a worker, frontend or bridge beyond the settings' count or a
  /// region that is not a ring (as at attach: the caller has not started
  /// yet). `peer`: the frontend of a frontend ring, the bridge of a bridge
  /// ring.
  shm::SpscRing ring(RingKind kind, std::uint32_t worker, std::uint32_t peer = 0) const;
  /// The session table, its values checked to be this build's Session and
  /// its slots max_connections (throws otherwise).
  shm::SessionTable<Session> sessions() const;
  /// The same table for a process that only allocates and releases ids and
  /// never reads a Session (the frontend).
  shm::SlotTable session_slots() const;
  /// Worker `worker`'s crash journal, checked (check_journal) for its
  /// successor.
  Journal& journal(std::uint32_t worker) const;
  shm::Segment& segment() noexcept { return segment_; }
  /// A drain has begun: no new connections.
  bool draining() const noexcept { return control_->draining.load(std::memory_order_acquire) != 0; }
  /// The drain closes every session now (reason shutdown).
  bool closing_sessions() const noexcept {
    return control_->draining.load(std::memory_order_acquire) >= kDrainClosing;
  }

 private:
  void check_worker(std::uint32_t worker) const;
  template <class Table>
  Table checked_slots(Table table) const;

  shm::Segment segment_;
  ControlBlock* control_;
  MetricsBlock* metrics_;
  // The shape of the segment, from its settings at attach.
  std::uint32_t workers_ = 0;
  std::uint32_t frontends_ = 0;
  std::uint32_t bridges_ = 0;
  std::uint32_t slots_ = 0;
};

}  // namespace gatehouse
