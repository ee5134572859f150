// The gateway's use of the shared-memory segment: which regions exist, the
// control block, and the settings every process reads from it.
//
//   region "control"        ControlBlock: settings, drain flag, process status
//   region "metrics"        MetricsBlock: one metrics shard per process role
//   region "sessions"       the session table (values: the worker's Session)
//   region "ring/fe-w/<i>"  frontend  -> worker i
//   region "ring/w-fe/<i>"  worker i  -> frontend
//   region "ring/w-br/<i>"  worker i  -> bridge
//   region "ring/br-w/<i>"  bridge    -> worker i
//   region "journal/<i>"    worker i's crash journal (agent-worker/.../journal.h)
//
// The supervisor parses the configuration and writes it into the control
// block at creation; the other processes take their settings from there, so
// they all run with one configuration and need only the segment name and
// their doorbell fds on the command line.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/common/frame_numbering.h"
#include "gatehouse/common/metrics.h"
#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/segment.h"
#include "gatehouse/shm/session_table.h"
#include "gatehouse/shm/spsc_ring.h"

namespace gatehouse {

inline constexpr std::uint32_t kMaxWorkers = 64;
inline constexpr std::uint32_t kMaxBackends = 8;
inline constexpr std::size_t kAddressBytes = 128;
inline constexpr std::size_t kPathBytes = 256;
inline constexpr std::uint32_t kMaxListeners = 16;

enum class LoginMode : std::uint32_t { kAcceptAny = 0, kStaticTokens = 1 };

/// Bits of Settings::listener_crypto: what the clients of a listener may
/// speak (shared/protocol.md section 3, docs/protocol-modern.md). A client
/// that uses something else is kicked with crypto_refused.
enum CryptoModes : std::uint8_t {
  kCryptoClear = 1,   ///< no key exchange at all (gonet2 allowed it)
  kCryptoLegacy = 2,  ///< get_seed_req: 31-bit DH + RC4
  kCryptoModern = 4,  ///< key_exchange_req: X25519 + ChaCha20-Poly1305
  kCryptoAny = kCryptoClear | kCryptoLegacy | kCryptoModern,
};
/// "modern", "modern+legacy", "any", ...: nullopt for an unknown name or an
/// empty set.
std::optional<std::uint8_t> parse_crypto_modes(std::string_view text);
/// The inverse: "clear+legacy+modern" order, "any" for all three.
std::string crypto_modes_text(std::uint8_t modes);

/// Everything configurable that a child process needs. Fixed-size PODs only.
struct Settings {
  std::uint32_t workers;
  std::uint32_t max_connections;
  std::uint32_t max_connections_per_ip;  ///< per IPv4 address / IPv6 /64; 0 = no limit
  std::uint32_t max_frame;               ///< largest client payload accepted
  std::uint32_t read_timeout_ms;         ///< dead-link deadline
  std::uint32_t rpm_limit;               ///< client frames per minute per session
  std::uint32_t txqueuelen;              ///< frames queued to one client before slow_consumer
  std::uint32_t sockbuf;                 ///< SO_RCVBUF/SO_SNDBUF, 0 = kernel default
  std::uint32_t drain_timeout_ms;
  std::uint32_t linger_ms;  ///< how long a closing socket waits for the client's FIN
  std::uint32_t log_level;  ///< spdlog level
  std::uint64_t ring_bytes;
  std::uint32_t backend_count;
  FrameNumbering numbering;
  char backends[kMaxBackends][kAddressBytes];
  LoginMode login_mode;
  std::uint32_t idle_spin_us;  ///< BackoffIdler spin before parking
  char login_file[kPathBytes];
  /// How long sessions wait for a game service that went away (re-opened
  /// streams, a broken batched link) before they are kicked.
  std::uint32_t backend_wait_ms;
  std::uint32_t listener_count;
  std::uint8_t listener_crypto[kMaxListeners];  ///< CryptoModes of each --listen, in order
};

/// Liveness of one child process, written by the process itself.
struct ProcessStatus {
  std::atomic<std::int32_t> pid;
  std::atomic<std::int64_t> heartbeat_ns;  ///< CLOCK_MONOTONIC
};

/// ControlBlock::draining: 0 serving; the drain's two phases.
inline constexpr std::uint32_t kDrainNoNewConnections = 1;  ///< sessions go on (drain-wait)
inline constexpr std::uint32_t kDrainClosing = 2;           ///< every session is closed

struct ControlBlock {
  /// Set by the supervisor on SIGTERM: kDrainNoNewConnections, then
  /// kDrainClosing (at once, or after drain-wait).
  std::atomic<std::uint32_t> draining;
  std::uint32_t reserved;
  /// Two copies of the settings under a sequence lock (the reader and the
  /// one writer, the supervisor's reload, are GatewaySegment::settings()
  /// and publish_settings()).
  std::atomic<std::uint64_t> settings_generation;
  Settings settings[2];
  ProcessStatus frontend;
  ProcessStatus bridge;
  ProcessStatus workers[kMaxWorkers];
};

/// One metrics shard per role (docs/metrics.md).
struct MetricsBlock {
  metrics::Shard supervisor;
  metrics::Shard frontend;
  metrics::Shard bridge;
  metrics::Shard workers[kMaxWorkers];
};

enum class RingKind { kFrontendToWorker, kWorkerToFrontend, kWorkerToBridge, kBridgeToWorker };
std::string ring_region_name(RingKind kind, std::uint32_t worker);

/// The regions of a gateway segment, for its creator: `session_bytes` and
/// `journal_bytes` are sizeof the worker's Session and Journal.
std::vector<shm::RegionSpec> gateway_regions(const Settings& settings, std::size_t session_bytes,
                                             std::size_t journal_bytes);

/// Typed access to an attached gateway segment.
class GatewaySegment {
 public:
  explicit GatewaySegment(shm::Segment segment);

  ControlBlock& control() const noexcept { return *control_; }
  MetricsBlock& metrics() const noexcept { return *metrics_; }
  /// The current settings (a copy: a reload may change them).
  Settings settings() const noexcept;
  /// Bumped by every publish_settings(): a process that applies settings
  /// live polls it.
  std::uint64_t settings_generation() const noexcept {
    return control_->settings_generation.load(std::memory_order_acquire);
  }
  /// Supervisor only (one writer): makes `settings` the current settings.
  void publish_settings(const Settings& settings) noexcept;
  shm::SpscRing ring(RingKind kind, std::uint32_t worker) const;
  std::span<std::byte> sessions() const { return segment_.region("sessions"); }
  std::span<std::byte> journal(std::uint32_t worker) const {
    return segment_.region("journal/" + std::to_string(worker));
  }
  shm::Segment& segment() noexcept { return segment_; }
  /// A drain has begun: no new connections.
  bool draining() const noexcept { return control_->draining.load(std::memory_order_acquire) != 0; }
  /// The drain closes every session now (reason shutdown).
  bool closing_sessions() const noexcept {
    return control_->draining.load(std::memory_order_acquire) >= kDrainClosing;
  }

 private:
  shm::Segment segment_;
  ControlBlock* control_;
  MetricsBlock* metrics_;
};

/// Parses "a,b,c" of fds as passed by the supervisor; throws on garbage.
std::vector<int> parse_fd_list(const std::string& list);

/// CLOCK_MONOTONIC in ns: comparable across processes.
std::int64_t monotonic_ns() noexcept;

/// The worker that owns session slot `slot`. The session table is split into
/// one contiguous range of slots per worker (the frontend allocates with
/// SlotTable::set_partitions(workers)), so a worker's sessions share memory
/// pages only with each other.
inline std::uint32_t worker_of_slot(std::uint32_t slot, const Settings& s) noexcept {
  return slot / shm::SlotTable::partition_slots(s.max_connections, s.workers);
}

/// The duty-cycle idler of a gateway process, as the settings say.
shm::BackoffIdler make_idler(const Settings& settings) noexcept;

}  // namespace gatehouse
