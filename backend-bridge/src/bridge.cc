#include "gatehouse/bridge/bridge.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/bridge/batch_upstream.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/contract/session.h"
#include "gatehouse/shm/idle_strategy.h"
#include "gatehouse/shm/session_table.h"

namespace gatehouse::bridge {

namespace {
/// Which gateway this is, for the auth service and etcd:
/// host/segment@creation (a restarted gateway is another one).
std::string gateway_id_of(GatewaySegment& segment) {
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + "/" + segment.segment().name() + "@" +
         std::to_string(segment.segment().header().created_unix_ns);
}

/// Which session space a game service's link is of (the `gateway-id` of a
/// batched link, proto/batch.proto): each bridge shard's sessions are its
/// own, and a new link of an id replaces that id's old link, so every shard
/// but the first adds its index.
std::string session_space_of(const std::string& gateway_id, std::uint32_t bridge) {
  return bridge == 0 ? gateway_id : gateway_id + "/bridge-" + std::to_string(bridge);
}

/// `index` when the settings have that bridge; throws otherwise.
std::uint32_t checked_index(std::uint32_t index, const Settings& settings) {
  if (index >= settings.bridges) {
    throw std::invalid_argument("bridge " + std::to_string(index) + " of a gateway of " +
                                std::to_string(settings.bridges) + " bridges");
  }
  return index;
}

/// The services sessions use (the game service, then those of the proto
/// routes in their order) and their modes, from the settings
/// (docs/discovery.md).
ServicesPlan services_plan_of(const Settings& settings) {
  const std::vector<std::string> rebind = split_list(settings.rebind_services);
  const auto rebinds = [&](const std::string& name) {
    return std::find(rebind.begin(), rebind.end(), "*") != rebind.end() ||
           (!name.empty() && std::find(rebind.begin(), rebind.end(), name) != rebind.end());
  };
  ServicesPlan plan;
  plan.game_instance.assign(settings.game_instance,
                            strnlen(settings.game_instance, sizeof settings.game_instance));
  const std::string game = game_service_of(settings.services, settings.game_service);
  plan.services.push_back({game, rebinds(game)});
  for (std::uint32_t r = 0; r < settings.route_count && r < kMaxRoutes; ++r) {
    const ProtoRoute& route = settings.routes[r];
    const std::string name(route.service, strnlen(route.service, sizeof route.service));
    auto it = std::find_if(plan.services.begin(), plan.services.end(),
                           [&](const ServicesPlan::Service& s) { return s.name == name; });
    if (it == plan.services.end()) {
      plan.services.push_back({name, rebinds(name)});
      it = plan.services.end() - 1;
    }
    plan.routes.push_back(
        {route.first, route.last, static_cast<std::size_t>(it - plan.services.begin())});
  }
  return plan;
}
}  // namespace

Bridge::Bridge(GatewaySegment& segment, std::uint32_t index, shm::Doorbell doorbell,
               std::vector<shm::Doorbell> worker_doorbells)
    : segment_(segment),
      settings_(segment.settings()),
      index_(checked_index(index, settings_)),
      gateway_id_(gateway_id_of(segment)),
      status_(segment.control().bridges[index_]),
      routing_(segment.metrics().routing[index_]),
      metrics_(segment.metrics().bridges[index_]),
      in_flight_(segment.metrics().bridges[index_].in_flight),
      doorbell_(std::move(doorbell)),
      wakeup_(doorbell_),
      rings_(workers_, settings_, wakeup_),
      services_(GameServices::Context{calls_, io_, rings_, wakeup_, metrics_, routing_, in_flight_,
                                      settings_.numbering,
                                      std::int64_t{settings_.backend_wait_ms} * 1'000'000,
                                      session_space_of(gateway_id_, index_)},
                services_plan_of(settings_)),
      users_(services_, rings_, metrics_),
      auth_(calls_, rings_, gateway_id_),
      settings_generation_(segment.settings_generation()) {
  auth_.configure(segment.settings());
  io_.watch(doorbell_.fd(), /*writable=*/false);
  if (worker_doorbells.size() != settings_.workers) {
    throw std::invalid_argument("bridge: expected " + std::to_string(settings_.workers) +
                                " worker doorbells");
  }
  const std::int64_t backend_wait_ns = std::int64_t{settings_.backend_wait_ms} * 1'000'000;
  for (std::uint32_t w = 0; w < settings_.workers; ++w) {
    workers_.push_back(
        std::make_unique<WorkerLink>(segment, w, index_, std::move(worker_doorbells[w]),
                                     BatchUpstream::ack_timeout_ns(backend_wait_ns), settings_));
  }
  take_disabled_backends();  // before any session is routed (take_over())
  if (settings_.services[0] == '\0') {
    services_.update(backend_lines());
  } else {
    start_discovery();
  }
  // A dead predecessor's view is stale: unreachable until seen up.
  for (auto& up : routing_.up) up.store(0, std::memory_order_relaxed);
  status_.pid.store(::getpid());
  if (settings_.register_prefix[0] != '\0' && index_ == 0) {
    registration_ = std::make_unique<EtcdRegistration>(segment_, gateway_id_);
  }
}

Bridge::~Bridge() {
  // Calls still up (the drain timed out) are cancelled; the gRPC thread
  // ends them, then the members go (the upstreams before the queue).
  services_.cancel_all();
  auth_.cancel_all();
  calls_.wait_for_calls();
  for (auto& up : routing_.up) up.store(0, std::memory_order_relaxed);
}

DiscoveryView Bridge::backend_lines() const {
  // Each line an instance named by itself: the users of one line stay on it
  // when lines are added (rendezvous hashing) or reordered.
  // A line's service is the one it names (`,service=NAME`), else the game
  // service.
  DiscoveryView view;
  for (std::uint32_t b = 0; b < settings_.backend_count; ++b) {
    const char* service = settings_.backend_services[b];
    view[service[0] != '\0' ? std::string(service, strnlen(service, kServiceNameBytes))
                            : game_service_of(settings_.services, settings_.game_service)]
        .emplace(settings_.backends[b], settings_.backends[b]);
  }
  return view;
}

void Bridge::start_discovery() {
  std::string error;
  DiscoveryOptions options{parse_etcd_endpoints(settings_.etcd_hosts, &error), settings_.etcd_root,
                           split_list(settings_.services), settings_.etcd_api};
  if (options.endpoints.empty()) throw std::invalid_argument(error);
  // discovery-wait in all, shared by the endpoints tried in turn.
  const auto per_endpoint = std::chrono::milliseconds(
      std::max<std::size_t>(100, settings_.discovery_wait_ms / options.endpoints.size()));
  discovery_ = std::make_unique<EtcdDiscovery>(std::move(options), wakeup_);
  // A bridge that replaced a dead one serves on: sessions are logged in.
  const bool first_start = status_.pid.load() == 0;
  if (discovery_->read(per_endpoint)) {
    services_.update(*discovery_->take_view());
  } else if (settings_.backends_given != 0) {
    spdlog::warn("etcd-hosts {}: no answer within {} s; serving the {} backend lines until it does",
                 discovery_->endpoints_text(), settings_.discovery_wait_ms / 1000.0,
                 settings_.backend_count);
    services_.update(backend_lines());
  } else if (first_start) {
    throw std::runtime_error(fmt::format(
        "etcd-hosts {}: no answer within {} s (discovery-wait), and no backend line to fall "
        "back on: start etcd (or fix etcd-hosts), or give backend lines to serve while etcd is "
        "away",
        discovery_->endpoints_text(), settings_.discovery_wait_ms / 1000.0));
  } else {
    spdlog::error("etcd-hosts {}: no answer; no game service until it does",
                  discovery_->endpoints_text());
  }
  discovery_->start();
}

std::size_t Bridge::take_discovery() {
  std::size_t work = 0;
  if (auto view = discovery_->take_view()) {
    services_.update(*view);
    ++work;
  }
  const EtcdDiscovery::Counts counts = discovery_->take_counts();
  metrics_.add(metrics::kDiscoveryPuts, counts.puts);
  metrics_.add(metrics::kDiscoveryDeletes, counts.deletes);
  metrics_.add(metrics::kDiscoveryResyncs, counts.resyncs);
  metrics_.add(metrics::kDiscoveryBadReplies, counts.bad_replies);
  metrics_.set(metrics::kDiscoveryStaleSinceNs, discovery_->stale_since_ns());
  return work;
}

std::size_t Bridge::take_disabled_backends() {
  const std::uint64_t g = segment_.disabled_backends_generation();
  if (g == disabled_generation_) return 0;
  disabled_generation_ = g;
  services_.set_disabled(segment_.disabled_backends());
  return 1;
}

/// A bridge that starts while sessions are logged in replaced one that died:
/// it opens their game streams again, and counts what the dead one held.
/// Only its own: the sessions of its users and the logins of its slots (the
/// other bridges serve theirs on).
void Bridge::take_over() {
  const std::int64_t lost = in_flight_.exchange(0);
  if (lost > 0) {
    metrics_.add(metrics::kGameFramesLost, static_cast<std::uint64_t>(lost));
    spdlog::warn("{} frames were in a dead bridge's hands and are lost", lost);
  }
  // Logged-in sessions, oldest login first: with duplicate-login = replace a
  // user's latest login is the one that keeps its stream. A login waiting for
  // a verdict the dead bridge never gave gets it now.
  auto sessions = segment_.sessions();
  struct LoggedIn {
    std::uint64_t conn;
    std::int64_t user_id;
    std::uint64_t login_seq;
    bool pending;
  };
  std::vector<LoggedIn> logged_in;
  std::size_t auth_lost = 0;
  UpstreamEvents::Unpublished unpublished;
  for (std::uint32_t slot = 0; slot < sessions.slots(); ++slot) {
    const shm::ConnectionId id = sessions.live_id(slot);
    const Session* s = id ? sessions.find(id) : nullptr;
    if (s != nullptr && s->state == Session::kAuthPending &&
        bridge_of_slot(slot, settings_) == index_) {
      // Its auth call died with the predecessor (the request is not kept):
      // the client is told its login failed and may try again. (One whose
      // request the predecessor never read gets a second verdict later; the
      // worker ignores it.)
      rings_.auth_verdict(
          unpublished,
          ipc::AuthVerdict{id.value(), 0,
                           static_cast<std::uint32_t>(LoginRefusal::kAuthUnavailable), 0, 0});
      ++auth_lost;
      continue;
    }
    if (s == nullptr || (s->state != Session::kLoggedIn && s->state != Session::kLoginPending) ||
        bridge_of_user(s->user_id, settings_) != index_) {
      continue;
    }
    logged_in.push_back({id.value(), s->user_id, s->login_seq, s->state == Session::kLoginPending});
  }
  std::sort(logged_in.begin(), logged_in.end(),
            [](const LoggedIn& a, const LoggedIn& b) { return a.login_seq < b.login_seq; });
  const std::uint32_t flags = ipc::stream_open_flags(settings_.duplicate_login);
  std::size_t reopened = 0;
  for (const LoggedIn& s : logged_in) {
    users_.open(s.conn, s.user_id, s.login_seq, s.pending ? ipc::kAwaitVerdict : flags, nullptr);
    reopened += s.pending ? 0 : 1;
  }
  if (reopened != 0) {
    metrics_.add(metrics::kGameStreamsReopened, reopened);
    spdlog::warn("reopened the game streams of {} logged-in sessions", reopened);
  }
  rings_.publish(unpublished);
  if (auth_lost != 0) {
    spdlog::warn(
        "{} logins were with the auth service when the bridge died: refused "
        "(auth_unavailable), the clients may log in again",
        auth_lost);
  }
}

void Bridge::on(const ipc::Parsed<ipc::StreamOpen>& r, const Origin& origin) {
  // The instance the auth service named for this login, if it did.
  if (std::string named = auth_.take_instance(r.header.conn); !named.empty()) {
    services_.pin(r.header.conn, std::move(named));
  }
  users_.open(r.header.conn, r.header.user_id, r.header.login_seq, r.header.flags, &origin);
}

void Bridge::on(const ipc::Parsed<ipc::StreamMessage>& r, const Origin& origin) {
  users_.send(r.header.conn, r.header.user_id, r.header.seq, r.tail, origin);
}

void Bridge::on(const ipc::Parsed<ipc::StreamClose>& r, const Origin& origin) {
  users_.close(r.header.conn, r.header.user_id, origin);
}

void Bridge::on(const ipc::Parsed<ipc::AuthRequest>& r, const Origin& origin) {
  // A dead predecessor's: take_over() refused its login already.
  if (!origin.replay) auth_.check(r);
}

std::size_t Bridge::do_work() {
  std::size_t work = 0;
  ++pass_;
  const std::int64_t pass_ns = monotonic_ns();
  if (const std::uint64_t g = segment_.settings_generation(); g != settings_generation_) {
    settings_generation_ = g;
    auth_.configure(segment_.settings());  // login and the auth settings are live
  }
  for (auto& worker : workers_) {
    work += worker->read([this](const auto& record, const Origin& origin) { on(record, origin); },
                         pass_, pass_ns);
  }
  if (discovery_) work += take_discovery();
  work += take_disabled_backends();
  work += services_.flush(pass_ns);
  work += users_.flush(pass_ns);  // after the ends of calls: newcomers may open
  metrics_.set(metrics::kGameEventsUnacknowledged,
               static_cast<std::int64_t>(services_.unacknowledged()));
  work += rings_.flush_backlogs();
  metrics_.add(metrics::kGameMessagesReceived, rings_.take_messages_received());
  metrics_.add(metrics::kDroppedToClient, rings_.take_dropped());
  metrics_.set(metrics::kGameBacklogBytes, static_cast<std::int64_t>(rings_.backlog_bytes()));
  metrics_.set(metrics::kGameBacklogEvents, static_cast<std::int64_t>(rings_.backlog_events()));
  metrics_.set(metrics::kGameReadsPausedNow, static_cast<std::int64_t>(rings_.paused_calls()));
  metrics_.add(metrics::kGameReadsPaused, rings_.take_pauses());
  metrics_.set(metrics::kAuthCallsInFlight, static_cast<std::int64_t>(auth_.in_flight()));

  const std::int64_t now = monotonic_ns();
  status_.heartbeat_ns.store(now, std::memory_order_relaxed);
  publish_reachability(now);
  flush_log_limits(now);
  const std::size_t open = services_.calls_open();
  metrics_.set(metrics::kGameStreamsOpen, static_cast<std::int64_t>(open));
  if (stop_requested_ != 0 && !stopping_) {
    stopping_ = true;
    stop_deadline_ns_ = now + std::int64_t{settings_.drain_timeout_ms} * 1'000'000;
    spdlog::info("stopping: half-closing {} game streams", open);
    services_.close_all();
    auth_.cancel_all();  // the workers are closing their sessions
  }
  if (stopping_ && (open == 0 || now > stop_deadline_ns_)) finished_ = true;
  return work;
}

void Bridge::publish_reachability(std::int64_t now_ns) {
  constexpr std::int64_t kPeriodNs = 100'000'000;
  if (now_ns < next_reachability_ns_) return;
  next_reachability_ns_ = now_ns + kPeriodNs;
  services_.publish_reachability();
}

void Bridge::park(std::chrono::nanoseconds timeout) {
  const bool idle = wakeup_.begin_park();
  std::size_t raised = 0;
  for (; idle && raised < workers_.size(); ++raised) {
    if (!workers_[raised]->prepare_park()) break;
  }
  // Records waiting for the game's ack are released soon after it comes
  // (nobody wakes us for an ack: that would cost a wakeup per reply).
  const bool holding =
      std::any_of(workers_.begin(), workers_.end(), [](const auto& w) { return w->holding(); });
  if (holding) timeout = std::min<std::chrono::nanoseconds>(timeout, std::chrono::milliseconds(2));
  if (idle && raised == workers_.size()) {
    // Rung, or a game-service connection has bytes (or room) for us.
    io_.wait(timeout);
    doorbell_.drain();
  }
  for (std::size_t i = 0; i < raised; ++i) workers_[i]->unpark();
  wakeup_.end_park();
}

int Bridge::run() {
  take_over();
  shm::BackoffIdler idler =
      shm::BackoffIdler::duty_cycle(std::chrono::microseconds(settings_.idle_spin_us));
  for (;;) {
    const std::size_t work = do_work();
    if (finished_) break;
    idler.idle(work, [this](std::chrono::nanoseconds timeout) { park(timeout); });
  }
  if (const std::size_t open = services_.calls_open(); open != 0) {
    spdlog::warn("{} game streams did not end in time", open);
  }
  return 0;
}

}  // namespace gatehouse::bridge
