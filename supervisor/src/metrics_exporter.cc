#include "gatehouse/supervisor/metrics_exporter.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/version.h"
#include "gatehouse/contract/layout.h"
#include "gatehouse/supervisor/listen_socket.h"
#include "gatehouse/supervisor/process_stats.h"
#include "gatehouse/supervisor/routing_view.h"

namespace gatehouse::supervisor {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// A scrape is one small request answered from shared memory and /proc;
// health checks are smaller still. Sixteen connections serve several
// scrapers and load balancers at once; a peer that sends nothing, or too
// slowly, or does not take its answer, gives its place back after 2 s, so
// idle connections cannot starve a scrape (issue 20: CivetWeb's 30 s did).
constexpr HttpServer::Limits kLimits{.max_connections = 16,
                                     .request_timeout = std::chrono::milliseconds(2000),
                                     .write_timeout = std::chrono::milliseconds(2000),
                                     .header_bytes = 8192,
                                     .body_bytes = 1024};
constexpr std::string_view kExpositionType = "text/plain; version=0.0.4; charset=utf-8";

struct CounterInfo {
  metrics::Counter id;
  const char* name;
  const char* help;
};
constexpr std::array<CounterInfo, 22> kPlainCounters = {{
    // the unlabelled ones
    {metrics::kConnectionsAccepted, "gatehouse_connections_accepted_total",
     "Client connections accepted: TCP connections and KCP sessions."},
    {metrics::kClientFramesReceived, "gatehouse_client_frames_received_total",
     "Frames received from clients."},
    {metrics::kClientBytesReceived, "gatehouse_client_bytes_received_total",
     "Bytes received from clients, size headers included."},
    {metrics::kClientFramesSent, "gatehouse_client_frames_sent_total",
     "Frames queued to clients by the workers."},
    {metrics::kClientBytesSent, "gatehouse_client_bytes_sent_total",
     "Bytes written to client sockets."},
    {metrics::kGameStreamsOpened, "gatehouse_game_streams_opened_total",
     "gRPC streams to game services started."},
    {metrics::kGameStreamsFailed, "gatehouse_game_streams_failed_total",
     "gRPC streams to game services that ended with an error."},
    {metrics::kGameMessagesReceived, "gatehouse_game_messages_received_total",
     "Message frames received from game services."},
    {metrics::kGameMessagesSent, "gatehouse_game_messages_sent_total",
     "Message frames sent to game services."},
    {metrics::kGameStreamsReopened, "gatehouse_game_streams_reopened_total",
     "Game streams opened again by a bridge that replaced a dead one."},
    {metrics::kGameFramesLost, "gatehouse_game_frames_lost_total",
     "Frames a dead bridge held outside the rings (lost with it)."},
    {metrics::kGameBatchesSent, "gatehouse_game_batches_sent_total",
     "gRPC messages written on batched game links (messages_sent / this = events per write)."},
    {metrics::kGameBatchesReceived, "gatehouse_game_batches_received_total",
     "gRPC messages read from batched game links."},
    {metrics::kGameEventsResent, "gatehouse_game_events_resent_total",
     "Events a bridge that replaced a dead one sent again on batched links because the game had "
     "not acknowledged them (the game drops those it had)."},
    {metrics::kGameDuplicatesDropped, "gatehouse_game_duplicates_dropped_total",
     "Messages a batched game service sent again after a bridge restart that the client had "
     "already been given (dropped by sequence number)."},
    {metrics::kClientMessagesTooLarge, "gatehouse_client_messages_too_large_total",
     "Client messages for the game not forwarded (nor the session kicked) because their | proto | "
     "body | is over what every receiver's frame can carry (65519 bytes: a modern-crypto session's "
     "largest payload)."},
    {metrics::kGameMessagesTooLarge, "gatehouse_game_messages_too_large_total",
     "Game messages dropped for one receiver (not kicked) because they do not fit its frame, "
     "crypto overhead included."},
    {metrics::kGameEventsForeign, "gatehouse_game_events_foreign_total",
     "Messages and kicks a batched game service sent for a session its link does not serve "
     "(another backend's): dropped."},
    {metrics::kAcceptsPaced, "gatehouse_accepts_paced_total",
     "Times the frontend stopped accepting until the --connect-rate bucket refilled (new "
     "connections waited in the listen queue; none was refused)."},
    {metrics::kGameReadsPaused, "gatehouse_game_reads_paused_total",
     "Times a game call stopped reading because a worker's backlog of game messages was over "
     "game-backlog-bytes (back-pressure on the game service)."},
    {metrics::kKcpSessionsAccepted, "gatehouse_kcp_sessions_accepted_total",
     "KCP sessions opened (also counted in gatehouse_connections_accepted_total)."},
    {metrics::kKcpDatagramsDropped, "gatehouse_kcp_datagrams_dropped_total",
     "UDP datagrams dropped by the KCP listeners: junk, for no session and not a session "
     "opener, or refused by their session (malformed, another conversation's)."},
}};

constexpr std::array<const char*, metrics::kTimedCount> kTimedNames = {
    "heart_beat_req",   "user_login_req", "get_seed_req",
    "key_exchange_req", "forward",        "key_exchange2_req"};
constexpr std::array<const char*, metrics::kComponentCount> kComponentNames = {"frontend", "worker",
                                                                               "bridge"};
constexpr std::array<const char*, metrics::kCauseCount> kCauseNames = {"crash", "hang", "reload"};

/// The gateway chose to end the session (not the client, not a drain, not
/// the network).
bool is_kick(CloseReason r) {
  return r != CloseReason::kClientClosed && r != CloseReason::kShutdown &&
         r != CloseReason::kIoError && r != CloseReason::kConnectionLimit;
}

MetricFamily family(const char* name, const char* help, MetricType type) {
  return MetricFamily{name, help, type, {}};
}

ClientMetric value_metric(MetricType type, double value,
                          std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  return m;
}

}  // namespace

class MetricsExporter::Collector final : public prometheus::Collectable {
 public:
  Collector(GatewaySegment& segment, const Health& health) : segment_(segment), health_(health) {
    const Settings settings = segment.settings();
    // Labelled by region name without "ring/": fe-w/0, w-br/3, fe1-w/0,
    // br1-w/0 ...
    const auto add = [&](RingKind kind, std::uint32_t w, std::uint32_t peer) {
      rings_.push_back({ring_region_name(kind, w, peer).substr(5), segment.ring(kind, w, peer)});
    };
    for (std::uint32_t w = 0; w < settings.workers; ++w) {
      for (std::uint32_t f = 0; f < settings.frontends; ++f) {
        add(RingKind::kFrontendToWorker, w, f);
        add(RingKind::kWorkerToFrontend, w, f);
      }
      for (std::uint32_t b = 0; b < settings.bridges; ++b) {
        add(RingKind::kWorkerToBridge, w, b);
        add(RingKind::kBridgeToWorker, w, b);
      }
    }
  }

  std::vector<MetricFamily> Collect() const override {
    MetricsBlock& block = segment_.metrics();
    const Settings settings = segment_.settings();
    const std::span<const metrics::Shard> bridges(block.bridges, settings.bridges);
    std::vector<const metrics::Shard*> shards{&block.supervisor};
    for (const metrics::Shard& bridge : bridges) shards.push_back(&bridge);
    for (std::uint32_t f = 0; f < settings.frontends; ++f) shards.push_back(&block.frontends[f]);
    for (std::uint32_t w = 0; w < settings.workers; ++w) shards.push_back(&block.workers[w]);
    const auto sum = [&](auto cell) {
      double total = 0;
      for (const metrics::Shard* s : shards)
        total += static_cast<double>(cell(*s).load(std::memory_order_relaxed));
      return total;
    };
    std::vector<MetricFamily> out;
    // A counter family with one series per (counter, label value).
    const auto counters_by =
        [&](const char* name, const char* help, const char* label,
            std::initializer_list<std::pair<metrics::Counter, const char*>> series) {
          auto f = family(name, help, MetricType::Counter);
          for (const auto& [counter, value] : series) {
            f.metric.push_back(value_metric(
                MetricType::Counter,
                sum([c = counter](const metrics::Shard& s) -> auto& { return s.counters[c]; }),
                {{label, value}}));
          }
          return f;
        };

    auto build = family("gatehouse_build_info", "Build and shared-memory layout of this gateway.",
                        MetricType::Gauge);
    build.metric.push_back(value_metric(MetricType::Gauge, 1,
                                        {{"layout_version", std::to_string(kLayoutVersion)},
                                         {"version", std::string(version())},
                                         {"revision", std::string(revision())}}));
    out.push_back(std::move(build));
    auto draining =
        family("gatehouse_draining", "1 while a SIGTERM drain runs.", MetricType::Gauge);
    draining.metric.push_back(
        value_metric(MetricType::Gauge, segment_.control().draining.load() != 0 ? 1 : 0));
    out.push_back(std::move(draining));

    for (const CounterInfo& c : kPlainCounters) {
      auto f = family(c.name, c.help, MetricType::Counter);
      f.metric.push_back(
          value_metric(MetricType::Counter,
                       sum([&](const metrics::Shard& s) -> auto& { return s.counters[c.id]; })));
      out.push_back(std::move(f));
    }
    auto dropped = family("gatehouse_frames_dropped_total",
                          "Frames dropped: for a session that had "
                          "already closed or whose game service was away, or not acknowledged by "
                          "a batched game service when its link broke.",
                          MetricType::Counter);
    dropped.metric.push_back(value_metric(
        MetricType::Counter,
        sum([](const metrics::Shard& s) -> auto& { return s.counters[metrics::kDroppedToClient]; }),
        {{"direction", "to_client"}}));
    dropped.metric.push_back(value_metric(
        MetricType::Counter,
        sum([](const metrics::Shard& s) -> auto& { return s.counters[metrics::kDroppedToGame]; }),
        {{"direction", "to_game"}}));
    out.push_back(std::move(dropped));

    out.push_back(
        counters_by("gatehouse_connections_refused_total",
                    "Connections refused at accept, by reason: connection_limit "
                    "(--max-connections, or out of file descriptors), address_limit "
                    "(--max-connections-per-ip), rate_limit (--connect-rate), "
                    "address_rate_limit (--connect-rate-per-ip).",
                    "reason",
                    {{metrics::kConnectionsRefused, "connection_limit"},
                     {metrics::kConnectionsRefusedPerAddress, "address_limit"},
                     {metrics::kConnectionsRefusedRate, "rate_limit"},
                     {metrics::kConnectionsRefusedRatePerAddress, "address_rate_limit"}}));

    out.push_back(counters_by(
        "gatehouse_reloads_total",
        "SIGHUP reloads by result: applied (the configuration read again was "
        "taken, then the workers roll) or refused (the configuration or the "
        "worker binary on disk; nothing changed).",
        "result", {{metrics::kReloadsApplied, "applied"}, {metrics::kReloadsRefused, "refused"}}));

    out.push_back(counters_by("gatehouse_proxy_headers_total",
                              "PROXY protocol headers taken on proxy= listeners, by version.",
                              "version",
                              {{metrics::kProxyHeadersV1, "1"}, {metrics::kProxyHeadersV2, "2"}}));
    out.push_back(counters_by(
        "gatehouse_proxy_refused_total",
        "Connections of proxy= listeners closed before they were admitted, by reason: "
        "untrusted (a header, or a listener that requires one, from a source outside "
        "proxy-from), missing (no header, or the other version, where one is required), "
        "malformed (a header that does not parse), timeout (no header within the "
        "deadline).",
        "reason",
        {{metrics::kProxyRefusedUntrusted, "untrusted"},
         {metrics::kProxyRefusedMissing, "missing"},
         {metrics::kProxyRefusedMalformed, "malformed"},
         {metrics::kProxyRefusedTimeout, "timeout"}}));
    out.push_back(counters_by("gatehouse_kcp_sessions_refused_total",
                              "KCP session openers refused, by reason: connection_limit "
                              "(--max-connections, --max-connections-per-ip, "
                              "--udp-sessions-per-ip, or draining), rate_limit (--connect-rate, "
                              "--connect-rate-per-ip), pending_limit (--udp-pending-sessions).",
                              "reason",
                              {{metrics::kKcpRefusedLimit, "connection_limit"},
                               {metrics::kKcpRefusedRate, "rate_limit"},
                               {metrics::kKcpRefusedPending, "pending_limit"}}));
    out.push_back(counters_by(
        "gatehouse_handshakes_failed_total",
        "Connections of tls, ws and wss listeners closed before their first frame "
        "(reason handshake_failed), by what failed: tls (the TLS handshake), request (not "
        "a WebSocket upgrade, or a malformed one), origin (an Origin outside ws-origins).",
        "reason",
        {{metrics::kHandshakesFailedTls, "tls"},
         {metrics::kHandshakesFailedRequest, "request"},
         {metrics::kHandshakesFailedOrigin, "origin"}}));

    auto logins = family("gatehouse_logins_total",
                         "Login attempts by result; refused ones by reason (docs/login.md).",
                         MetricType::Counter);
    logins.metric.push_back(value_metric(
        MetricType::Counter,
        sum([](const metrics::Shard& s) -> auto& { return s.counters[metrics::kLoginsOk]; }),
        {{"result", "ok"}}));
    for (std::size_t r = 0; r < kLoginRefusalNames.size(); ++r) {
      logins.metric.push_back(
          value_metric(MetricType::Counter,
                       sum([r](const metrics::Shard& s) -> auto& { return s.logins_refused[r]; }),
                       {{"result", "refused"}, {"reason", std::string(kLoginRefusalNames[r])}}));
    }
    out.push_back(std::move(logins));

    out.push_back(counters_by("gatehouse_key_exchanges_total",
                              "Modern key exchanges by version: 2 (the gateway proves its key), "
                              "1 (unauthenticated; only where a listener allows modern1).",
                              "version",
                              {{metrics::kKeyExchangesV1, "1"}, {metrics::kKeyExchangesV2, "2"}}));

    auto closed = family("gatehouse_connections_closed_total", "Sessions ended, by close reason.",
                         MetricType::Counter);
    auto kicks = family("gatehouse_kicks_total",
                        "Sessions the gateway ended (not the client, a drain or the network).",
                        MetricType::Counter);
    for (std::size_t r = 0; r < static_cast<std::size_t>(CloseReason::kCount); ++r) {
      const auto reason = static_cast<CloseReason>(r);
      const double v = sum([r](const metrics::Shard& s) -> auto& { return s.closed[r]; });
      const std::vector<ClientMetric::Label> label{{"reason", std::string(to_string(reason))}};
      closed.metric.push_back(value_metric(MetricType::Counter, v, label));
      if (is_kick(reason)) kicks.metric.push_back(value_metric(MetricType::Counter, v, label));
    }
    out.push_back(std::move(closed));
    out.push_back(std::move(kicks));

    const auto gauge_sum = [&](metrics::Gauge g) {
      double total = 0;
      for (const metrics::Shard* s : shards)
        total += static_cast<double>(s->gauges[g].load(std::memory_order_relaxed));
      return total;
    };
    for (const auto& [g, name, help] :
         {std::tuple{metrics::kConnectionsOpen, "gatehouse_connections_open",
                     "Client connections open (TCP connections and KCP sessions)."},
          std::tuple{metrics::kKcpSessionsOpen, "gatehouse_kcp_sessions_open",
                     "KCP sessions open (also counted in gatehouse_connections_open)."},
          std::tuple{metrics::kSessionsLoggedIn, "gatehouse_sessions_logged_in",
                     "Sessions past login."},
          std::tuple{metrics::kGameStreamsOpen, "gatehouse_game_streams_open",
                     "gRPC streams to game services open."},
          std::tuple{metrics::kGameEventsUnacknowledged, "gatehouse_game_events_unacknowledged",
                     "Events sent on batched game links that the game has not acknowledged yet "
                     "(their records stay in the worker rings until it does)."},
          std::tuple{metrics::kGameBacklogBytes, "gatehouse_game_backlog_bytes",
                     "Bytes of game messages the bridge holds for workers whose ring is full "
                     "(bounded per worker by game-backlog-bytes)."},
          std::tuple{metrics::kGameBacklogEvents, "gatehouse_game_backlog_events",
                     "Game events the bridge holds for workers whose ring is full."},
          std::tuple{metrics::kGameReadsPausedNow, "gatehouse_game_reads_paused",
                     "Game calls not reading now: a worker they feed has its backlog over "
                     "game-backlog-bytes."},
          std::tuple{metrics::kAuthCallsInFlight, "gatehouse_auth_calls_in_flight",
                     "Logins the auth service (login = auth:) has not answered yet (bounded by "
                     "auth-max-inflight)."}}) {
      auto f = family(name, help, MetricType::Gauge);
      f.metric.push_back(value_metric(MetricType::Gauge, gauge_sum(g)));
      out.push_back(std::move(f));
    }
    {
      auto by_transport =
          family("gatehouse_connections_open_by_transport",
                 "Client connections open, by transport (their sum is gatehouse_connections_open).",
                 MetricType::Gauge);
      double others = 0;
      for (const auto& [g, transport] : {std::pair{metrics::kKcpSessionsOpen, "kcp"},
                                         std::pair{metrics::kTlsConnectionsOpen, "tls"},
                                         std::pair{metrics::kWsConnectionsOpen, "ws"},
                                         std::pair{metrics::kWssConnectionsOpen, "wss"}}) {
        const double v = gauge_sum(g);
        others += v;
        by_transport.metric.push_back(
            value_metric(MetricType::Gauge, v, {{"transport", transport}}));
      }
      by_transport.metric.insert(
          by_transport.metric.begin(),
          value_metric(MetricType::Gauge, gauge_sum(metrics::kConnectionsOpen) - others,
                       {{"transport", "tcp"}}));
      out.push_back(std::move(by_transport));
    }

    const RoutingView routing = merge_routing(std::span(block.routing, settings.bridges));
    collect_routing(bridges, routing, out);
    collect_registration(block.bridges[0], out);

    auto duration = family("gatehouse_worker_frame_seconds",
                           "Worker time spent on one client frame, from taking it off the ring to "
                           "finishing it (the worker's cost, not a round trip), by gateway proto "
                           "(forward: > 1000).",
                           MetricType::Histogram);
    for (std::size_t t = 0; t < metrics::kTimedCount; ++t) {
      ClientMetric m;
      m.label = {{"proto", kTimedNames[t]}};
      std::uint64_t cumulative = 0;
      for (std::size_t b = 0; b <= metrics::kBucketBoundsNs.size(); ++b) {
        cumulative += static_cast<std::uint64_t>(
            sum([ t, b ](const metrics::Shard& s) -> auto& { return s.timed[t].buckets[b]; }));
        m.histogram.bucket.push_back(
            {cumulative, b < metrics::kBucketBoundsNs.size()
                             ? static_cast<double>(metrics::kBucketBoundsNs[b]) / 1e9
                             : std::numeric_limits<double>::infinity()});
      }
      m.histogram.sample_count = cumulative;
      m.histogram.sample_sum =
          sum([t](const metrics::Shard& s) -> auto& { return s.timed[t].sum_ns; }) / 1e9;
      duration.metric.push_back(std::move(m));
    }
    out.push_back(std::move(duration));

    auto occupancy = family("gatehouse_ring_occupancy_bytes",
                            "Published bytes not yet consumed, per ring.", MetricType::Gauge);
    auto capacity =
        family("gatehouse_ring_capacity_bytes", "Ring size, per ring.", MetricType::Gauge);
    auto full =
        family("gatehouse_ring_full_total",
               "Writes refused because the ring was full (backpressure).", MetricType::Counter);
    for (const auto& [name, ring] : rings_) {
      const std::vector<ClientMetric::Label> label{{"ring", name}};
      occupancy.metric.push_back(
          value_metric(MetricType::Gauge, static_cast<double>(ring.occupancy()), label));
      capacity.metric.push_back(
          value_metric(MetricType::Gauge, static_cast<double>(ring.capacity()), label));
      full.metric.push_back(value_metric(
          MetricType::Counter, static_cast<double>(ring.descriptor().full_events.load()), label));
    }
    out.push_back(std::move(occupancy));
    out.push_back(std::move(capacity));
    out.push_back(std::move(full));

    auto restarts =
        family("gatehouse_process_restarts_total",
               "Child processes replaced, by component and cause.", MetricType::Counter);
    for (std::size_t c = 0; c < metrics::kComponentCount; ++c) {
      for (std::size_t k = 0; k < metrics::kCauseCount; ++k) {
        restarts.metric.push_back(value_metric(
            MetricType::Counter,
            sum([ c, k ](const metrics::Shard& s) -> auto& { return s.restarts[c][k]; }),
            {{"cause", kCauseNames[k]}, {"component", kComponentNames[c]}}));
      }
    }
    out.push_back(std::move(restarts));

    auto commands = family("gatehouse_admin_commands_total",
                           "Requests on the admin socket (gatehousectl), by command and result: ok "
                           "(done) or error (refused, or not done).",
                           MetricType::Counter);
    const metrics::Shard& supervisor_shard = block.supervisor;
    for (std::size_t c = 0; c < metrics::kAdminCommandCount; ++c) {
      for (const auto& [r, result] :
           {std::pair{metrics::kAdminOk, "ok"}, std::pair{metrics::kAdminError, "error"}}) {
        commands.metric.push_back(value_metric(
            MetricType::Counter, static_cast<double>(supervisor_shard.admin_commands[c][r].load()),
            {{"command", std::string(metrics::kAdminCommandNames[c])}, {"result", result}}));
      }
    }
    out.push_back(std::move(commands));
    collect_game_services(routing, out);
    collect_capacity(out, gauge_sum(metrics::kConnectionsOpen),
                     gauge_sum(metrics::kAuthCallsInFlight));
    collect_processes(out);
    return out;
  }

 private:
  /// gatehouse_game_service_up, per instance the bridges route to (a
  /// backend entry as configured, or an instance found through etcd).
  static void collect_game_services(const RoutingView& routing, std::vector<MetricFamily>& out) {
    auto up = family("gatehouse_game_service_up",
                     "1 while the bridges can reach the game-service instance (gonet2: its gRPC "
                     "channel is connected; batch: its link is up), by backend entry as "
                     "configured or instance name as discovered.",
                     MetricType::Gauge);
    for (const RoutedInstance& instance : routing.instances) {
      up.metric.push_back(
          value_metric(MetricType::Gauge, instance.up ? 1 : 0, {{"backend", instance.name}}));
    }
    out.push_back(std::move(up));
  }

 public:
  /// Instances in the view, and by bridge those it reaches of the ones that
  /// take sessions (not disabled) (/ready).
  GameServices game_services() const {
    RoutingView routing =
        merge_routing(std::span(segment_.metrics().routing, segment_.settings().bridges));
    GameServices games{0, std::move(routing.reachable)};
    for (const RoutedInstance& instance : routing.instances) {
      if (instance.state != metrics::kInstanceRemoved) ++games.configured;
    }
    return games;
  }

 private:
  /// gatehouse_capacity_limit / _available: what the limits still allow,
  /// by the setting that sets them.
  void collect_capacity(std::vector<MetricFamily>& out, double connections_open,
                        double auth_in_flight) const {
    const Settings settings = segment_.settings();
    auto limit = family("gatehouse_capacity_limit",
                        "The configured bound, by setting: max-connections (client connections, "
                        "and so sessions), auth-max-inflight (login = auth: only).",
                        MetricType::Gauge);
    auto available = family("gatehouse_capacity_available",
                            "Room left under the bound, by setting: connections the gateway still "
                            "accepts, auth calls it still starts.",
                            MetricType::Gauge);
    const auto add = [&](const char* setting, double bound, double used) {
      limit.metric.push_back(value_metric(MetricType::Gauge, bound, {{"setting", setting}}));
      available.metric.push_back(
          value_metric(MetricType::Gauge, std::max(0.0, bound - used), {{"setting", setting}}));
    };
    add("max-connections", settings.max_connections, connections_open);
    if (settings.login_mode == LoginMode::kAuthService) {
      add("auth-max-inflight", settings.auth_max_inflight, auth_in_flight);
    }
    out.push_back(std::move(limit));
    out.push_back(std::move(available));
  }

  /// process_*: Prometheus' process collector, for every gateway process,
  /// labelled with its component and its name in the logs.
  void collect_processes(std::vector<MetricFamily>& out) const {
    auto cpu = family("process_cpu_seconds_total",
                      "Total user and system CPU time spent in seconds.", MetricType::Counter);
    auto open_fds =
        family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge);
    auto max_fds =
        family("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge);
    auto resident = family("process_resident_memory_bytes", "Resident memory size in bytes.",
                           MetricType::Gauge);
    auto start =
        family("process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.", MetricType::Gauge);
    // A restarted child's CPU counter goes on from its predecessors' (what
    // wait4 said they spent); its other series are the running process's.
    const auto add = [&](const char* component, const std::string& name, pid_t pid,
                         double exited_cpu_seconds) {
      const std::vector<ClientMetric::Label> labels{{"component", component}, {"process", name}};
      const auto stats = pid != 0 ? read_process_stats(pid) : std::nullopt;
      if (!stats) {  // down, or gone since the report
        if (exited_cpu_seconds > 0) {
          cpu.metric.push_back(value_metric(MetricType::Counter, exited_cpu_seconds, labels));
        }
        return;
      }
      cpu.metric.push_back(
          value_metric(MetricType::Counter, exited_cpu_seconds + stats->cpu_seconds, labels));
      open_fds.metric.push_back(value_metric(MetricType::Gauge, stats->open_fds, labels));
      if (stats->max_fds) {
        max_fds.metric.push_back(value_metric(MetricType::Gauge, *stats->max_fds, labels));
      }
      resident.metric.push_back(value_metric(MetricType::Gauge, stats->resident_bytes, labels));
      start.metric.push_back(value_metric(MetricType::Gauge, stats->start_time_seconds, labels));
    };
    add("supervisor", "supervisor", ::getpid(), 0);
    for (const ChildHealth& c : health_.report().children) {
      add(kComponentNames[c.id.component()], c.id.name(), c.pid, c.exited_cpu_seconds);
    }
    for (auto* f : {&cpu, &open_fds, &max_fds, &resident, &start}) out.push_back(std::move(*f));
  }

  /// Discovery and routing (docs/discovery.md): the bridges' view of the
  /// game services, their instances and the sessions on each.
  static void collect_routing(std::span<const metrics::Shard> bridges, const RoutingView& routing,
                              std::vector<MetricFamily>& out) {
    const auto sum = [&](metrics::Counter counter) {
      double total = 0;
      for (const metrics::Shard& bridge : bridges) {
        total += static_cast<double>(bridge.counters[counter].load(std::memory_order_relaxed));
      }
      return total;
    };
    auto events = family("gatehouse_discovery_events_total",
                         "Changes discovery took from etcd, by kind: put (an instance joined or "
                         "moved), delete (one left), resync (the whole view read again).",
                         MetricType::Counter);
    for (const auto& [counter, kind] : {std::pair{metrics::kDiscoveryPuts, "put"},
                                        std::pair{metrics::kDiscoveryDeletes, "delete"},
                                        std::pair{metrics::kDiscoveryResyncs, "resync"}}) {
      events.metric.push_back(value_metric(MetricType::Counter, sum(counter), {{"kind", kind}}));
    }
    out.push_back(std::move(events));
    auto bad = family("gatehouse_discovery_bad_replies_total",
                      "Replies from etcd discovery could not use (etcd-api v2: an HTTP error, "
                      "JSON that does not parse or has another shape, a reply over 8 MiB); each "
                      "is logged.",
                      MetricType::Counter);
    bad.metric.push_back(value_metric(MetricType::Counter, sum(metrics::kDiscoveryBadReplies)));
    out.push_back(std::move(bad));
    auto age = family("gatehouse_discovery_view_age_seconds",
                      "Seconds the discovered view may be out of date (etcd's watch is down; the "
                      "last instances known serve meanwhile); 0 while it is current.",
                      MetricType::Gauge);
    // The oldest view of any bridge's (each watches etcd on its own).
    std::int64_t stale = 0;
    for (const metrics::Shard& bridge : bridges) {
      const std::int64_t since = bridge.gauges[metrics::kDiscoveryStaleSinceNs].load();
      if (since != 0 && (stale == 0 || since < stale)) stale = since;
    }
    age.metric.push_back(value_metric(
        MetricType::Gauge,
        stale == 0 ? 0.0
                   : static_cast<double>(std::max<std::int64_t>(0, monotonic_ns() - stale)) / 1e9));
    out.push_back(std::move(age));

    auto instances = family("gatehouse_game_service_instances",
                            "Live instances of each game service (new sessions go to the game "
                            "service's); service=\"\" for the backend lines.",
                            MetricType::Gauge);
    auto sessions = family("gatehouse_game_instance_sessions",
                           "Sessions on each instance of the game service, live or removed from "
                           "the view (sticky sessions left).",
                           MetricType::Gauge);
    // An instance's traffic and errors, by (service, instance): two rows
    // share a name while a removed instance's sessions end beside its
    // namesake that came back with another contract.
    struct InstanceFamily {
      metrics::InstanceCounter counter;
      const char* name;
      const char* help;
    };
    static constexpr InstanceFamily kInstanceFamilies[] = {
        {metrics::kInstanceMessagesSent, "gatehouse_game_instance_messages_sent_total",
         "Client messages written to each game-service instance (its gonet2 streams, or its "
         "batched link)."},
        {metrics::kInstanceMessagesReceived, "gatehouse_game_instance_messages_received_total",
         "Messages read from each game-service instance for its clients."},
        {metrics::kInstanceMessagesDropped, "gatehouse_game_instance_messages_dropped_total",
         "Client messages for each game-service instance that it never got (the session's "
         "stream had failed or was down; each one also counts in "
         "gatehouse_frames_dropped_total{direction=\"to_game\"})."},
        {metrics::kInstanceStreamsFailed, "gatehouse_game_instance_streams_failed_total",
         "Game streams (gonet2) or batched links to each game-service instance that failed."},
    };
    auto moved = family("gatehouse_game_sessions_moved_total",
                        "Sessions of a rebind-mode service moved to another of its instances "
                        "(docs/discovery.md): reason=removed, their instance left the view; "
                        "reason=failed, their stream or batched link failed.",
                        MetricType::Counter);
    std::map<std::pair<std::string, std::string>,
             std::array<std::uint64_t, metrics::kInstanceCounterCount>>
        traffic;
    for (const RoutedService& service : routing.services) {
      instances.metric.push_back(value_metric(
          MetricType::Gauge, static_cast<double>(service.instances), {{"service", service.name}}));
      for (std::uint32_t r = 0; r < metrics::kMoveReasonCount; ++r) {
        if (service.moved[r] == 0) continue;  // sticky services never move one
        moved.metric.push_back(value_metric(
            MetricType::Counter, static_cast<double>(service.moved[r]),
            {{"reason", std::string(metrics::move_reason_text(r))}, {"service", service.name}}));
      }
    }
    for (const RoutedInstance& instance : routing.instances) {
      sessions.metric.push_back(
          value_metric(MetricType::Gauge, static_cast<double>(instance.sessions),
                       {{"backend", instance.name},
                        {"service", instance.service},
                        {"state", std::string(metrics::instance_state_text(instance.state))}}));
      auto& counts = traffic[{instance.service, instance.name}];
      for (std::size_t c = 0; c < counts.size(); ++c) counts[c] += instance.counts[c];
    }
    out.push_back(std::move(instances));
    out.push_back(std::move(sessions));
    out.push_back(std::move(moved));
    for (const InstanceFamily& f : kInstanceFamilies) {
      auto counter = family(f.name, f.help, MetricType::Counter);
      for (const auto& [key, counts] : traffic) {
        counter.metric.push_back(value_metric(MetricType::Counter,
                                              static_cast<double>(counts[f.counter]),
                                              {{"backend", key.second}, {"service", key.first}}));
      }
      out.push_back(std::move(counter));
    }
  }

  /// The gateway's own key in etcd (register-prefix; docs/discovery.md "The
  /// gateway in etcd"), kept by bridge 0's registration thread (the other
  /// bridges do not register).
  static void collect_registration(const metrics::Shard& bridge, std::vector<MetricFamily>& out) {
    auto up = family("gatehouse_registration_up",
                     "1 while the gateway's key is in etcd (register-prefix): registered, its "
                     "lease kept alive; 0 without it, while etcd is out of reach, and from the "
                     "drain's start.",
                     MetricType::Gauge);
    up.metric.push_back(value_metric(
        MetricType::Gauge, static_cast<double>(bridge.gauges[metrics::kRegistrationUp].load())));
    out.push_back(std::move(up));
    auto failures = family("gatehouse_registration_failures_total",
                           "etcd calls of the gateway's registration that failed (etcd out of "
                           "reach, or its lease gone and granted again).",
                           MetricType::Counter);
    failures.metric.push_back(
        value_metric(MetricType::Counter,
                     static_cast<double>(bridge.counters[metrics::kRegistrationFailures].load())));
    out.push_back(std::move(failures));
  }

  GatewaySegment& segment_;
  const Health& health_;
  std::vector<std::pair<std::string, shm::SpscRing>> rings_;
};

MetricsExporter::MetricsExporter(GatewaySegment& segment, const Health& health,
                                 const std::string& address)
    : segment_(segment), health_(health), collector_(std::make_shared<Collector>(segment, health)) {
  std::string bound;
  const int fd =
      bind_socket("--metrics-listen", address, SOCK_STREAM, /*reuse_port=*/false, 0, bound);
  server_ = std::make_unique<HttpServer>(
      fd, [this](std::string_view path) { return answer(path); }, kLimits);
}

MetricsExporter::~MetricsExporter() = default;

HttpServer::Response MetricsExporter::answer(std::string_view path) const {
  if (path == "/metrics") {
    return {.status = 200,
            .content_type = std::string(kExpositionType),
            .body = prometheus::TextSerializer().Serialize(collector_->Collect())};
  }
  if (path == "/healthz") {
    const std::int64_t now = monotonic_ns();
    if (health_.alive(now)) return {.body = "ok\n"};
    return {.status = 503,
            .body = "supervisor loop stalled for " +
                    std::to_string(health_.stalled_ns(now) / 1'000'000) + " ms\n"};
  }
  if (path == "/ready") return ready();
  return {.status = 404, .body = "not found: /metrics, /healthz, /ready\n"};
}

HttpServer::Response MetricsExporter::ready() const {
  const GameServices games = collector_->game_services();
  const auto reasons = not_ready_reasons(health_.report(), segment_.draining(), games);
  if (reasons.empty()) return {.body = "ready\n"};
  std::string body = "not ready: ";
  for (std::size_t i = 0; i < reasons.size(); ++i) body += (i == 0 ? "" : "; ") + reasons[i];
  return {.status = 503, .body = body + "\n"};
}

}  // namespace gatehouse::supervisor
