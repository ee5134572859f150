// The supervisor's side of the admin socket (gatehousectl): each command,
// what it reads or asks of the other processes, and its answer. See
// supervisor.h ("Operators") and docs/operations.md.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>

#include "gatehouse/base/log.h"
#include "gatehouse/base/log_text.h"
#include "gatehouse/base/version.h"
#include "gatehouse/contract/layout.h"
#include "gatehouse/net/endpoint.h"
#include "gatehouse/supervisor/supervisor.h"

namespace gatehouse::supervisor {
namespace {

/// How long a kick waits for its workers, and a backend switch for the
/// bridges, before the operator is told it has not happened yet.
constexpr std::int64_t kAdminWaitNs = 10'000'000'000;

std::string_view state_text(Session::State state) {
  switch (state) {
    case Session::kOpen:
      return "open";
    case Session::kLoggedIn:
      return "logged_in";
    case Session::kLoginPending:
      return "login_pending";
    case Session::kAuthPending:
      return "auth_pending";
    default:
      return "closed";
  }
}

bool logged_in(Session::State state) {
  return state == Session::kLoggedIn || state == Session::kLoginPending;
}

std::string hex(std::uint64_t value) {
  return fmt::format("{:#x}", value);
}

/// The bridges (0 to `bridges` - 1) whose routing table does not show
/// instance `name` as a switch wants it yet: disabled, or (an enable) not.
std::vector<std::string> bridges_not_switched(const RoutingView& view, const std::string& name,
                                              bool disable, std::uint32_t bridges) {
  std::uint32_t disabled_by = 0;
  for (const RoutedInstance& instance : view.instances) {
    if (instance.name == name) disabled_by |= instance.disabled_by;
  }
  std::vector<std::string> waiting;
  for (std::uint32_t b = 0; b < bridges; ++b) {
    if (((disabled_by >> b) & 1) != (disable ? 1u : 0u)) {
      waiting.push_back(ChildId{Role::kBridge, b}.name());
    }
  }
  return waiting;
}

/// What one line of `sessions` shows of a session a worker may be changing:
/// each field read whole (an atomic load of its own), so a line is a
/// snapshot of fields, not of the session at one instant.
struct SessionView {
  Session::State state;
  Session::Crypto crypto;
  std::int64_t user_id;
  std::int64_t opened_unix_ms;
  std::uint8_t address[16];
  std::uint16_t port;
  std::uint16_t listener;
  std::uint64_t frames_in;
  std::uint64_t frames_out;
};

template <class T>
T load(T& field) {
  return std::atomic_ref<T>(field).load(std::memory_order_relaxed);
}

SessionView view_of(Session& s) {
  SessionView v{load(s.state), load(s.crypto),   load(s.user_id),   load(s.opened_unix_ms), {},
                load(s.port),  load(s.listener), load(s.frames_in), load(s.frames_out)};
  std::memcpy(v.address, s.address, sizeof v.address);  // written once, at the session's open
  return v;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int Supervisor::serve_admin() {
  if (!admin_) return 0;
  int work = admin_->serve([this](AdminServer::Ticket ticket, const AdminServer::Peer& peer,
                                  std::string_view line) { return on_admin(ticket, peer, line); },
                           processes_->now_ns());
  return work + advance_admin();
}

std::optional<admin::Response> Supervisor::on_admin(AdminServer::Ticket ticket,
                                                    const AdminServer::Peer& peer,
                                                    std::string_view line) {
  AdminAsk ask{ticket, peer, std::string(line)};
  const auto answer_now = [&](admin::Response response) {
    note_admin(ask, response);
    return response;
  };
  // The socket's mode lets only our user and root connect; a peer of any
  // other uid means someone changed it.
  if (peer.uid != 0 && peer.uid != ::geteuid()) {
    return answer_now(admin::Response::error("uid " + std::to_string(peer.uid) +
                                             " may not use the admin socket"));
  }
  const auto parsed = admin::parse_request(line);
  if (const auto* why = std::get_if<std::string>(&parsed)) {
    admin::Response refused = admin::Response::error(*why);
    for (std::string& usage : admin::lines_of(admin::usage())) refused.lines.push_back(usage);
    return answer_now(std::move(refused));
  }
  const admin::Request& request = std::get<admin::Request>(parsed);
  ask.command = request.command;
  std::optional<admin::Response> response;
  switch (request.command) {
    case metrics::kAdminStatus:
      response = status();
      break;
    case metrics::kAdminSessions:
      response = sessions(request.user);
      break;
    case metrics::kAdminKick:
      response = post_kick(ask, request);
      break;
    case metrics::kAdminBackends:
      response = backends();
      break;
    case metrics::kAdminBackendDisable:
    case metrics::kAdminBackendEnable:
      response = switch_backend(ask, request);
      break;
    case metrics::kAdminConfig:
      response = config_lines();
      break;
    case metrics::kAdminReload:
      response = start_admin_reload(ask);
      break;
    case metrics::kAdminInvalid:
    case metrics::kAdminCommandCount:
      break;
  }
  if (response) return answer_now(std::move(*response));
  return std::nullopt;  // answered by advance_admin() or the reload
}

void Supervisor::note_admin(const AdminAsk& ask, const admin::Response& response) {
  metrics::Writer(segment_->metrics().supervisor)
      .admin(ask.command, response.ok ? metrics::kAdminOk : metrics::kAdminError);
  // What an action did is in the log; what a listing showed is not.
  std::string said;
  const bool acts =
      ask.command == metrics::kAdminKick || ask.command == metrics::kAdminBackendDisable ||
      ask.command == metrics::kAdminBackendEnable || ask.command == metrics::kAdminReload;
  if (!response.ok || acts) {
    for (const std::string& line : response.lines) said += (said.empty() ? ": " : "; ") + line;
  }
  const auto level = response.ok ? spdlog::level::info : spdlog::level::warn;
  spdlog::log(level, "admin uid={} pid={} request '{}': {}{}", ask.peer.uid, ask.peer.pid,
              log_text(ask.request), response.ok ? "ok" : "error", log_text(said, 1024));
}

void Supervisor::answer_admin(const AdminAsk& ask, const admin::Response& response) {
  note_admin(ask, response);
  admin_->answer(ask.ticket, response, processes_->now_ns());
}

std::int64_t Supervisor::sessions_logged_in() const {
  const MetricsBlock& m = segment_->metrics();
  std::int64_t sessions = 0;
  for (std::uint32_t w = 0; w < config_.settings.workers; ++w) {
    sessions += m.workers[w].gauges[metrics::kSessionsLoggedIn].load(std::memory_order_relaxed);
  }
  return sessions;
}

admin::Response Supervisor::status() {
  const Settings& s = config_.settings;
  const MetricsBlock& m = segment_->metrics();
  const auto created_ns = static_cast<std::int64_t>(segment_->segment().header().created_unix_ns);
  admin::Response r;
  r.lines = {fmt::format("gatehouse {} ({}), shared-memory layout {}", version(), revision(),
                         kLayoutVersion),
             "instance: " + config_.instance,
             std::string("state: ") + (drain_.draining() ? "draining"
                                       : reload_         ? "reloading"
                                                         : "serving"),
             fmt::format("uptime: {} s", (unix_ms() - created_ns / 1'000'000) / 1000),
             fmt::format("connections: {} (max-connections {})",
                         m.frontends_gauge(metrics::kConnectionsOpen), s.max_connections),
             fmt::format("sessions: {} logged in", sessions_logged_in())};
  for (const Child& c : children_) {
    r.lines.push_back(c.pid != 0
                          ? fmt::format("{}: pid {}, restarts {}", c.id.name(), c.pid, c.restarts)
                          : fmt::format("{}: down (restarts {})", c.id.name(), c.restarts));
  }
  std::uint32_t live = 0;
  std::uint32_t reachable = 0;
  for (const RoutedInstance& instance : routing().instances) {
    if (instance.state != metrics::kInstanceLive) continue;
    ++live;
    reachable += instance.up ? 1 : 0;
  }
  r.lines.push_back(fmt::format("game services: {} instances take sessions, {} of them reachable",
                                live, reachable));
  if (!disabled_backends_.empty()) {
    r.lines.push_back(fmt::format("disabled: {}", fmt::join(disabled_backends_, ", ")));
  }
  r.lines.push_back("admin socket: " + admin_->path());
  return r;
}

admin::Response Supervisor::sessions(std::optional<std::int64_t> user) const {
  auto table = segment_->sessions();
  const std::int64_t now_ms = unix_ms();
  admin::Response r;
  r.lines.emplace_back();  // the count, once known
  for (std::uint32_t slot = 0; slot < table.slots(); ++slot) {
    const shm::ConnectionId id = table.live_id(slot);
    Session* s = id ? table.find(id) : nullptr;
    if (s == nullptr) continue;
    const SessionView v = view_of(*s);
    if (v.state == Session::kUnused || v.state == Session::kClosed) continue;
    if (user && (!logged_in(v.state) || v.user_id != *user)) continue;
    // The processes that hold it: its slot's worker and frontend, and once it
    // has a user, the bridge of that user's game streams.
    const std::string bridge = logged_in(v.state)
                                   ? std::to_string(bridge_of_user(v.user_id, config_.settings))
                                   : std::string("-");
    r.lines.push_back(fmt::format(
        "conn={} user={} state={} remote={} listener={} worker={} frontend={} bridge={} crypto={} "
        "age_s={} frames_in={} frames_out={}",
        hex(id.value()), v.user_id, state_text(v.state), address_port_text(v.address, v.port),
        v.listener, worker_of_slot(slot, config_.settings),
        frontend_of_slot(slot, config_.settings), bridge, crypto_modes_text(mode_of(v.crypto)),
        std::max<std::int64_t>(0, now_ms - v.opened_unix_ms) / 1000, v.frames_in, v.frames_out));
  }
  const std::size_t n = r.lines.size() - 1;
  r.lines.front() =
      user ? fmt::format("sessions of user {}: {}", *user, n) : fmt::format("sessions: {}", n);
  return r;
}

RoutingView Supervisor::routing() const {
  return merge_routing(std::span(segment_->metrics().routing, config_.settings.bridges));
}

admin::Response Supervisor::backends() const {
  const RoutingView view = routing();
  admin::Response r;
  if (view.published == 0) {
    r.lines.emplace_back("no game-service instance yet: no bridge has published its routing");
    return r;
  }
  const std::string service = view.services.empty() ? "" : view.services[0].name;
  r.lines.push_back(fmt::format("instances of game service {}: {}",
                                service.empty() ? "(the backend lines)" : service,
                                view.instances.size()));
  for (const RoutedInstance& instance : view.instances) {
    r.lines.push_back(fmt::format(
        "instance={} state={} reachable={} sessions={} sent={} received={} dropped={} "
        "streams_failed={}",
        instance.name, metrics::instance_state_text(instance.state), instance.up ? "yes" : "no",
        instance.sessions, instance.counts[metrics::kInstanceMessagesSent],
        instance.counts[metrics::kInstanceMessagesReceived],
        instance.counts[metrics::kInstanceMessagesDropped],
        instance.counts[metrics::kInstanceStreamsFailed]));
  }
  return r;
}

admin::Response Supervisor::config_lines() const {
  admin::Response r;
  r.lines.push_back("# the effective configuration of instance " + config_.instance +
                    ", each value with its origin (the file, a flag, or the default)");
  for (std::string& line : effective_text(config_)) r.lines.push_back(std::move(line));
  return r;
}

std::optional<admin::Response> Supervisor::post_kick(const AdminAsk& ask,
                                                     const admin::Request& request) {
  if (kick_) return admin::Response::error("another kick is in progress; try again");
  const Settings& s = config_.settings;
  PendingKick kick{ask, {}, {}, processes_->now_ns() + kAdminWaitNs};
  if (request.conn != 0) {
    const shm::ConnectionId id(request.conn);
    if (id.slot() >= s.max_connections || segment_->sessions().find(id) == nullptr) {
      return admin::Response::error("no open session of connection " + hex(request.conn) +
                                    " (gatehousectl sessions lists them)");
    }
    kick.workers.push_back(worker_of_slot(id.slot(), s));
    kick.target = "connection " + hex(request.conn);
  } else {
    for (std::uint32_t w = 0; w < s.workers; ++w) kick.workers.push_back(w);
    kick.target = "user " + std::to_string(*request.user);
  }
  ControlBlock& control = segment_->control();
  for (const std::uint32_t w : kick.workers) {
    const KickRequest& k = control.kicks[w];
    if (k.posted.load() != k.done.load()) {
      return admin::Response::error("worker-" + std::to_string(w) +
                                    " has not done an earlier kick yet; try again");
    }
  }
  for (const std::uint32_t w : kick.workers) {
    KickRequest& k = control.kicks[w];
    k.conn = request.conn;
    k.user_id = request.user.value_or(0);
    k.reason_bytes = static_cast<std::uint32_t>(request.reason.size());  // parse_request bounds it
    std::memcpy(k.reason, request.reason.data(), request.reason.size());
    k.posted.store(k.posted.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    worker_doorbells_[w].ring();
  }
  kick_ = std::move(kick);
  return std::nullopt;
}

std::optional<admin::Response> Supervisor::switch_backend(const AdminAsk& ask,
                                                          const admin::Request& request) {
  if (switch_) return admin::Response::error("another backend switch is in progress; try again");
  const bool disable = request.command == metrics::kAdminBackendDisable;
  const auto listed = std::find(disabled_backends_.begin(), disabled_backends_.end(), request.name);
  if (!disable) {
    if (listed == disabled_backends_.end()) {
      return admin::Response::error("instance " + request.name + " is not disabled");
    }
    disabled_backends_.erase(listed);
  } else {
    if (listed != disabled_backends_.end()) {
      return admin::Response{true, {"instance " + request.name + " is disabled already"}};
    }
    const std::vector<RoutedInstance> instances = routing().instances;
    if (std::none_of(instances.begin(), instances.end(),
                     [&](const RoutedInstance& i) { return i.name == request.name; })) {
      return admin::Response::error("no game-service instance " + request.name +
                                    " (gatehousectl backends lists them)");
    }
    if (disabled_backends_.size() == kMaxDisabledBackends) {
      return admin::Response::error("already " + std::to_string(kMaxDisabledBackends) +
                                    " instances disabled, the most there can be");
    }
    disabled_backends_.push_back(request.name);
  }
  segment_->publish_disabled_backends(disabled_backends_);
  for (const auto& d : bridge_doorbells_) d.ring();
  switch_ = PendingSwitch{ask, request.name, processes_->now_ns() + kAdminWaitNs};
  return std::nullopt;
}

std::optional<admin::Response> Supervisor::start_admin_reload(const AdminAsk& ask) {
  ReloadStart start = begin_reload();
  if (!start.started) return admin::Response{false, std::move(start.lines)};
  reload_report_ = std::move(start.lines);
  reload_ask_ = ask;  // answered when the roll is over (at least one worker to replace)
  return std::nullopt;
}

void Supervisor::reload_finished(bool ok, const std::string& line) {
  if (!reload_ask_) return;
  admin::Response r{ok, {}};
  if (!ok) r.lines.push_back(line);  // an error says why first
  r.lines.insert(r.lines.end(), reload_report_.begin(), reload_report_.end());
  if (ok) r.lines.push_back(line);
  const AdminAsk ask = *reload_ask_;
  reload_ask_.reset();
  answer_admin(ask, r);
}

int Supervisor::advance_admin() {
  int work = 0;
  const std::int64_t now = processes_->now_ns();
  if (kick_) {
    const ControlBlock& control = segment_->control();
    std::uint32_t kicked = 0;
    std::vector<std::string> waiting;
    for (const std::uint32_t w : kick_->workers) {
      const KickRequest& k = control.kicks[w];
      if (k.done.load(std::memory_order_acquire) == k.posted.load(std::memory_order_relaxed)) {
        kicked += k.kicked.load(std::memory_order_relaxed);
      } else {
        waiting.push_back("worker-" + std::to_string(w));
      }
    }
    if (waiting.empty() || now > kick_->deadline_ns) {
      admin::Response r;
      if (!waiting.empty()) {
        r = admin::Response::error(fmt::format(
            "{} did not do the kick within {} s (it will when it runs); {} sessions "
            "of {} kicked so far",
            fmt::join(waiting, ", "), kAdminWaitNs / 1'000'000'000, kicked, kick_->target));
      } else if (kicked == 0) {
        r = admin::Response::error("no open session of " + kick_->target);
      } else {
        r.lines.push_back(fmt::format("kicked {} sessions of {}", kicked, kick_->target));
      }
      answer_admin(kick_->ask, r);
      kick_.reset();
      ++work;
    }
  }
  if (switch_) {
    const bool disable = switch_->ask.command == metrics::kAdminBackendDisable;
    const RoutingView view = routing();
    // Enabled: disabled no more (live, or gone from the view meanwhile).
    const std::vector<std::string> waiting =
        bridges_not_switched(view, switch_->name, disable, config_.settings.bridges);
    if (waiting.empty() || now > switch_->deadline_ns) {
      admin::Response r;
      if (!waiting.empty()) {
        r = admin::Response::error(fmt::format(
            "not taken within {} s by {} (is it running? gatehousectl status); it will be when "
            "it runs",
            kAdminWaitNs / 1'000'000'000, fmt::join(waiting, ", ")));
      } else if (disable) {
        std::int64_t sessions = 0;
        for (const RoutedInstance& instance : view.instances) {
          if (instance.name == switch_->name && instance.state == metrics::kInstanceDisabled) {
            sessions += instance.sessions;
          }
        }
        r.lines.push_back(
            fmt::format("instance {} disabled: no new session goes there; its {} sessions stay",
                        switch_->name, sessions));
      } else {
        r.lines.push_back("instance " + switch_->name + " enabled: new sessions go there again");
      }
      answer_admin(switch_->ask, r);
      switch_.reset();
      ++work;
    }
  }
  return work;
}

}  // namespace gatehouse::supervisor
