// Supervisor: the one process an operator (or systemd) starts.
//
// Start: create the segment (the config goes into its control block), bind
// the listeners, make one doorbell per consuming process, then start the
// bridges, the workers and the frontends, handing each its fds across exec.
// Children die with the supervisor (PR_SET_PDEATHSIG), so none is orphaned.
//
// Run: one loop over a signalfd (nginx's master cycle: handlers only set
// state, the loop acts); each pass is do_work(), which a test drives one
// call at a time against fake processes and clock (Processes). A child that
// exits unexpectedly is restarted at once, then with exponential backoff if
// it keeps crashing (100 ms doubling to restart-backoff-max; reset after
// 10 s of uptime). Children are known by role and index (ChildId).
//
// SIGTERM / SIGINT drain, bounded by drain_wait + drain_timeout:
//   1. set control.draining and ring every doorbell: the frontend stops
//      accepting; at once, or after drain_wait during which sessions go on
//      and may end by themselves, the workers close every session (reason
//      shutdown), which flushes each client's queued output and half-closes
//      its game stream;
//      until then a worker or a bridge that dies (or hangs) is replaced as
//      at any other time, since it still carries sessions;
//   2. when the frontends have closed their last connections they exit;
//      then the workers and the bridges get SIGTERM; each bridge waits for
//      every game stream of its own to end;
//   3. exit 0. Past the deadline whatever is left is SIGKILLed.
// The phases and deadlines are class Drain; SIGHUP's reload is class Reload.
//
// Operators: the admin socket (AdminServer; gatehousectl) is served from the
// same loop (supervisor_admin.cc): status, sessions and backends read the
// segment; a kick goes to the workers through their mailboxes in the
// control block and a backend switch to the bridges through their list
// there, each answered once they have done it; a reload is SIGHUP's, answered when
// the roll is over. Every request is logged with its peer's uid and pid and
// counted (gatehouse_admin_commands_total).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/shm/doorbell.h"
#include "gatehouse/supervisor/admin_protocol.h"
#include "gatehouse/supervisor/admin_server.h"
#include "gatehouse/supervisor/child.h"
#include "gatehouse/supervisor/config.h"
#include "gatehouse/supervisor/drain.h"
#include "gatehouse/supervisor/health.h"
#include "gatehouse/supervisor/metrics_exporter.h"
#include "gatehouse/supervisor/processes.h"
#include "gatehouse/supervisor/reload.h"
#include "gatehouse/supervisor/routing_view.h"

namespace gatehouse::supervisor {

class Supervisor {
 public:
  /// `args`: the command line `config` was parsed from (argv[0] first),
  /// parsed again on SIGHUP.
  Supervisor(Config config, std::vector<std::string> args,
             std::unique_ptr<Processes> processes = system_processes());
  ~Supervisor();

  /// Takes the signals, start()s, loops on do_work() until drained; returns
  /// the exit code.
  int run();

  /// Binds the listeners, creates the segment and the metrics endpoint,
  /// starts every child and waits until each has attached to the segment.
  /// False (logged) when that fails.
  bool start();
  /// One pass of the loop: the signals read from the signalfd (if run()
  /// made one), reaping, the drain or the reload, hang detection, restarts,
  /// health. Returns how many things it did (0: idle).
  int do_work();
  /// SIGTERM / SIGINT drain, SIGHUP reloads (what do_work() does with what
  /// it reads from the signalfd).
  void handle_signal(int signo);
  /// The drain is over: every child has exited.
  bool finished() const;

  const Drain& drain() const { return drain_; }
  bool reloading() const { return reload_.has_value(); }
  /// The running process of a child (0: none).
  pid_t pid_of(ChildId id) const;
  GatewaySegment& segment() { return *segment_; }

 private:
  static void raise_fd_limit(std::uint32_t max_connections);
  struct Child {
    ChildId id;
    std::vector<std::string> argv;
    std::vector<int> keep_fds;  ///< fds the child inherits
    pid_t pid = 0;
    std::int64_t started_ns = 0;
    std::int64_t restart_at_ns = 0;  ///< when a crashed child is due again (0: not due)
    std::uint32_t backoff_ms = 0;
    std::uint64_t restarts = 0;
    double exited_cpu_seconds = 0;  ///< of the processes it ran before this one
    bool hung = false;              ///< killed for silence: its restart counts as a hang
  };

  void open_listeners();
  /// How one listener's sockets (one per frontend) share its clients.
  void spread(const std::string& address, const std::vector<int>& tcp,
              const std::vector<int>& udp) const;
  void close_listeners();
  void start_children();
  bool wait_for_children_attached();
  void spawn(Child& child);
  int reap_children();
  int kill_hung_children();
  ProcessStatus& status_of(ChildId id) const;
  int restart_due_children();
  void begin_drain();
  int advance_drain();
  /// What starting a reload said: it started (the check passed; the lines
  /// say what it applies), or why not.
  struct ReloadStart {
    bool started = false;
    std::vector<std::string> lines;
  };
  /// Reload (SIGHUP, gatehousectl reload): decide (layout check,
  /// configuration read again), apply what can change live, then roll the
  /// workers (class Reload).
  ReloadStart begin_reload();
  /// Returns what it logged.
  std::vector<std::string> apply(const ReloadPlan& plan);
  int advance_reload();

  // The admin socket (supervisor_admin.cc).
  /// A request being answered: who asked what.
  struct AdminAsk {
    AdminServer::Ticket ticket = 0;
    AdminServer::Peer peer;
    std::string request;
    metrics::AdminCommand command = metrics::kAdminInvalid;
  };
  /// A kick posted to the workers' mailboxes, answered when each has done it.
  struct PendingKick {
    AdminAsk ask;
    std::vector<std::uint32_t> workers;
    std::string target;  ///< "user 1001", "connection 0x..."
    std::int64_t deadline_ns = 0;
  };
  /// A backend switch published to the bridges, answered when every
  /// bridge's routing table shows it.
  struct PendingSwitch {
    AdminAsk ask;
    std::string name;
    std::int64_t deadline_ns = 0;
  };
  int serve_admin();
  std::optional<admin::Response> on_admin(AdminServer::Ticket ticket, const AdminServer::Peer& peer,
                                          std::string_view line);
  /// Logs the request with its peer and what was done, and counts it.
  void note_admin(const AdminAsk& ask, const admin::Response& response);
  /// note_admin(), and sends the answer to `ask` (a request that waited).
  void answer_admin(const AdminAsk& ask, const admin::Response& response);
  std::int64_t sessions_logged_in() const;
  admin::Response status();
  admin::Response sessions(std::optional<std::int64_t> user) const;
  /// Every bridge's routing table as one.
  RoutingView routing() const;
  admin::Response backends() const;
  admin::Response config_lines() const;
  /// Posts the kick; an answer now only when it cannot be posted.
  std::optional<admin::Response> post_kick(const AdminAsk& ask, const admin::Request& request);
  std::optional<admin::Response> switch_backend(const AdminAsk& ask, const admin::Request& request);
  std::optional<admin::Response> start_admin_reload(const AdminAsk& ask);
  /// The admin operations that wait: answered when done or out of time.
  int advance_admin();
  /// The reload an operator asked for is over (`line` says how).
  void reload_finished(bool ok, const std::string& line);
  void report_health();
  /// What /ready and the process metrics see of the children (each pass).
  void publish_health();
  void notify(const std::string& state) const;
  void write_ready_file() const;
  Child* child_by_pid(pid_t pid);
  const Child* find(ChildId id) const;
  bool any_running() const;

  Config config_;
  const std::vector<std::string> args_;
  std::unique_ptr<Processes> processes_;
  std::optional<GatewaySegment> segment_;
  Health health_;               // read by metrics_'s thread
  HealthReport health_report_;  // the one being built (kept for its capacity)
  bool started_ = false;        // start() is over
  std::optional<MetricsExporter> metrics_;
  std::optional<AdminServer> admin_;
  std::optional<PendingKick> kick_;
  std::optional<PendingSwitch> switch_;
  std::optional<AdminAsk> reload_ask_;          ///< the operator waiting for the reload
  std::vector<std::string> reload_report_;      ///< what its start said
  std::vector<std::string> disabled_backends_;  ///< published in the control block
  /// One frontend's listening sockets: TCP, one per listener with a stream
  /// transport; UDP, one per listener with kcp.
  struct FrontendSockets {
    std::vector<int> tcp;
    std::vector<int> udp;
  };
  std::vector<FrontendSockets> sockets_;   ///< by frontend
  std::vector<std::string> listen_names_;  ///< bound addresses, for logs and the ready file
  std::vector<shm::Doorbell> frontend_doorbells_;
  std::vector<shm::Doorbell> bridge_doorbells_;
  std::vector<shm::Doorbell> worker_doorbells_;
  std::vector<Child> children_;  // bridges..., workers..., frontends...
  int signal_fd_ = -1;
  Drain drain_;
  std::optional<Reload> reload_;
  std::uint64_t watchdog_usec_ = 0;
  std::int64_t next_health_ns_ = 0;
};

}  // namespace gatehouse::supervisor
