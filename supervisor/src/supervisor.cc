#include "gatehouse/supervisor/supervisor.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/net/endpoint.h"
#include "gatehouse/supervisor/listen_socket.h"
#include "gatehouse/supervisor/settings_table.h"

namespace gatehouse::supervisor {
namespace {

constexpr std::uint32_t kFirstBackoffMs = 100;
constexpr std::uint32_t kMaxBackoffMs = 5000;
constexpr std::int64_t kStableNs = 10'000'000'000;  // uptime that resets the backoff
constexpr auto kLayoutCheckTimeout = std::chrono::seconds(10);

std::string join_fds(const std::vector<int>& fds) {
  std::string out;
  for (const int fd : fds) out += (out.empty() ? "" : ",") + std::to_string(fd);
  return out;
}

std::vector<shm::Doorbell> make_doorbells(std::uint32_t n) {
  std::vector<shm::Doorbell> doorbells;
  for (std::uint32_t i = 0; i < n; ++i) doorbells.push_back(shm::Doorbell::create());
  return doorbells;
}

std::vector<int> fds_of(const std::vector<shm::Doorbell>& doorbells) {
  std::vector<int> fds;
  fds.reserve(doorbells.size());
  for (const auto& d : doorbells) fds.push_back(d.fd());
  return fds;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by ") + ::strsignal(WTERMSIG(status));
  return "stopped";
}

/// A KCP listener's UDP socket carries every session of the listener:
/// gonet2's udp-sockbuf for its buffers, and its dscp on what it sends.
void tune_udp(int fd, const Settings& s) {
  if (s.udp_sockbuf != 0) {
    const int bytes = static_cast<int>(s.udp_sockbuf);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  }
  const int tos = static_cast<int>(s.udp_dscp << 2);
  ::setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos);  // fails harmlessly on IPv6 sockets
  ::setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos);
}

}  // namespace

Supervisor::Supervisor(Config config, std::vector<std::string> args,
                       std::unique_ptr<Processes> processes)
    : config_(std::move(config)), args_(std::move(args)), processes_(std::move(processes)) {}

Supervisor::~Supervisor() {
  close_listeners();
  if (signal_fd_ >= 0) ::close(signal_fd_);
}

void Supervisor::open_listeners() {
  const Settings& s = config_.settings;
  const std::uint32_t frontends = s.frontends;
  sockets_.assign(frontends, {});
  // Several frontends: each listener is a SO_REUSEPORT group of one socket
  // per frontend (bound in frontend order, which is the group's), and the
  // kernel spreads new clients over them.
  const bool reuse_port = config_.reuse_port || frontends > 1;
  for (std::size_t i = 0; i < config_.listen.size(); ++i) {
    const std::string& address = config_.listen[i];
    const std::uint8_t transports = s.listener_transports[i];
    std::string bound;
    const bool both = (transports & kTransportStreams) != 0 && (transports & kTransportKcp) != 0;
    std::vector<int> tcp, udp;  // this listener's, one per frontend
    const auto close_all = [&] {
      for (const int fd : tcp) ::close(fd);
      for (const int fd : udp) ::close(fd);
      tcp.clear();
      udp.clear();
    };
    // Port 0 with both transports: the port the kernel gave TCP may be taken
    // for UDP; then another is picked.
    for (int attempt = 1;; ++attempt) {
      std::uint16_t port = 0;
      try {
        for (std::uint32_t f = 0; f < frontends; ++f) {
          std::string tcp_bound, udp_bound;
          if ((transports & kTransportStreams) != 0) {
            tcp.push_back(
                bind_socket("--listen", address, SOCK_STREAM, reuse_port, port, tcp_bound));
            port = port_of(tcp.back());
          }
          if ((transports & kTransportKcp) != 0) {
            udp.push_back(
                bind_socket("--listen", address, SOCK_DGRAM, reuse_port, port, udp_bound));
            port = port_of(udp.back());
            tune_udp(udp.back(), s);
          }
          if (f == 0) bound = tcp_bound.empty() ? udp_bound : tcp_bound;
        }
      } catch (const std::runtime_error&) {
        close_all();
        if (!both || attempt == 8 || parse_endpoint(address, /*allow_port_zero=*/true).port != 0)
          throw;
        continue;
      }
      break;
    }
    if (frontends > 1) spread(address, tcp, udp);
    for (std::uint32_t f = 0; f < frontends; ++f) {
      if (!tcp.empty()) sockets_[f].tcp.push_back(tcp[f]);
      if (!udp.empty()) sockets_[f].udp.push_back(udp[f]);
    }
    listen_names_.push_back(bound);
    // As bound, for the gateway's key in etcd (the children get the
    // settings once the listeners are open).
    char(&slot)[kAddressBytes] = config_.settings.listener_addresses[i];
    std::memset(slot, 0, sizeof slot);
    bound.copy(slot, sizeof slot - 1);
  }
  if (!config_.reuse_port) return;
  // Without tcp_migrate_req the kernel resets the connections waiting in a
  // listener's accept queue when that listener closes, instead of handing
  // them to another listener of the port: a draining instance would cost
  // clients that connected in its last moments a reconnect.
  std::ifstream migrate("/proc/sys/net/ipv4/tcp_migrate_req");
  int value = 0;
  if (!(migrate >> value) || value != 1) {
    spdlog::warn(
        "--reuse-port: net.ipv4.tcp_migrate_req is not 1, so connections still in this "
        "instance's accept queue when it drains are reset rather than passed to another "
        "instance on the port (sysctl -w net.ipv4.tcp_migrate_req=1)");
  }
}

/// How the kernel gives one listener's new clients to the frontends
/// (frontend-affinity): by address through a BPF program of ours, unless
/// --reuse-port puts other instances' sockets in the group (their indexes
/// are not ours to pick) or the kernel refuses it; else its own spread.
void Supervisor::spread(const std::string& address, const std::vector<int>& tcp,
                        const std::vector<int>& udp) const {
  if (config_.settings.frontend_affinity != kAffinityAddress) return;
  if (config_.reuse_port) {
    spdlog::warn(
        "--listen {}: frontend-affinity address does not apply with --reuse-port (other "
        "instances share the port): the kernel spreads clients by connection, and each "
        "frontend applies max-connections-per-ip and connect-rate-per-ip alone",
        address);
    return;
  }
  for (const auto* group : {&tcp, &udp}) {
    std::string error;
    if (!group->empty() &&
        !spread_by_address(group->front(), static_cast<std::uint32_t>(group->size()), error)) {
      spdlog::warn(
          "--listen {}: clients cannot be spread by address ({}): the kernel spreads them "
          "by connection, and each frontend applies max-connections-per-ip and "
          "connect-rate-per-ip alone",
          address, error);
    }
  }
}

/// Takes the listeners out of the port at once (shutdown reaches every copy
/// of a socket, the frontend's too) and closes ours: a draining or stopped
/// gateway refuses new connections, and with --reuse-port the kernel sends
/// them to the other instances on the port.
void Supervisor::close_listeners() {
  for (FrontendSockets& sockets : sockets_) {
    for (const int fd : sockets.tcp) {
      ::shutdown(fd, SHUT_RD);
      ::close(fd);
    }
    // A UDP socket has no queue of new sessions to hand over: closing ours
    // leaves the frontend's copy serving its sessions until it is gone.
    for (const int fd : sockets.udp) ::close(fd);
  }
  sockets_.clear();
}

Supervisor::Child* Supervisor::child_by_pid(pid_t pid) {
  for (Child& c : children_) {
    if (c.pid == pid) return &c;
  }
  return nullptr;
}

const Supervisor::Child* Supervisor::find(ChildId id) const {
  for (const Child& c : children_) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

pid_t Supervisor::pid_of(ChildId id) const {
  const Child* c = find(id);
  return c != nullptr ? c->pid : 0;
}

bool Supervisor::any_running() const {
  return std::any_of(children_.begin(), children_.end(), [](const Child& c) { return c.pid != 0; });
}

bool Supervisor::finished() const {
  return drain_.draining() && !any_running();
}

void Supervisor::start_children() {
  const Settings& s = config_.settings;
  const std::string segment = "gatehouse-" + config_.instance;
  const std::string bin = config_.bin_dir + "/";
  const std::vector<int> worker_fds = fds_of(worker_doorbells_);
  const std::vector<int> frontend_fds = fds_of(frontend_doorbells_);
  const std::vector<int> bridge_fds = fds_of(bridge_doorbells_);

  for (std::uint32_t b = 0; b < s.bridges; ++b) {
    Child bridge{
        {Role::kBridge, b},
        {bin + "gatehouse-bridge", "--segment", segment, "--index", std::to_string(b), "--doorbell",
         std::to_string(bridge_fds[b]), "--peer-doorbells", join_fds(worker_fds)},
        worker_fds};
    bridge.keep_fds.push_back(bridge_fds[b]);
    children_.push_back(std::move(bridge));
  }
  for (std::uint32_t w = 0; w < s.workers; ++w) {
    const int own = worker_doorbells_[w].fd();
    // Each frontend's doorbell, then each bridge's.
    std::vector<int> peers = frontend_fds;
    peers.insert(peers.end(), bridge_fds.begin(), bridge_fds.end());
    std::vector<int> keep = peers;
    keep.push_back(own);
    children_.push_back(
        Child{{Role::kWorker, w},
              {bin + "gatehouse-worker", "--segment", segment, "--index", std::to_string(w),
               "--doorbell", std::to_string(own), "--peer-doorbells", join_fds(peers)},
              std::move(keep)});
  }
  for (std::uint32_t f = 0; f < s.frontends; ++f) {
    const FrontendSockets& sockets = sockets_[f];
    Child frontend{
        {Role::kFrontend, f},
        {bin + "gatehouse-frontend", "--segment", segment, "--index", std::to_string(f),
         "--doorbell", std::to_string(frontend_fds[f]), "--peer-doorbells", join_fds(worker_fds),
         "--listen-fds", join_fds(sockets.tcp), "--udp-fds", join_fds(sockets.udp)},
        worker_fds};
    frontend.keep_fds.push_back(frontend_fds[f]);
    frontend.keep_fds.insert(frontend.keep_fds.end(), sockets.tcp.begin(), sockets.tcp.end());
    frontend.keep_fds.insert(frontend.keep_fds.end(), sockets.udp.begin(), sockets.udp.end());
    children_.push_back(std::move(frontend));
  }

  for (Child& c : children_) spawn(c);
}

void Supervisor::spawn(Child& child) {
  const pid_t pid = processes_->spawn(child.argv, child.keep_fds);
  if (pid < 0) {
    spdlog::error("{}: fork failed: {}", child.id.name(), std::strerror(errno));
    child.restart_at_ns = processes_->now_ns() + std::int64_t{kMaxBackoffMs} * 1'000'000;
    return;
  }
  child.pid = pid;
  child.started_ns = processes_->now_ns();
  child.restart_at_ns = 0;
  spdlog::info("{} started (pid {})", child.id.name(), pid);
}

int Supervisor::reap_children() {
  int reaped = 0;
  while (const auto exited = processes_->reap()) {
    const auto [pid, status, cpu_seconds] = *exited;
    Child* c = child_by_pid(pid);
    if (c == nullptr) continue;
    ++reaped;
    c->pid = 0;
    c->exited_cpu_seconds += cpu_seconds;
    const std::string name = c->id.name();
    if (c->id.role == Role::kWorker && !drain_.stopping() && reload_ &&
        reload_->exited(c->id.index)) {
      metrics::Writer(segment_->metrics().supervisor).restarted(metrics::kWorker, metrics::kReload);
      spdlog::info("{} (pid {}) stopped for the reload; starting its replacement", name, pid);
      spawn(*c);
      continue;
    }
    // A drain still serving sessions (drain-wait, or closing them) replaces a
    // worker or bridge that dies as at any other time; the frontend is not
    // replaced (its listeners have left the port), and once it is gone the
    // rest is being stopped.
    if (!drain_.replaces(c->id.role)) {
      spdlog::info("{} (pid {}) {}", name, pid, describe_exit(status));
      continue;
    }
    const std::int64_t now = processes_->now_ns();
    if (now - c->started_ns >= kStableNs) c->backoff_ms = 0;
    // The first crash in a while restarts at once (its sessions are waiting);
    // a crash loop backs off: 100 ms, 200 ms, ... restart-backoff-max.
    const std::uint32_t delay_ms = c->backoff_ms;
    c->backoff_ms =
        std::min(std::max(c->backoff_ms * 2, kFirstBackoffMs), config_.restart_backoff_max_ms);
    c->restart_at_ns = now + std::int64_t{delay_ms} * 1'000'000 + 1;
    ++c->restarts;
    metrics::Writer(segment_->metrics().supervisor)
        .restarted(c->id.component(), c->hung ? metrics::kHang : metrics::kCrash);
    c->hung = false;
    spdlog::error("{} (pid {}) {}; restarting in {} ms", name, pid, describe_exit(status),
                  delay_ms);
  }
  return reaped;
}

int Supervisor::restart_due_children() {
  const std::int64_t now = processes_->now_ns();
  int started = 0;
  for (Child& c : children_) {
    if (c.pid == 0 && c.restart_at_ns != 0 && now >= c.restart_at_ns) {
      spawn(c);
      ++started;
    }
  }
  return started;
}

void Supervisor::begin_drain() {
  const std::uint32_t wait_ms = config_.drain_wait_ms;
  const std::uint32_t timeout_ms = config_.settings.drain_timeout_ms;
  if (!drain_.start(processes_->now_ns(), wait_ms, timeout_ms)) return;
  if (wait_ms != 0) {
    spdlog::info("draining: no new connections; sessions go on for {} ms, then close (up to {} ms)",
                 wait_ms, timeout_ms);
  } else {
    spdlog::info("draining (up to {} ms)", timeout_ms);
  }
  notify("STOPPING=1\nSTATUS=draining");
  reload_finished(false,
                  "a drain began before the reload was over (the workers not replaced "
                  "yet stay as they were)");
  segment_->control().draining.store(drain_.control_value(), std::memory_order_release);
  for (const auto& d : frontend_doorbells_) d.ring();
  for (const auto& d : worker_doorbells_) d.ring();
  for (Child& c : children_) {
    if (c.id.role == Role::kFrontend) c.restart_at_ns = 0;  // a crashed one is not replaced now
  }
}

int Supervisor::advance_drain() {
  const bool frontends_up = std::any_of(children_.begin(), children_.end(), [](const Child& c) {
    return c.id.role == Role::kFrontend && c.pid != 0;
  });
  const Drain::Step step = drain_.advance(processes_->now_ns(), frontends_up);
  int work = 0;
  if (step.close_sessions) {
    ++work;
    spdlog::info("drain-wait over: closing the sessions left");
    segment_->control().draining.store(kDrainClosing, std::memory_order_release);
    for (const auto& d : worker_doorbells_) d.ring();
  }
  if (step.stop_rest) {
    ++work;
    close_listeners();  // the frontend has shut them already, unless it was down
    for (Child& c : children_) {
      if (c.pid != 0) processes_->kill(c.pid, SIGTERM);
    }
  }
  if (step.kill_rest) {
    ++work;
    for (Child& c : children_) {
      if (c.pid == 0) continue;
      spdlog::warn("drain timeout: killing {} (pid {})", c.id.name(), c.pid);
      processes_->kill(c.pid, SIGKILL);
    }
  }
  return work;
}

/// Each child writes its pid into its slot of the control block once it has
/// attached, and beats there.
ProcessStatus& Supervisor::status_of(ChildId id) const {
  ControlBlock& control = segment_->control();
  switch (id.role) {
    case Role::kFrontend:
      return control.frontends[id.index];
    case Role::kBridge:
      return control.bridges[id.index];
    case Role::kWorker:
      break;
  }
  return control.workers[id.index];
}

/// A child whose duty cycle has not beaten for hang_timeout is stuck (a
/// deadlock, an endless loop, SIGSTOP): kill it; the reaper restarts it.
int Supervisor::kill_hung_children() {
  const std::int64_t now = processes_->now_ns();
  const std::int64_t limit = std::int64_t{config_.hang_timeout_ms} * 1'000'000;
  int killed = 0;
  for (Child& c : children_) {
    if (c.pid == 0 || c.hung) continue;
    const ProcessStatus& status = status_of(c.id);
    if (status.pid.load() != c.pid) continue;  // not attached yet
    const std::int64_t beat = status.heartbeat_ns.load();
    if (beat <= c.started_ns || now - beat < limit) continue;  // still starting, or alive
    spdlog::error("{} (pid {}) is hung: no heartbeat for {} ms; killing it", c.id.name(), c.pid,
                  (now - beat) / 1'000'000);
    c.hung = true;
    processes_->kill(c.pid, SIGKILL);
    ++killed;
  }
  return killed;
}

/// Ready means every child has attached to the segment (it writes its pid
/// into the control block once it has), not merely been forked.
bool Supervisor::wait_for_children_attached() {
  const auto attached = [&](const Child& c) { return status_of(c.id).pid.load() == c.pid; };
  const std::int64_t deadline = processes_->now_ns() + 30'000'000'000;
  for (;;) {
    bool all = true;
    for (const Child& c : children_) {
      if (c.pid == 0) {
        spdlog::critical("{} failed to start; see its message above", c.id.name());
        return false;
      }
      all = all && attached(c);
    }
    if (all) return true;
    health_.beat(monotonic_ns());  // waiting is alive too (/healthz)
    if (processes_->now_ns() > deadline) {
      spdlog::critical("children did not attach to the segment within 30 s");
      return false;
    }
    ::usleep(2000);
    reap_children();
  }
}

void Supervisor::handle_signal(int signo) {
  switch (signo) {
    case SIGTERM:
    case SIGINT:
      begin_drain();
      break;
    case SIGHUP:
      begin_reload();  // what it says is logged
      break;
    default:
      break;  // SIGCHLD: do_work() reaps
  }
}

Supervisor::ReloadStart Supervisor::begin_reload() {
  if (drain_.draining() || reload_) {
    const std::string why = drain_.draining() ? "draining" : "a reload is running";
    spdlog::warn("reload ignored: {}", why);
    return {false, {"reload refused: " + why}};
  }
  // Can the binary on disk take over this segment's workers? Asked with
  // fork + exec, no shell: the path is the argument as it is.
  const RunResult layout = processes_->run(
      {config_.bin_dir + "/gatehouse-worker", "--check-layout", "gatehouse-" + config_.instance},
      kLayoutCheckTimeout);
  ParseResult reread;
  if (layout.exit_code == 0) {
    std::vector<const char*> argv;
    for (const std::string& a : args_) argv.push_back(a.c_str());
    reread = parse_config(static_cast<int>(argv.size()), argv.data());
  }
  const ReloadDecision decision = decide_reload(layout, config_, reread);
  metrics::Writer supervisor_metrics(segment_->metrics().supervisor);
  if (!decision.plan) {
    supervisor_metrics.add(metrics::kReloadsRefused);
    spdlog::error("{}", decision.refused);
    return {false, admin::lines_of(decision.refused)};
  }
  supervisor_metrics.add(metrics::kReloadsApplied);
  const std::string answer = without_trailing_newlines(layout.output);
  ReloadStart start{true,
                    {"check: the configuration parses and gatehouse-worker on disk takes "
                     "over this segment (" +
                     answer + ")"}};
  for (std::string& line : apply(*decision.plan)) start.lines.push_back(std::move(line));
  spdlog::info("reload: replacing {} workers one at a time ({})", config_.settings.workers, answer);
  notify("RELOADING=1\nSTATUS=reloading workers");
  reload_.emplace(processes_->now_ns());
  advance_reload();
  return start;
}

/// Publishes what can change live; names what cannot. Returns what it
/// logged.
std::vector<std::string> Supervisor::apply(const ReloadPlan& plan) {
  std::vector<std::string> said;
  for (const std::string& name : plan.need_restart) {
    said.push_back(name + " changed but needs a restart; it stays as it runs");
    spdlog::warn("reload: {}", said.back());
  }
  // A certificate renewed in place changes no setting, but the frontend
  // reads the files again whenever the settings are published.
  const std::uint8_t* transports = plan.config.settings.listener_transports;
  const bool tls =
      std::any_of(transports, transports + plan.config.settings.listener_count,
                  [](std::uint8_t t) { return (t & (kTransportTls | kTransportWss)) != 0; });
  if (plan.applied.empty()) {
    said.emplace_back(tls ? "no setting changed; tls-cert and tls-key are read again"
                          : "no setting changed");
  } else {
    std::string applied;
    for (const std::string& a : plan.applied) applied += (applied.empty() ? "" : ", ") + a;
    said.push_back("settings applied: " + applied);
  }
  spdlog::info("reload: {}", said.back());
  // The provenance of what runs (gatehousectl config) changes with any
  // reload; the settings are published only when they do.
  const bool publish = !plan.applied.empty() || tls;
  config_ = plan.config;
  if (!publish) return said;
  segment_->publish_settings(config_.settings);
  // A parked frontend takes them now, not at its next wakeup.
  for (const auto& d : frontend_doorbells_) d.ring();
  spdlog::set_level(static_cast<spdlog::level::level_enum>(config_.settings.log_level));
  return said;
}

int Supervisor::advance_reload() {
  std::vector<Reload::Worker> workers;
  std::vector<Child*> by_index;
  for (Child& c : children_) {
    if (c.id.role != Role::kWorker) continue;
    workers.push_back({c.pid, c.started_ns, c.pid != 0 && status_of(c.id).pid.load() == c.pid});
    by_index.push_back(&c);
  }
  const Reload::Step step = reload_->advance(processes_->now_ns(), workers);
  switch (step.action) {
    case Reload::Action::kWait:
      return 0;
    case Reload::Action::kStop:
      processes_->kill(by_index[step.worker]->pid, SIGTERM);
      return 1;
    case Reload::Action::kKill: {
      const Child& c = *by_index[step.worker];
      spdlog::warn("{} (pid {}) did not stop in time for the reload; killing it", c.id.name(),
                   c.pid);
      processes_->kill(c.pid, SIGKILL);  // safe: its journal rolls the last batch back or forward
      return 1;
    }
    case Reload::Action::kDone:
      reload_.reset();
      spdlog::info("reload complete");
      reload_finished(true, "reload complete: " + std::to_string(config_.settings.workers) +
                                " workers replaced");
      notify("READY=1\nSTATUS=serving");
      return 1;
  }
  return 0;
}

/// Every half watchdog period (or second): WATCHDOG=1 while every child is
/// running, and a STATUS= line.
void Supervisor::report_health() {
  const std::int64_t now = processes_->now_ns();
  if (now < next_health_ns_) return;
  const std::int64_t period =
      watchdog_usec_ != 0 ? static_cast<std::int64_t>(watchdog_usec_) * 1000 / 2 : 1'000'000'000;
  next_health_ns_ = now + std::min<std::int64_t>(period, 1'000'000'000);
  const bool healthy =
      std::all_of(children_.begin(), children_.end(), [](const Child& c) { return c.pid != 0; });
  const MetricsBlock& m = segment_->metrics();
  const std::int64_t sessions = sessions_logged_in();
  const bool draining = drain_.draining();
  const std::string status = std::string(draining  ? "draining"
                                         : reload_ ? "reloading"
                                                   : "serving") +
                             ": " + std::to_string(m.frontends_gauge(metrics::kConnectionsOpen)) +
                             " connections, " + std::to_string(sessions) + " sessions, " +
                             std::to_string(config_.settings.workers) + " workers";
  notify((watchdog_usec_ != 0 && (healthy || draining) ? "WATCHDOG=1\n" : "") +
         ("STATUS=" + status));
}

void Supervisor::publish_health() {
  health_.beat(monotonic_ns());  // the real clock: /healthz reads it
  HealthReport& r = health_report_;
  r.started = started_;
  r.listening = std::any_of(sockets_.begin(), sockets_.end(), [](const FrontendSockets& f) {
    return !f.tcp.empty() || !f.udp.empty();
  });
  r.children.resize(children_.size());
  for (std::size_t i = 0; i < children_.size(); ++i) {
    const Child& c = children_[i];
    // The worker a reload is replacing is down on purpose; its sessions
    // wait in the rings for its successor.
    const bool rolling = reload_ && c.id.role == Role::kWorker && c.id.index == reload_->current();
    const bool attached = c.pid != 0 && segment_ && status_of(c.id).pid.load() == c.pid;
    r.children[i] = {c.id, c.pid, attached, rolling, c.exited_cpu_seconds};
  }
  health_.publish(r);
}

void Supervisor::notify(const std::string& state) const {
  ::sd_notify(0, state.c_str());
}

void Supervisor::write_ready_file() const {
  if (config_.ready_file.empty()) return;
  const std::string tmp = config_.ready_file + ".tmp";
  std::string text = "pid=" + std::to_string(::getpid()) + "\n";
  for (const std::string& l : listen_names_) text += "listen=" + l + "\n";
  const auto colon = config_.metrics_listen.rfind(':');
  text += "metrics=" + config_.metrics_listen.substr(0, colon) + ":" +
          std::to_string(metrics_->port()) + "\n";
  // A fresh file, never through a link planted at the temporary name; the
  // rename replaces a link at the final name instead of following it.
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    spdlog::error("ready file {}: {}", tmp, std::strerror(errno));
    return;
  }
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!written || std::rename(tmp.c_str(), config_.ready_file.c_str()) != 0) {
    spdlog::error("ready file {}: {}", config_.ready_file, std::strerror(errno));
  }
}

/// The frontend holds one fd per connection: take the hard open-file limit
/// (children inherit it) and say when even that is short of the table.
void Supervisor::raise_fd_limit(std::uint32_t max_connections) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  constexpr rlim_t kSpareFds = 128;  // listeners, rings' doorbells, gRPC, logs
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < max_connections + kSpareFds) {
    spdlog::warn(
        "open-file limit {} is below --max-connections {} + {}: the frontend will "
        "refuse connections beyond about {} (raise LimitNOFILE / ulimit -Hn)",
        lim.rlim_cur, max_connections, kSpareFds,
        lim.rlim_cur > kSpareFds ? lim.rlim_cur - kSpareFds : 0);
  }
}

bool Supervisor::start() {
  const Settings& s = config_.settings;
  if (const std::string listener = any_login_public_listener(config_); !listener.empty()) {
    if (!config_.login_any_allow_public) {
      spdlog::critical(
          "login = any proves nothing and is refused on listener {}, which is not loopback: "
          "set login = signed:<public key file> (docs/login.md), or login-any-allow-public = "
          "true on a development machine",
          listener);
      return false;
    }
    spdlog::warn(
        "login = any on listener {}: anyone can log in as any user id "
        "(login-any-allow-public); never in production",
        listener);
  }
  raise_fd_limit(s.max_connections);
  try {
    open_listeners();
    segment_.emplace(GatewaySegment::create("gatehouse-" + config_.instance, s));
    health_.beat(monotonic_ns());
    metrics_.emplace(*segment_, health_, config_.metrics_listen);
    admin_.emplace(admin_socket_path(config_));
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return false;
  }
  frontend_doorbells_ = make_doorbells(s.frontends);
  bridge_doorbells_ = make_doorbells(s.bridges);
  worker_doorbells_ = make_doorbells(s.workers);

  start_children();
  if (!wait_for_children_attached()) return false;
  if (std::any_of(config_.settings.listener_transports,
                  config_.settings.listener_transports + config_.settings.listener_count,
                  [](std::uint8_t t) { return (t & kTransportKcp) != 0; }) &&
      config_.settings.kcp_nc == 0) {
    spdlog::warn("nc = 0 (a KCP congestion window) is not implemented: KCP runs as nc = 1");
  }
  for (std::size_t i = 0; i < listen_names_.size(); ++i) {
    const std::uint8_t modes = config_.settings.listener_crypto[i];
    spdlog::info("listening on {} ({})", listen_names_[i],
                 listener_options_text(config_.settings, static_cast<std::uint32_t>(i)).substr(1));
    if ((modes & kCryptoModern) != 0 && s.gateway_key_count == 0) {
      spdlog::warn(
          "listener {}: no gateway-key, so its modern clients are kicked "
          "(unknown_gateway_key); create one with `gatehouse keygen --out FILE`",
          listen_names_[i]);
    }
    if ((modes & kCryptoModern1) != 0) {
      spdlog::warn(
          "listener {}: accepts the unauthenticated modern exchange version 1 "
          "(modern1; counted in gatehouse_key_exchanges_total{{version=\"1\"}})",
          listen_names_[i]);
    }
  }
  spdlog::info("metrics on http://{}:{}/metrics",
               config_.metrics_listen.substr(0, config_.metrics_listen.rfind(':')),
               metrics_->port());
  spdlog::info("admin socket {} (gatehousectl)", admin_->path());
  const std::string processes = processes_text(s);
  if (s.services[0] == '\0') {
    spdlog::info("{}, game services: {}", processes, s.backend_count);
  } else {
    spdlog::info("{}, game service {} found through etcd {} ({} API) under {} (services {})",
                 processes, game_service_of(s.services, s.game_service), s.etcd_hosts,
                 etcd_api_text(s.etcd_api), s.etcd_root, s.services);
  }
  started_ = true;
  publish_health();
  write_ready_file();
  if (::sd_watchdog_enabled(0, &watchdog_usec_) <= 0) watchdog_usec_ = 0;
  notify("READY=1\nSTATUS=serving");
  return true;
}

int Supervisor::do_work() {
  int work = 0;
  if (signal_fd_ >= 0) {
    signalfd_siginfo info;
    while (::read(signal_fd_, &info, sizeof info) == sizeof info) {
      handle_signal(static_cast<int>(info.ssi_signo));
      ++work;
    }
  }
  work += reap_children();
  work += serve_admin();
  if (drain_.draining()) {
    work += advance_drain();
    if (finished()) return work;
    if (drain_.supervising()) {
      work += kill_hung_children();
      work += restart_due_children();
    }
  } else {
    work += kill_hung_children();
    work += restart_due_children();
    if (reload_) work += advance_reload();
  }
  report_health();
  publish_health();
  return work;
}

int Supervisor::run() {
  // Signals become readable events on one fd; handlers never run.
  sigset_t mask;
  sigemptyset(&mask);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal_fd_ = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  ::signal(SIGPIPE, SIG_IGN);

  if (!start()) return 1;
  while (!finished()) {
    // An admin connection's later bytes are read on the next pass.
    pollfd p[2] = {{signal_fd_, POLLIN, 0}, {admin_->fd(), POLLIN, 0}};
    ::poll(p, 2, 50);
    do_work();
  }
  if (!config_.ready_file.empty()) std::remove(config_.ready_file.c_str());
  spdlog::info("drained; exiting");
  return 0;
}

}  // namespace gatehouse::supervisor
