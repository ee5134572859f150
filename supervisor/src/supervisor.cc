#include "gatehouse/supervisor/supervisor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
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

namespace gatehouse::supervisor {
namespace {

constexpr std::uint32_t kFirstBackoffMs = 100;
constexpr std::uint32_t kMaxBackoffMs = 5000;
constexpr std::int64_t kStableNs = 10'000'000'000;  // uptime that resets the backoff

std::string join_fds(const std::vector<int>& fds) {
  std::string out;
  for (const int fd : fds) out += (out.empty() ? "" : ",") + std::to_string(fd);
  return out;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by ") + ::strsignal(WTERMSIG(status));
  return "stopped";
}

/// Binds a listening socket for "host:port" or "[v6]:port"; throws with the
/// address in the message.
int listen_on(const std::string& address, bool reuse_port, std::string& bound) {
  Endpoint endpoint;
  try {
    endpoint = parse_endpoint(address, /*allow_port_zero=*/true);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("--listen: ") + e.what());
  }
  const std::string& host = endpoint.host;
  const std::string port = std::to_string(endpoint.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    throw std::runtime_error("--listen " + address + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error("--listen " + address + ": " + std::strerror(errno));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("--listen " + address + ": SO_REUSEPORT: " + std::strerror(err));
  }
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("--listen " + address + ": " + std::strerror(err));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  char text[INET6_ADDRSTRLEN] = "?";
  std::uint16_t bound_port = 0;
  if (addr.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof text);
    bound_port = ntohs(a6->sin6_port);
    bound = "[" + std::string(text) + "]:" + std::to_string(bound_port);
  } else {
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a4->sin_addr, text, sizeof text);
    bound_port = ntohs(a4->sin_port);
    bound = std::string(text) + ":" + std::to_string(bound_port);
  }
  return fd;
}

}  // namespace

Supervisor::Supervisor(Config config, std::vector<std::string> args)
    : config_(std::move(config)), args_(std::move(args)) {}

Supervisor::~Supervisor() {
  close_listeners();
  if (signal_fd_ >= 0) ::close(signal_fd_);
}

void Supervisor::open_listeners() {
  for (const std::string& address : config_.listen) {
    std::string bound;
    listen_fds_.push_back(listen_on(address, config_.reuse_port, bound));
    listen_names_.push_back(bound);
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

/// Takes the listeners out of the port at once (shutdown reaches every copy
/// of a socket, the frontend's too) and closes ours: a draining or stopped
/// gateway refuses new connections, and with --reuse-port the kernel sends
/// them to the other instances on the port.
void Supervisor::close_listeners() {
  for (const int fd : listen_fds_) {
    ::shutdown(fd, SHUT_RD);
    ::close(fd);
  }
  listen_fds_.clear();
}

Supervisor::Child* Supervisor::child_by_pid(pid_t pid) {
  for (Child& c : children_) {
    if (c.pid == pid) return &c;
  }
  return nullptr;
}

void Supervisor::start_children() {
  const Settings& s = config_.settings;
  const std::string segment = "gatehouse-" + config_.instance;
  const std::string bin = config_.bin_dir + "/";
  std::vector<int> worker_fds;
  for (const auto& d : worker_doorbells_) worker_fds.push_back(d.fd());

  Child bridge{"bridge",
               {bin + "gatehouse-bridge", "--segment", segment, "--doorbell",
                std::to_string(bridge_doorbell_.fd()), "--peer-doorbells", join_fds(worker_fds)},
               worker_fds};
  bridge.keep_fds.push_back(bridge_doorbell_.fd());
  children_.push_back(std::move(bridge));
  for (std::uint32_t w = 0; w < s.workers; ++w) {
    const int own = worker_doorbells_[w].fd();
    const std::vector<int> peers{frontend_doorbell_.fd(), bridge_doorbell_.fd()};
    children_.push_back(
        Child{"worker-" + std::to_string(w),
              {bin + "gatehouse-worker", "--segment", segment, "--index", std::to_string(w),
               "--doorbell", std::to_string(own), "--peer-doorbells", join_fds(peers)},
              {own, peers[0], peers[1]}});
  }
  Child frontend{"frontend",
                 {bin + "gatehouse-frontend", "--segment", segment, "--doorbell",
                  std::to_string(frontend_doorbell_.fd()), "--peer-doorbells", join_fds(worker_fds),
                  "--listen-fds", join_fds(listen_fds_)},
                 worker_fds};
  frontend.keep_fds.push_back(frontend_doorbell_.fd());
  frontend.keep_fds.insert(frontend.keep_fds.end(), listen_fds_.begin(), listen_fds_.end());
  children_.push_back(std::move(frontend));

  for (Child& c : children_) spawn(c);
}

void Supervisor::spawn(Child& child) {
  std::vector<char*> argv;
  for (std::string& a : child.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    spdlog::error("{}: fork failed: {}", child.name, std::strerror(errno));
    child.restart_at_ns = monotonic_ns() + std::int64_t{kMaxBackoffMs} * 1'000'000;
    return;
  }
  if (pid == 0) {
    // Child: die with the supervisor, take the default signal handling back,
    // keep exactly the fds it was given, and become the component.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const int fd : child.keep_fds) ::fcntl(fd, F_SETFD, 0);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "gatehouse: cannot run %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  child.pid = pid;
  child.started_ns = monotonic_ns();
  child.restart_at_ns = 0;
  spdlog::info("{} started (pid {})", child.name, pid);
}

void Supervisor::reap_children() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    Child* c = child_by_pid(pid);
    if (c == nullptr) continue;
    c->pid = 0;
    if (c->reloading && !stopping_rest_) {
      c->reloading = false;
      metrics::Writer(segment_->metrics().supervisor).restarted(metrics::kWorker, metrics::kReload);
      spdlog::info("{} (pid {}) stopped for the reload; starting its replacement", c->name, pid);
      spawn(*c);
      continue;
    }
    // A drain still serving sessions (drain-wait, or closing them) replaces a
    // worker or bridge that dies as at any other time; the frontend is not
    // replaced (its listeners have left the port), and once it is gone the
    // rest is being stopped.
    if (draining_ && (stopping_rest_ || c->name == "frontend")) {
      spdlog::info("{} (pid {}) {}", c->name, pid, describe_exit(status));
      continue;
    }
    const std::int64_t now = monotonic_ns();
    if (now - c->started_ns >= kStableNs) c->backoff_ms = 0;
    // The first crash in a while restarts at once (its sessions are waiting);
    // a crash loop backs off: 100 ms, 200 ms, ... restart-backoff-max.
    const std::uint32_t delay_ms = c->backoff_ms;
    c->backoff_ms =
        std::min(std::max(c->backoff_ms * 2, kFirstBackoffMs), config_.restart_backoff_max_ms);
    c->restart_at_ns = now + std::int64_t{delay_ms} * 1'000'000 + 1;
    ++c->restarts;
    metrics::Writer(segment_->metrics().supervisor)
        .restarted(c->name == "frontend" ? metrics::kFrontend
                   : c->name == "bridge" ? metrics::kBridge
                                         : metrics::kWorker,
                   c->hung ? metrics::kHang : metrics::kCrash);
    c->hung = false;
    spdlog::error("{} (pid {}) {}; restarting in {} ms", c->name, pid, describe_exit(status),
                  delay_ms);
  }
}

void Supervisor::restart_due_children() {
  const std::int64_t now = monotonic_ns();
  for (Child& c : children_) {
    if (c.pid == 0 && c.restart_at_ns != 0 && now >= c.restart_at_ns) spawn(c);
  }
}

void Supervisor::begin_drain() {
  if (draining_) return;
  draining_ = true;
  const std::int64_t close_ns = monotonic_ns() + std::int64_t{config_.drain_wait_ms} * 1'000'000;
  drain_close_ns_ = config_.drain_wait_ms != 0 ? close_ns : 0;
  drain_deadline_ns_ = close_ns + std::int64_t{config_.settings.drain_timeout_ms} * 1'000'000;
  if (config_.drain_wait_ms != 0) {
    spdlog::info("draining: no new connections; sessions go on for {} ms, then close (up to {} ms)",
                 config_.drain_wait_ms, config_.settings.drain_timeout_ms);
  } else {
    spdlog::info("draining (up to {} ms)", config_.settings.drain_timeout_ms);
  }
  notify("STOPPING=1\nSTATUS=draining");
  segment_->control().draining.store(
      config_.drain_wait_ms != 0 ? kDrainNoNewConnections : kDrainClosing,
      std::memory_order_release);
  frontend_doorbell_.ring();
  for (const auto& d : worker_doorbells_) d.ring();
  children_.back().restart_at_ns = 0;  // the frontend
}

void Supervisor::advance_drain() {
  if (drain_close_ns_ != 0 && monotonic_ns() >= drain_close_ns_) {
    drain_close_ns_ = 0;
    spdlog::info("drain-wait over: closing the sessions left");
    segment_->control().draining.store(kDrainClosing, std::memory_order_release);
    for (const auto& d : worker_doorbells_) d.ring();
  }
  const Child& frontend = children_.back();
  if (!stopping_rest_ && frontend.pid == 0) {
    stopping_rest_ = true;
    close_listeners();  // the frontend has shut them already, unless it was down
    for (Child& c : children_) {
      if (c.pid != 0) ::kill(c.pid, SIGTERM);
    }
  }
  if (monotonic_ns() > drain_deadline_ns_) {
    for (Child& c : children_) {
      if (c.pid == 0) continue;
      spdlog::warn("drain timeout: killing {} (pid {})", c.name, c.pid);
      ::kill(c.pid, SIGKILL);
    }
    drain_deadline_ns_ = INT64_MAX;  // kill once; reaping finishes the job
  }
}

/// Ready means every child has attached to the segment (it writes its pid
/// into the control block once it has), not merely been forked.
ProcessStatus& Supervisor::status_of(const Child& c) const {
  ControlBlock& control = segment_->control();
  if (c.name == "frontend") return control.frontend;
  if (c.name == "bridge") return control.bridge;
  return control.workers[std::stoul(c.name.substr(c.name.find('-') + 1))];
}

/// A child whose duty cycle has not beaten for hang_timeout is stuck (a
/// deadlock, an endless loop, SIGSTOP): kill it; the reaper restarts it.
void Supervisor::kill_hung_children() {
  const std::int64_t now = monotonic_ns();
  const std::int64_t limit = std::int64_t{config_.hang_timeout_ms} * 1'000'000;
  for (Child& c : children_) {
    if (c.pid == 0 || c.hung) continue;
    const ProcessStatus& status = status_of(c);
    if (status.pid.load() != c.pid) continue;  // not attached yet
    const std::int64_t beat = status.heartbeat_ns.load();
    if (beat <= c.started_ns || now - beat < limit) continue;  // still starting, or alive
    spdlog::error("{} (pid {}) is hung: no heartbeat for {} ms; killing it", c.name, c.pid,
                  (now - beat) / 1'000'000);
    c.hung = true;
    ::kill(c.pid, SIGKILL);
  }
}

bool Supervisor::wait_for_children_attached() {
  const auto attached = [&](const Child& c) { return status_of(c).pid.load() == c.pid; };
  const std::int64_t deadline = monotonic_ns() + 30'000'000'000;
  for (;;) {
    bool all = true;
    for (const Child& c : children_) {
      if (c.pid == 0) {
        spdlog::critical("{} failed to start; see its message above", c.name);
        return false;
      }
      all = all && attached(c);
    }
    if (all) return true;
    if (monotonic_ns() > deadline) {
      spdlog::critical("children did not attach to the segment within 30 s");
      return false;
    }
    ::usleep(2000);
    reap_children();
  }
}

void Supervisor::begin_reload() {
  if (draining_ || reloading_) {
    spdlog::warn("SIGHUP ignored: {}", draining_ ? "draining" : "a reload is running");
    return;
  }
  const std::string segment = "gatehouse-" + config_.instance;
  const std::string check =
      config_.bin_dir + "/gatehouse-worker --check-layout " + segment + " 2>&1";
  std::FILE* p = ::popen(check.c_str(), "r");
  std::string answer;
  char line[512];
  while (p != nullptr && std::fgets(line, sizeof line, p) != nullptr) answer += line;
  const int status = p != nullptr ? ::pclose(p) : -1;
  if (!answer.empty() && answer.back() == '\n') answer.pop_back();
  if (status != 0) {
    spdlog::error("reload refused, the running workers stay: {}", answer);
    return;
  }
  if (!reload_config()) return;
  spdlog::info("reload: replacing {} workers one at a time ({})", config_.settings.workers, answer);
  notify("RELOADING=1\nSTATUS=reloading workers");
  reloading_ = 0;
  reload_started_ns_ = monotonic_ns();
  advance_reload();
}

bool Supervisor::reload_config() {
  std::vector<const char*> argv;
  for (const std::string& a : args_) argv.push_back(a.c_str());
  const ParseResult parsed = parse_config(static_cast<int>(argv.size()), argv.data());
  if (!parsed.config) {
    std::string why = parsed.message;
    while (!why.empty() && why.back() == '\n') why.pop_back();
    spdlog::error(
        "reload refused, the configuration does not parse (settings and workers stay "
        "as they run): {}",
        why);
    return false;
  }
  const ReloadPlan plan = plan_reload(config_, *parsed.config);
  for (const std::string& name : plan.need_restart) {
    spdlog::warn("reload: {} changed but needs a restart; it stays as it runs", name);
  }
  if (plan.applied.empty()) {
    spdlog::info("reload: no setting changed");
    return true;
  }
  std::string applied;
  for (const std::string& a : plan.applied) applied += (applied.empty() ? "" : ", ") + a;
  spdlog::info("reload: settings applied: {}", applied);
  config_ = plan.config;
  segment_->publish_settings(config_.settings);
  spdlog::set_level(static_cast<spdlog::level::level_enum>(config_.settings.log_level));
  return true;
}

void Supervisor::advance_reload() {
  // Skip to the first worker that is not yet replaced.
  while (*reloading_ < children_.size() && children_[*reloading_].name.rfind("worker-", 0) != 0) {
    ++*reloading_;
  }
  if (*reloading_ >= children_.size()) {
    reloading_.reset();
    spdlog::info("reload complete");
    notify("READY=1\nSTATUS=serving");
    return;
  }
  Child& c = children_[*reloading_];
  if (c.reloading) {  // stopping the old one
    if (monotonic_ns() > reload_deadline_ns_ && c.pid != 0) {
      spdlog::warn("{} (pid {}) did not stop in time for the reload; killing it", c.name, c.pid);
      ::kill(c.pid, SIGKILL);  // safe: its journal rolls the last batch back or forward
      reload_deadline_ns_ = INT64_MAX;
    }
    return;
  }
  if (c.pid != 0 && c.started_ns != 0 && status_of(c).pid.load() == c.pid &&
      c.started_ns > reload_started_ns_) {
    ++*reloading_;  // the replacement is up: next worker
    advance_reload();
    return;
  }
  if (c.pid != 0 && c.started_ns <= reload_started_ns_) {  // the old one: stop it
    c.reloading = true;
    reload_deadline_ns_ = monotonic_ns() + 5'000'000'000;
    ::kill(c.pid, SIGTERM);
  }
}

/// Every half watchdog period (or second): WATCHDOG=1 while every child is
/// running, and a STATUS= line.
void Supervisor::report_health() {
  const std::int64_t now = monotonic_ns();
  if (now < next_health_ns_) return;
  const std::int64_t period =
      watchdog_usec_ != 0 ? static_cast<std::int64_t>(watchdog_usec_) * 1000 / 2 : 1'000'000'000;
  next_health_ns_ = now + std::min<std::int64_t>(period, 1'000'000'000);
  bool healthy = true;
  for (const Child& c : children_) healthy = healthy && c.pid != 0;
  const MetricsBlock& m = segment_->metrics();
  std::int64_t sessions = 0;
  for (std::uint32_t w = 0; w < config_.settings.workers; ++w) {
    sessions += m.workers[w].gauges[metrics::kSessionsLoggedIn].load(std::memory_order_relaxed);
  }
  const std::string status = std::string(draining_    ? "draining"
                                         : reloading_ ? "reloading"
                                                      : "serving") +
                             ": " +
                             std::to_string(m.frontend.gauges[metrics::kConnectionsOpen].load()) +
                             " connections, " + std::to_string(sessions) + " sessions, " +
                             std::to_string(config_.settings.workers) + " workers";
  notify((watchdog_usec_ != 0 && (healthy || draining_) ? "WATCHDOG=1\n" : "") +
         ("STATUS=" + status));
}

void Supervisor::notify(const std::string& state) const {
  ::sd_notify(0, state.c_str());
}

void Supervisor::write_ready_file() const {
  if (config_.ready_file.empty()) return;
  const std::string tmp = config_.ready_file + ".tmp";
  {
    std::ofstream out(tmp);
    out << "pid=" << ::getpid() << "\n";
    for (const std::string& l : listen_names_) out << "listen=" << l << "\n";
    const auto colon = config_.metrics_listen.rfind(':');
    out << "metrics=" << config_.metrics_listen.substr(0, colon) << ":" << metrics_->port() << "\n";
  }
  std::rename(tmp.c_str(), config_.ready_file.c_str());  // readers never see half a file
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

int Supervisor::run() {
  // Signals become readable events on one fd; handlers never run.
  sigset_t mask;
  sigemptyset(&mask);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal_fd_ = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  ::signal(SIGPIPE, SIG_IGN);

  const Settings& s = config_.settings;
  raise_fd_limit(s.max_connections);
  try {
    open_listeners();
    segment_.emplace(GatewaySegment::create("gatehouse-" + config_.instance, s));
    metrics_.emplace(*segment_, config_.metrics_listen);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  frontend_doorbell_ = shm::Doorbell::create();
  bridge_doorbell_ = shm::Doorbell::create();
  for (std::uint32_t w = 0; w < s.workers; ++w)
    worker_doorbells_.push_back(shm::Doorbell::create());

  start_children();
  if (!wait_for_children_attached()) return 1;
  for (std::size_t i = 0; i < listen_names_.size(); ++i) {
    spdlog::info("listening on {} (crypto={})", listen_names_[i],
                 crypto_modes_text(config_.settings.listener_crypto[i]));
  }
  spdlog::info("metrics on http://{}:{}/metrics",
               config_.metrics_listen.substr(0, config_.metrics_listen.rfind(':')),
               metrics_->port());
  spdlog::info("{} workers, game services: {}", s.workers, s.backend_count);
  write_ready_file();
  if (::sd_watchdog_enabled(0, &watchdog_usec_) <= 0) watchdog_usec_ = 0;
  notify("READY=1\nSTATUS=serving");

  for (;;) {
    pollfd p{signal_fd_, POLLIN, 0};
    ::poll(&p, 1, 50);
    signalfd_siginfo info;
    while (::read(signal_fd_, &info, sizeof info) == sizeof info) {
      switch (info.ssi_signo) {
        case SIGTERM:
        case SIGINT:
          begin_drain();
          break;
        case SIGHUP:
          begin_reload();
          break;
        case SIGCHLD:
          break;  // reaped below
      }
    }
    reap_children();
    if (draining_) {
      advance_drain();
      bool any = false;
      for (const Child& c : children_) any = any || c.pid != 0;
      if (!any) break;
      if (!stopping_rest_) {
        kill_hung_children();
        restart_due_children();
      }
    } else {
      kill_hung_children();
      restart_due_children();
      if (reloading_) advance_reload();
    }
    report_health();
  }
  if (!config_.ready_file.empty()) std::remove(config_.ready_file.c_str());
  spdlog::info("drained; exiting");
  return 0;
}

}  // namespace gatehouse::supervisor
