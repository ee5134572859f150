// Metrics in shared memory (docs/metrics.md). Each process writes only its
// own Shard, so there are no shared cache lines between processes and no
// locks; the supervisor sums the shards when Prometheus scrapes. Shards
// belong to a role (frontend, bridge, worker i, supervisor), not to a
// process: a restarted worker adds to its predecessor's counts, so counters
// never go backwards. Changing anything here changes the shm layout.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "gatehouse/contract/close_reason.h"
#include "gatehouse/contract/login_refusal.h"
#include "gatehouse/contract/seqlock.h"

namespace gatehouse::metrics {

enum Counter : std::uint32_t {
  kConnectionsAccepted,
  kConnectionsRefused,            ///< --max-connections, or out of file descriptors
  kConnectionsRefusedPerAddress,  ///< --max-connections-per-ip
  kClientFramesReceived,
  kClientBytesReceived,
  kClientFramesSent,
  kClientBytesSent,
  kLoginsOk,  ///< refused logins are counted by reason: Shard::logins_refused
  kDroppedToClient,
  kDroppedToGame,
  kGameStreamsOpened,
  kGameStreamsFailed,
  kGameMessagesReceived,
  kGameMessagesSent,
  kGameStreamsReopened,
  kGameFramesLost,
  kGameBatchesSent,                   ///< gRPC messages written on batched links
  kGameBatchesReceived,               ///< gRPC messages read from batched links
  kGameEventsResent,                  ///< events a new bridge sent again on a batched link
  kGameDuplicatesDropped,             ///< game messages a worker had delivered already
  kConnectionsRefusedRate,            ///< --connect-rate
  kConnectionsRefusedRatePerAddress,  ///< --connect-rate-per-ip
  // Issue 20 (game links): messages too large for some receiver's frame.
  kClientMessagesTooLarge,  ///< client messages not forwarded: over what every receiver can take
  kGameMessagesTooLarge,    ///< game messages dropped for a receiver whose frame cannot carry them
  kGameEventsForeign,       ///< batched game events for a session their link does not serve
  kAcceptsPaced,  ///< times the frontend waited for a --connect-rate token before accepting
  // Issue 21: the modern exchange by version (1: unauthenticated, 2: gateway key).
  kKeyExchangesV1,
  kKeyExchangesV2,
  // Issue 20 (game links): back-pressure from the worker rings to the game.
  kGameReadsPaused,  ///< game calls that stopped reading: their worker ring's backlog was full
  // Issue 15: PROXY protocol headers on proxy= listeners (docs/proxy-protocol.md).
  kProxyHeadersV1,         ///< v1 headers taken
  kProxyHeadersV2,         ///< v2 headers taken
  kProxyRefusedUntrusted,  ///< a header (or a required one's connection) not from proxy-from
  kProxyRefusedMissing,    ///< no header (or the other version) where one is required
  kProxyRefusedMalformed,  ///< a header that does not parse
  kProxyRefusedTimeout,    ///< no whole header within its deadline
  // Issue 15: KCP over UDP (docs/kcp.md). Sessions count in kConnections* too.
  kKcpSessionsAccepted,
  kKcpRefusedLimit,  ///< openers over max-connections, max-connections-per-ip, udp-sessions-per-ip
  kKcpRefusedRate,   ///< openers over connect-rate or connect-rate-per-ip
  kKcpRefusedPending,    ///< openers over udp-pending-sessions (not logged in yet)
  kKcpDatagramsDropped,  ///< for no session and not an opener, or refused by the session
  // Issue 17: SIGHUP reloads (the supervisor's shard).
  kReloadsApplied,  ///< the configuration read again was taken (then the workers roll)
  kReloadsRefused,  ///< refused: the configuration or the worker binary on disk; nothing changed
  // Issue 15: TLS and WebSocket listeners (docs/websocket.md); their
  // connections also close with reason handshake_failed.
  kHandshakesFailedTls,      ///< TLS handshakes that failed (tls, wss)
  kHandshakesFailedRequest,  ///< not a WebSocket upgrade, or a malformed one (ws, wss)
  kHandshakesFailedOrigin,   ///< an upgrade naming an origin outside ws-origins
  // Issue 16: discovery through etcd (the bridge's shard; docs/discovery.md).
  kDiscoveryPuts,        ///< instances added or moved by the watch
  kDiscoveryDeletes,     ///< instances removed by the watch
  kDiscoveryResyncs,     ///< whole views read again (etcd compacted the revision watched from)
  kDiscoveryBadReplies,  ///< etcd replies discovery could not use (v2: HTTP errors, bad JSON)
  // Issue 16: the gateway's own key in etcd (the bridge's registration thread).
  kRegistrationFailures,  ///< etcd calls of the registration that failed (etcd down, lease gone)
  kCounterCount
};

enum Gauge : std::uint32_t {
  kConnectionsOpen,
  kSessionsLoggedIn,
  kGameStreamsOpen,
  kGameEventsUnacknowledged,  ///< sent on batched links, not yet acknowledged by the game
  kGameBacklogBytes,          ///< game events waiting in the bridge for worker-ring room: bytes
  kGameBacklogEvents,         ///< ... and events
  kGameReadsPausedNow,        ///< game calls whose reads wait for a backlog to drain
  kAuthCallsInFlight,         ///< login = auth: calls to the auth service not answered yet
  kKcpSessionsOpen,           ///< of kConnectionsOpen, those over KCP
  kTlsConnectionsOpen,        ///< ... over TLS (transport=tls)
  kWsConnectionsOpen,         ///< ... over WebSocket (transport=ws)
  kWssConnectionsOpen,        ///< ... over WebSocket over TLS (transport=wss)
  /// CLOCK_MONOTONIC ns since when the discovered view may be out of date
  /// (etcd's watch is down); 0 while it is current or without discovery.
  kDiscoveryStaleSinceNs,
  kRegistrationUp,  ///< 1 while the gateway's key is in etcd (register-prefix)
  kGaugeCount
};

/// What a worker times per client frame (label `proto`).
enum Timed : std::uint32_t {
  kHeartbeat,
  kLogin,
  kGetSeed,
  kKeyExchange,
  kForward,
  kKeyExchange2,
  kTimedCount
};

enum Component : std::uint32_t { kFrontend, kWorker, kBridge, kComponentCount };

/// What an operator asked for on the admin socket (gatehousectl;
/// docs/operations.md), and whether it was done: the supervisor's shard.
enum AdminCommand : std::uint32_t {
  kAdminStatus,
  kAdminSessions,
  kAdminKick,
  kAdminBackends,
  kAdminBackendDisable,
  kAdminBackendEnable,
  kAdminConfig,
  kAdminReload,
  kAdminInvalid,  ///< not a request: an unknown command, bad arguments, a peer refused
  kAdminCommandCount
};
/// The `command` label of gatehouse_admin_commands_total, and (spaces for
/// '_') the words of the request.
inline constexpr std::array<std::string_view, kAdminCommandCount> kAdminCommandNames = {
    "status",         "sessions", "kick",   "backends", "backend_disable",
    "backend_enable", "config",   "reload", "invalid"};
enum AdminResult : std::uint32_t { kAdminOk, kAdminError, kAdminResultCount };
enum RestartCause : std::uint32_t { kCrash, kHang, kReload, kCauseCount };

/// Upper bounds of the worker-time buckets (gatehouse_worker_frame_seconds),
/// in nanoseconds (+Inf last). A heartbeat or a forwarded frame costs the
/// worker ~1-3 us, a login tens of microseconds, a key exchange 50-100 us:
/// the buckets start at 1 us so that the common cases fall into different
/// ones, and stop at 100 ms (a worker that slow is stalled: the hang watchdog's
/// business).
inline constexpr std::array<std::uint64_t, 12> kBucketBoundsNs = {
    1'000,   2'500,   5'000,     10'000,    25'000,     50'000,
    100'000, 250'000, 1'000'000, 5'000'000, 25'000'000, 100'000'000};

struct HistogramCells {
  std::atomic<std::uint64_t> buckets[kBucketBoundsNs.size() + 1];  ///< not cumulative
  std::atomic<std::uint64_t> count;
  std::atomic<std::uint64_t> sum_ns;
};

struct alignas(128) Shard {
  std::atomic<std::uint64_t> counters[kCounterCount];
  std::atomic<std::uint64_t> closed[static_cast<std::size_t>(CloseReason::kCount)];
  std::atomic<std::uint64_t> logins_refused[static_cast<std::size_t>(LoginRefusal::kCount)];
  std::atomic<std::uint64_t> restarts[kComponentCount][kCauseCount];
  std::atomic<std::uint64_t> admin_commands[kAdminCommandCount][kAdminResultCount];
  std::atomic<std::int64_t> gauges[kGaugeCount];
  HistogramCells timed[kTimedCount];
  /// Bridge only: frames it holds outside the rings (taken from a worker
  /// ring, not yet acknowledged by gRPC; or received from a game, not yet in
  /// a worker ring). Several threads: fetch_add/fetch_sub. What a dead
  /// bridge leaves here is what was lost with it.
  std::atomic<std::int64_t> in_flight;
};

/// Rows of RoutingTable: game services (kMaxServices in control.h) and
/// instances, and the longest name shown.
inline constexpr std::uint32_t kMaxServiceRows = 8;
inline constexpr std::uint32_t kMaxInstanceRows = 128;
inline constexpr std::size_t kRoutingNameBytes = 64;

/// Why a session of a rebind-mode service moved to another instance
/// (ServiceRow::moved; docs/discovery.md).
enum MoveReason : std::uint32_t {
  kMovedRemoved,  ///< its instance left the view
  kMovedFailed,   ///< its stream (or link) failed
  kMoveReasonCount
};
/// "removed", "failed" (the metrics' reason label).
constexpr std::string_view move_reason_text(std::uint32_t reason) noexcept {
  return reason == kMovedFailed ? "failed" : "removed";
}
/// A game service as the bridge routes to it.
struct ServiceRow {
  char name[kRoutingNameBytes];  ///< "" for the backend lines
  std::int64_t instances;        ///< live ones: new sessions may go there (not disabled ones)
  /// Sessions moved to another instance (rebind mode), by MoveReason; they
  /// go on by service name across bridge restarts.
  std::uint64_t moved[kMoveReasonCount];
};
/// InstanceRow::state: whether new sessions go to an instance.
enum InstanceState : std::uint32_t {
  kInstanceRemoved = 0,   ///< gone from the view, its sessions left (sticky)
  kInstanceLive = 1,      ///< takes new sessions
  kInstanceDisabled = 2,  ///< in the view, taken out of rotation by an operator: its sessions stay
};
/// "removed", "live", "disabled" (the metrics' state label, gatehousectl backends).
constexpr std::string_view instance_state_text(std::uint32_t state) noexcept {
  switch (state) {
    case kInstanceLive:
      return "live";
    case kInstanceDisabled:
      return "disabled";
    default:
      return "removed";
  }
}
/// InstanceRow::counts: an instance's traffic and errors, counted by the
/// bridge since the instance came (a restarted bridge goes on from its
/// predecessor's counts, by instance name).
enum InstanceCounter : std::uint32_t {
  kInstanceMessagesSent,      ///< client messages written to its streams (or link)
  kInstanceMessagesReceived,  ///< messages read from it for clients
  kInstanceMessagesDropped,   ///< client messages it never got (no stream, or it ended first)
  kInstanceStreamsFailed,     ///< its streams (gonet2) or links (batched) that failed
  kInstanceCounterCount
};
/// A game-service instance the bridge serves sessions on.
struct InstanceRow {
  char name[kRoutingNameBytes];
  std::uint32_t service;  ///< index in RoutingNames::services
  std::uint32_t state;    ///< InstanceState
  std::uint64_t counts[kInstanceCounterCount];
};
/// What changes with the view, and the instances' counts: published whole
/// under RoutingTable's sequence lock when the view changes and every 100 ms
/// (so a scrape never sees one instance's name with another's counts).
struct RoutingNames {
  std::uint32_t service_count;
  std::uint32_t instance_count;  ///< rows in use
  std::uint64_t unlisted;        ///< instances beyond kMaxInstanceRows (no row)
  ServiceRow services[kMaxServiceRows];
  InstanceRow instances[kMaxInstanceRows];
};
/// The bridge's game services and instances, for the metrics: the bridge
/// writes, a scrape reads. The names are double-buffered under a sequence
/// lock (seqlock.h), so a bridge killed while it publishes leaves the last
/// whole table to the scrapes and to its successor; the session counts (by
/// row) are stored as they change.
struct RoutingTable {
  Seqlocked<RoutingNames> names;
  std::atomic<std::int64_t> sessions[kMaxInstanceRows];
  /// Whether each row's instance is reachable (1 or 0; 0 until the bridge
  /// has seen it up): a gonet2 game service's gRPC channel is connected
  /// (READY); a batched one's link is up on a connected channel and has
  /// held since its last break (gatehouse_game_service_up). /ready needs a
  /// live one.
  std::atomic<std::uint32_t> up[kMaxInstanceRows];
};

/// The bridge (the one writer): makes `names` the table's.
inline void publish_routing(RoutingTable& table, const RoutingNames& names) noexcept {
  table.names.publish(names);
}

/// A scrape, or a bridge's successor: the names as last published whole
/// (false if the bridge never published, or never stood still).
inline bool read_routing(const RoutingTable& table, RoutingNames& out) noexcept {
  return table.names.published() && table.names.read(out);
}

/// A process's handle on its shard. One writer per shard, so an add is a
/// plain load + store (no locked instruction on the hot path).
class Writer {
 public:
  Writer() = default;
  explicit Writer(Shard& shard) noexcept : shard_(&shard) {}

  void add(Counter c, std::uint64_t n = 1) noexcept { bump(shard_->counters[c], n); }
  void closed(CloseReason reason) noexcept {
    bump(shard_->closed[static_cast<std::size_t>(reason)], 1);
  }
  void refused(LoginRefusal reason) noexcept {
    bump(shard_->logins_refused[static_cast<std::size_t>(reason)], 1);
  }
  void restarted(Component component, RestartCause cause) noexcept {
    bump(shard_->restarts[component][cause], 1);
  }
  void admin(AdminCommand command, AdminResult result) noexcept {
    bump(shard_->admin_commands[command][result], 1);
  }
  void set(Gauge g, std::int64_t v) noexcept {
    shard_->gauges[g].store(v, std::memory_order_relaxed);
  }
  void add(Gauge g, std::int64_t d) noexcept {
    shard_->gauges[g].store(shard_->gauges[g].load(std::memory_order_relaxed) + d,
                            std::memory_order_relaxed);
  }
  void observe(Timed t, std::uint64_t ns) noexcept {
    HistogramCells& h = shard_->timed[t];
    std::size_t b = 0;
    while (b < kBucketBoundsNs.size() && ns > kBucketBoundsNs[b]) ++b;
    bump(h.buckets[b], 1);
    bump(h.count, 1);
    bump(h.sum_ns, ns);
  }

 private:
  static void bump(std::atomic<std::uint64_t>& cell, std::uint64_t n) noexcept {
    cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  Shard* shard_ = nullptr;
};

}  // namespace gatehouse::metrics
