// The control block: the one region every gateway process reads its
// configuration from, and where each writes its liveness and the supervisor
// its drain state. Plain data (docs/shm.md); the typed accessor is
// GatewaySegment (gateway_segment.h), the layout's version and pins are in
// layout.h.
//
// The supervisor parses the configuration and writes it into the control
// block at creation (and again on reload, under the sequence lock of
// GatewaySegment::publish_settings); the other processes take their settings
// from there, so they all run with one configuration and need only the
// segment name and their doorbell fds on the command line.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gatehouse/codec/frame_numbering.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/contract/seqlock.h"
#include "gatehouse/shm/session_table.h"

namespace gatehouse {

inline constexpr std::uint32_t kMaxWorkers = 64;
/// Frontend processes of one gateway instance (docs/architecture.md,
/// "Several frontends").
inline constexpr std::uint32_t kMaxFrontends = 8;
/// Backend-bridge processes (shards) of one gateway instance
/// (docs/architecture.md, "Bridge shards").
inline constexpr std::uint32_t kMaxBridges = 8;
inline constexpr std::uint32_t kMaxBackends = 8;
inline constexpr std::size_t kAddressBytes = 128;
inline constexpr std::size_t kPathBytes = 256;
inline constexpr std::size_t kWsOriginsBytes = 1024;
inline constexpr std::uint32_t kMaxListeners = 16;
inline constexpr std::uint32_t kMaxExemptNetworks = 16;
/// Source ranges one listener takes PROXY headers from (proxy-from=).
inline constexpr std::uint32_t kMaxProxyNetworks = 8;
/// Discovery through etcd (docs/discovery.md): the services one gateway
/// watches, a service's name, and the comma-separated lists.
inline constexpr std::uint32_t kMaxServices = metrics::kMaxServiceRows;
inline constexpr std::size_t kServiceNameBytes = 64;
inline constexpr std::size_t kListBytes = 512;
/// Proto-number ranges routed to a service other than the game service
/// (`route`, docs/discovery.md).
inline constexpr std::uint32_t kMaxRoutes = 16;

/// Client messages whose proto number is in [first, last] go to `service`.
struct ProtoRoute {
  std::uint16_t first;
  std::uint16_t last;
  char service[kServiceNameBytes];
};

/// An address range, "127.0.0.0/8" or "::1/128": an IPv4 one as its IPv4-mapped
/// IPv6 range (prefix + 96), as the frontend sees every client address.
struct AddressRange {
  std::uint8_t address[16];  ///< bits past `prefix` are zero
  std::uint32_t prefix;      ///< 0..128

  /// Whether `v6` (16 bytes, IPv4-mapped for IPv4) is in the range.
  bool contains(const std::uint8_t* v6) const noexcept {
    const std::uint32_t bits = prefix > 128 ? 128 : prefix;
    const std::uint32_t whole = bits / 8;
    for (std::uint32_t i = 0; i < whole; ++i) {
      if (v6[i] != address[i]) return false;
    }
    if (bits % 8 == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xFF00 >> (bits % 8));
    return (v6[whole] & mask) == address[whole];
  }
};
/// gateway-key files a gateway holds at once (one, two while keys rotate).
inline constexpr std::uint32_t kMaxGatewayKeys = 4;

enum class LoginMode : std::uint32_t {
  kAcceptAny = 0,
  kStaticTokens = 1,
  kSignedTokens = 2,
  kAuthService = 3,  ///< the bridge asks a user centre (proto/auth.proto) at login_file's HOST:PORT
};
/// Settings::login_file: a token table's path, or signed-token key files
/// joined by ','.
inline constexpr std::size_t kLoginFileBytes = 1024;

/// What a second login of a logged-in user does (Settings::duplicate_login).
enum class DuplicateLogin : std::uint32_t {
  kReplace = 0,  ///< the older session is closed (replaced) once its output is out
  kRefuse = 1,   ///< the newcomer's login fails (duplicate_login)
  kAllow = 2,    ///< both live, each with its game stream (gonet2's behaviour)
};

/// Bits of Settings::listener_crypto: what the clients of a listener may
/// speak (shared/protocol.md section 3, docs/protocol-modern.md). A client
/// that uses something else is kicked with crypto_refused.
enum CryptoModes : std::uint8_t {
  kCryptoClear = 1,    ///< no key exchange at all (gonet2 allowed it)
  kCryptoLegacy = 2,   ///< get_seed_req: 31-bit DH + RC4
  kCryptoModern = 4,   ///< key_exchange2_req: version 2, the gateway proves its key
  kCryptoModern1 = 8,  ///< key_exchange_req: version 1, unauthenticated (counted)
  /// Everything but version 1, which a listener must name to allow.
  kCryptoAny = kCryptoClear | kCryptoLegacy | kCryptoModern,
};
/// Bits of Settings::listener_transports: how a listener's clients reach it
/// (docs/kcp.md, docs/websocket.md). KCP is UDP on the listener's address and
/// port; the others share its TCP port, so a listener has at most one of them.
enum Transports : std::uint8_t {
  kTransportTcp = 1,
  kTransportKcp = 2,
  kTransportTls = 4,   ///< the TCP protocol inside TLS
  kTransportWs = 8,    ///< WebSocket: one binary message per frame
  kTransportWss = 16,  ///< WebSocket over TLS
  /// The transports over a TCP listening socket.
  kTransportStreams = kTransportTcp | kTransportTls | kTransportWs | kTransportWss,
};
/// Each transport's name, as --listen's transport= says it (and the
/// gateway's key in etcd lists it).
inline constexpr std::pair<std::uint8_t, std::string_view> kTransportNames[] = {
    {kTransportTcp, "tcp"},
    {kTransportTls, "tls"},
    {kTransportWs, "ws"},
    {kTransportWss, "wss"},
    {kTransportKcp, "kcp"}};

/// "modern", "modern+legacy", "any", "any+modern1", ...: nullopt for an
/// unknown name or an empty set.
std::optional<std::uint8_t> parse_crypto_modes(std::string_view text);
/// The inverse: "clear+legacy+modern+modern1" order, "any" for the first
/// three.
std::string crypto_modes_text(std::uint8_t modes);
/// Each mode of `modes` by its own name, in that order (never "any").
std::vector<std::string_view> crypto_mode_names(std::uint8_t modes);

/// What a listener expects in front of its clients' bytes (--listen
/// ...,proxy=; docs/proxy-protocol.md): a PROXY protocol header from a load
/// balancer, which names the client.
enum class ProxyMode : std::uint8_t {
  kNone = 0,      ///< no header: the peer is the client
  kV1 = 1,        ///< a v1 (text) header, required
  kV2 = 2,        ///< a v2 (binary) header, required
  kOptional = 3,  ///< v1, v2 or none, told apart by the first bytes
};
/// "none", "v1", "v2", "optional"; nullopt for another name.
std::optional<ProxyMode> parse_proxy_mode(std::string_view text);
std::string_view proxy_mode_text(ProxyMode mode);

/// Which of etcd's APIs discovery reads (Settings::etcd_api, docs/discovery.md):
/// their keys are apart, so it is the one the game services write to.
enum class EtcdApi : std::uint32_t {
  kV3 = 0,  ///< gRPC (etcd's default)
  kV2 = 1,  ///< the v2 keys API over HTTP (etcd 3.4 with --enable-v2), gonet2's
};
/// "v3", "v2"; nullopt for another name.
std::optional<EtcdApi> parse_etcd_api(std::string_view text);
std::string_view etcd_api_text(EtcdApi api);

/// A comma-separated list (etcd-hosts, services), spaces around items and
/// empty items dropped.
std::vector<std::string> split_list(std::string_view text);
/// `etcd-hosts` ("http://HOST:PORT,..."; the scheme may be left out) as gRPC
/// targets HOST:PORT; empty, with `error` set, when it names none or one it
/// cannot reach (https is not supported).
std::vector<std::string> parse_etcd_endpoints(std::string_view hosts, std::string* error);
/// The one of `services` sessions go to: `game_service` when it is one of
/// them, else (unset) the only one, else game-10000 where gonet2's agent sent
/// every login; "" when none of these is.
std::string game_service_of(std::string_view services, std::string_view game_service);

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
  char login_file[kLoginFileBytes];
  /// How long sessions wait for a game service that went away (re-opened
  /// streams, a broken batched link) before they are kicked.
  std::uint32_t backend_wait_ms;
  std::uint32_t listener_count;
  std::uint8_t listener_crypto[kMaxListeners];  ///< CryptoModes of each --listen, in order
  std::uint32_t rpm_burst;  ///< frames a session may send at once (0: rpm_limit)
  std::uint32_t bpm_limit;  ///< client payload bytes per minute per session, 0 = no limit
  std::uint32_t bpm_burst;  ///< bytes a session may send at once (0: bpm_limit)
  /// Which sessions get their open/login/close/kick lines (log-connections):
  /// kLogConnectionsAll (0, so zeroed settings log them all),
  /// kLogConnectionsNone, or N >= 2: one session in N.
  std::uint32_t log_connections;
  // Per-connection bounds of the frontend (issue 20).
  std::uint32_t txqueue_bytes;        ///< bytes queued to one client before slow_consumer
  std::uint32_t write_timeout_ms;     ///< a client that takes no byte this long: slow_consumer
  std::uint32_t login_timeout_ms;     ///< accept to login, else login_timeout
  std::uint32_t prelogin_frames;      ///< frames a connection may send before login
  std::uint32_t prelogin_bytes;       ///< bytes a connection may send before login
  std::uint32_t connect_rate;         ///< new connections a second in total; 0 = no limit
  std::uint32_t connect_rate_per_ip;  ///< new connections a second per address; 0 = no limit
  /// Addresses the per-address limits (max-connections-per-ip,
  /// connect-rate-per-ip) do not apply to: a local proxy, a load generator.
  std::uint32_t address_limits_exempt_count;
  AddressRange address_limits_exempt[kMaxExemptNetworks];
  DuplicateLogin duplicate_login;
  std::uint32_t reserved_duplicate;
  // The modern exchange's version 2 (docs/protocol-modern.md): the gateway's
  // private key files, read by each worker at its start.
  std::uint32_t gateway_key_count;
  char gateway_keys[kMaxGatewayKeys][kPathBytes];
  /// Bytes of game events the bridge keeps for one worker whose ring is full
  /// before it stops reading the game calls that feed it (issue 20).
  std::uint32_t game_backlog_bytes;
  // Logins (docs/login.md).
  char login_audience[kAddressBytes];  ///< signed tokens must name it ("" = none)
  /// Failed logins allowed per login_failure_window_ms, from one address
  /// (IPv4, IPv6 /64; not address_limits_exempt) and against one user id;
  /// each worker allows its share (limit / workers, at least 1). 0: no limit.
  std::uint32_t login_failures_per_ip;
  std::uint32_t login_failures_per_user;
  std::uint32_t login_failure_window_ms;
  // login = auth:HOST:PORT (the bridge's calls to the user centre).
  std::uint32_t auth_timeout_ms;    ///< a call's deadline, else auth_timeout
  std::uint32_t auth_max_inflight;  ///< calls at once over the gateway, else auth_busy
  // PROXY protocol, per --listen (docs/proxy-protocol.md).
  ProxyMode listener_proxy[kMaxListeners];  ///< proxy= of each --listen, in order
  /// proxy-from= of each --listen: the sources whose headers are trusted.
  std::uint32_t listener_proxy_from_count[kMaxListeners];
  AddressRange listener_proxy_from[kMaxListeners][kMaxProxyNetworks];
  // KCP over UDP (issue 15, docs/kcp.md): gonet2's settings under its names.
  std::uint8_t listener_transports[kMaxListeners];  ///< Transports of each --listen, in order
  std::uint32_t udp_sockbuf;           ///< SO_RCVBUF/SO_SNDBUF of a UDP listener, 0 = kernel's
  std::uint32_t udp_sndwnd;            ///< KCP send window, segments
  std::uint32_t udp_rcvwnd;            ///< KCP receive window, segments
  std::uint32_t udp_mtu;               ///< largest datagram sent
  std::uint32_t kcp_nodelay;           ///< 1: minimum RTO 30 ms, backoff x1.5
  std::uint32_t kcp_interval_ms;       ///< KCP update period
  std::uint32_t kcp_resend;            ///< fast resend after this many later acks, 0 = off
  std::uint32_t kcp_nc;                ///< 1 only: no congestion window (as gonet2)
  std::uint32_t udp_dscp;              ///< DSCP of the datagrams sent (IP_TOS >> 2)
  std::uint32_t udp_sessions_per_ip;   ///< KCP sessions from one address (IPv4, /64), 0 = no limit
  std::uint32_t udp_pending_sessions;  ///< KCP sessions not logged in yet, in all
  // TLS, WebSocket (issue 15, docs/websocket.md).
  char tls_cert[kPathBytes];  ///< PEM certificate chain of tls and wss listeners
  char tls_key[kPathBytes];   ///< its private key (PEM); both read again at each reload
  /// Origins a WebSocket upgrade may name, ',' between them; "" = any.
  char ws_origins[kWsOriginsBytes];
  // Discovery through etcd (issue 16, docs/discovery.md): gonet2's settings
  // under its names. services empty: no discovery, the backend lines serve.
  char etcd_hosts[kListBytes];           ///< "http://HOST:PORT,..."
  char etcd_root[kPathBytes];            ///< "/backends"
  char services[kListBytes];             ///< the service names watched, comma-separated
  char game_service[kServiceNameBytes];  ///< as given (game_service_of() says which)
  std::uint32_t discovery_wait_ms;       ///< the first read's bound at start
  /// The backend lines were given (not the default): with services set, they
  /// serve when etcd does not answer at start.
  std::uint32_t backends_given;
  EtcdApi etcd_api;  ///< the API the keys are read with
  // The gateway registered in etcd (issue 16, docs/discovery.md "The gateway
  // in etcd"): a key under a lease, on etcd_hosts. register_prefix empty: not
  // registered.
  char register_prefix[kPathBytes];      ///< "/gateways": the key is PREFIX/GATEWAY-ID
  char register_address[kAddressBytes];  ///< as given: HOST:PORT, HOST, or "" (the first listener)
  std::uint32_t register_ttl_s;          ///< the lease's TTL, seconds
  /// Each --listen as the supervisor bound it (port 0 replaced by the port
  /// the kernel gave), for the registration.
  char listener_addresses[kMaxListeners][kAddressBytes];
  // Service modes and several services per session (issue 16,
  // docs/discovery.md).
  /// Services in rebind mode, comma-separated; "*": every one (the backend
  /// lines' too). The others are sticky.
  char rebind_services[kListBytes];
  std::uint32_t route_count;
  ProtoRoute routes[kMaxRoutes];  ///< no two overlap
  /// The service of each backend line (its `,service=NAME`); "": the game
  /// service's.
  char backend_services[kMaxBackends][kServiceNameBytes];
  /// The instance of the game service every new session goes to (gonet2's
  /// DEFAULT_GSID with GetServiceWithId); "": rendezvous hashing. An auth
  /// service's LoginReply.instance names one per session instead.
  char game_instance[kServiceNameBytes];
  // Every core used (issue 18, docs/architecture.md "Several frontends").
  std::uint32_t frontends;  ///< frontend processes, 1 to kMaxFrontends; never changes on reload
  /// Which frontend a new client goes to: FrontendAffinity.
  std::uint32_t frontend_affinity;
  /// Backend-bridge shards, 1 to kMaxBridges (bridge_of_user); never changes
  /// on reload.
  std::uint32_t bridges;
};

/// Settings::frontend_affinity: how the kernel spreads new clients over the
/// frontends' listening sockets (SO_REUSEPORT).
enum FrontendAffinity : std::uint32_t {
  /// By client address (IPv4 address, IPv6 /64): one frontend sees every
  /// connection of an address, so the per-address limits hold exactly.
  kAffinityAddress = 0,
  /// By connection (the kernel's hash of both addresses and ports): even
  /// behind a proxy or NAT, with the per-address limits kept per frontend.
  kAffinityConnection = 1,
};

inline constexpr std::uint32_t kLogConnectionsAll = 0;
inline constexpr std::uint32_t kLogConnectionsNone = 0xFFFF'FFFF;

/// Liveness of one child process, written by the process itself.
struct ProcessStatus {
  std::atomic<std::int32_t> pid;
  std::atomic<std::int64_t> heartbeat_ns;  ///< CLOCK_MONOTONIC
};

/// An operator's kick (gatehousectl kick, docs/operations.md), from the
/// supervisor to one worker: a mailbox of one request. The supervisor writes
/// a request only while the last is done (posted == done): it fills the
/// fields, then stores `posted` + 1 (release). The worker that sees
/// posted != done closes the sessions it names (each told `reason` first) and,
/// once that batch is durable, stores `kicked` and then done = posted. A
/// worker that dies before that leaves the request to its successor, which
/// carries it out again: the sessions it had closed are closed already (and
/// not counted twice).
inline constexpr std::size_t kKickReasonBytes = 128;
struct KickRequest {
  std::atomic<std::uint64_t> posted;  ///< supervisor: the request's number, stored last
  std::atomic<std::uint64_t> done;    ///< worker: the last request carried out
  std::uint64_t conn;                 ///< this connection; 0: every session of user_id
  std::int64_t user_id;
  std::atomic<std::uint32_t> kicked;  ///< worker: sessions the request closed
  std::uint32_t reason_bytes;         ///< of `reason` (at most kKickReasonBytes)
  char reason[kKickReasonBytes];      ///< the client is told it (client_error_ack)
};

/// Game-service instances an operator took out of rotation (gatehousectl
/// backend disable): no new session goes to them, the sessions on them stay.
/// The supervisor writes the list (publish_disabled_backends), the bridge
/// reads it when `generation` moves (read_disabled_backends) and shows each
/// instance's state in its routing table.
inline constexpr std::uint32_t kMaxDisabledBackends = 16;
struct alignas(8) DisabledBackendNames {
  std::uint32_t count;
  std::uint32_t reserved;
  char names[kMaxDisabledBackends][metrics::kRoutingNameBytes];  ///< routing-table names
};

/// ControlBlock::draining: 0 serving; the drain's two phases.
inline constexpr std::uint32_t kDrainNoNewConnections = 1;  ///< sessions go on (drain-wait)
inline constexpr std::uint32_t kDrainClosing = 2;           ///< every session is closed

struct ControlBlock {
  /// Set by the supervisor on SIGTERM: kDrainNoNewConnections, then
  /// kDrainClosing (at once, or after drain-wait).
  std::atomic<std::uint32_t> draining;
  std::uint32_t reserved;
  /// The settings under a sequence lock (the reader and the one writer, the
  /// supervisor's reload, are GatewaySegment::settings() and
  /// publish_settings()); the segment is made with copies[0] current.
  Seqlocked<Settings> settings;
  ProcessStatus frontends[kMaxFrontends];
  ProcessStatus bridges[kMaxBridges];
  ProcessStatus workers[kMaxWorkers];
  KickRequest kicks[kMaxWorkers];                     ///< one per worker
  Seqlocked<DisabledBackendNames> disabled_backends;  ///< gatehousectl backend disable / enable
  /// The frontends' shared connect-rate bucket (a GCRA state, CLOCK_MONOTONIC
  /// ns; frontend/connect_rate.h), taken with compare-and-swap.
  std::atomic<std::int64_t> connect_tat_ns;
};

/// One metrics shard per role (docs/metrics.md).
struct MetricsBlock {
  metrics::Shard supervisor;
  metrics::Shard frontends[kMaxFrontends];
  metrics::Shard bridges[kMaxBridges];
  metrics::Shard workers[kMaxWorkers];
  /// Each bridge's game services and instances (every bridge routes its own
  /// sessions; the supervisor merges the tables by instance name).
  metrics::RoutingTable routing[kMaxBridges];

  /// A frontend gauge over every frontend (the shards of frontends a
  /// segment does not have stay zero).
  std::int64_t frontends_gauge(metrics::Gauge g) const noexcept {
    std::int64_t sum = 0;
    for (const metrics::Shard& shard : frontends)
      sum += shard.gauges[g].load(std::memory_order_relaxed);
    return sum;
  }
  /// The same over every bridge.
  std::int64_t bridges_gauge(metrics::Gauge g) const noexcept {
    std::int64_t sum = 0;
    for (const metrics::Shard& shard : bridges)
      sum += shard.gauges[g].load(std::memory_order_relaxed);
    return sum;
  }
};

/// The session table is split into workers x frontends contiguous ranges
/// of slots: worker w's range is the frontends' ranges w * frontends + f, one
/// per frontend f, which allocates from it alone (SlotTable::set_partitions
/// with partitions_of()). So a worker's sessions share memory pages only with
/// each other, each slot has one frontend and one worker, and a record names
/// both by its connection id.
inline std::uint32_t partitions_of(const Settings& s) noexcept {
  return s.workers * s.frontends;
}
inline std::uint32_t partition_of_slot(std::uint32_t slot, const Settings& s) noexcept {
  return slot / shm::SlotTable::partition_slots(s.max_connections, partitions_of(s));
}
/// The partition frontend `frontend` allocates worker `worker`'s slots from.
inline std::uint32_t partition_of(std::uint32_t worker, std::uint32_t frontend,
                                  const Settings& s) noexcept {
  return worker * s.frontends + frontend;
}
/// The worker that owns session slot `slot`.
inline std::uint32_t worker_of_slot(std::uint32_t slot, const Settings& s) noexcept {
  return partition_of_slot(slot, s) / s.frontends;
}
/// Worker `worker`'s range of slots, [first, end).
struct SlotRange {
  std::uint32_t first;
  std::uint32_t end;
};
inline SlotRange slots_of_worker(std::uint32_t worker, const Settings& s) noexcept {
  const std::uint64_t per =
      std::uint64_t{shm::SlotTable::partition_slots(s.max_connections, partitions_of(s))} *
      s.frontends;
  const auto first =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(s.max_connections, worker * per));
  const auto end =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(s.max_connections, first + per));
  return {first, end};
}
/// The frontend that holds session slot `slot`'s connection.
inline std::uint32_t frontend_of_slot(std::uint32_t slot, const Settings& s) noexcept {
  return partition_of_slot(slot, s) % s.frontends;
}

/// Bridge shards (docs/architecture.md, "Bridge shards"): a logged-in
/// session's game streams (open, messages, close) go to the bridge its user
/// id picks, so every session of one user meets in one bridge
/// (duplicate-login) and a bridge's sessions are a fixed set of users. The id
/// is mixed first: user ids are often sequential or share low bits.
inline std::uint32_t bridge_of_user(std::int64_t user_id, const Settings& s) noexcept {
  if (s.bridges <= 1) return 0;
  std::uint64_t x = static_cast<std::uint64_t>(user_id);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x % s.bridges);
}
/// A login's auth call (login = auth:) goes out before its user id is known:
/// to the bridge its slot picks.
inline std::uint32_t bridge_of_slot(std::uint32_t slot, const Settings& s) noexcept {
  return s.bridges <= 1 ? 0 : slot % s.bridges;
}

}  // namespace gatehouse
