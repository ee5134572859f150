// Supervisor: the one process an operator (or systemd) starts.
//
// Start: create the segment (the config goes into its control block), bind
// the listeners, make one doorbell per consuming process, then start the
// bridge, the N workers and the frontend, handing each its fds across exec.
// Children die with the supervisor (PR_SET_PDEATHSIG), so none is orphaned.
//
// Run: one loop over a signalfd (nginx's master cycle: handlers only set
// state, the loop acts). A child that exits unexpectedly is restarted at
// once, then with exponential backoff if it keeps crashing (100 ms doubling
// to 5 s; reset after 10 s of uptime).
//
// SIGTERM / SIGINT drain, bounded by drain_wait + drain_timeout:
//   1. set control.draining and ring every doorbell: the frontend stops
//      accepting; at once, or after drain_wait during which sessions go on
//      and may end by themselves, the workers close every session (reason
//      shutdown), which flushes each client's queued output and half-closes
//      its game stream;
//      until then a worker or the bridge that dies (or hangs) is replaced as
//      at any other time, since it still carries sessions;
//   2. when the frontend has closed its last connection it exits; then the
//      workers and the bridge get SIGTERM; the bridge waits for every game
//      stream to end;
//   3. exit 0. Past the deadline whatever is left is SIGKILLed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/shm/doorbell.h"
#include "gatehouse/supervisor/config.h"
#include "gatehouse/supervisor/metrics_exporter.h"

namespace gatehouse::supervisor {

class Supervisor {
 public:
  /// `args`: the command line `config` was parsed from (argv[0] first),
  /// parsed again on SIGHUP.
  Supervisor(Config config, std::vector<std::string> args);
  ~Supervisor();

  /// Starts everything and runs until drained; returns the exit code.
  int run();

 private:
  static void raise_fd_limit(std::uint32_t max_connections);
  struct Child {
    std::string name;  ///< "frontend", "worker-0", "bridge"
    std::vector<std::string> argv;
    std::vector<int> keep_fds;  ///< fds the child inherits
    pid_t pid = 0;
    std::int64_t started_ns = 0;
    std::int64_t restart_at_ns = 0;  ///< when a crashed child is due again (0: not due)
    std::uint32_t backoff_ms = 0;
    std::uint64_t restarts = 0;
    bool hung = false;       ///< killed for silence: its restart counts as a hang
    bool reloading = false;  ///< stopped by a reload: replace at once
  };

  void open_listeners();
  void close_listeners();
  void start_children();
  bool wait_for_children_attached();
  void spawn(Child& child);
  void reap_children();
  void kill_hung_children();
  ProcessStatus& status_of(const Child& child) const;
  void restart_due_children();
  void begin_drain();
  void advance_drain();
  // Reload (SIGHUP): the configuration is read again and what can change
  // live is published (plan_reload()); then each worker in turn is stopped
  // (SIGTERM: it finishes its batch) and replaced from the binary on disk,
  // after that binary has said it can attach to this segment's layout.
  void begin_reload();
  /// Reads the configuration again and publishes its live settings; false
  /// (logged) when it does not parse.
  bool reload_config();
  void advance_reload();
  void report_health();
  void notify(const std::string& state) const;
  void write_ready_file() const;
  Child* child_by_pid(pid_t pid);

  Config config_;
  const std::vector<std::string> args_;
  std::optional<GatewaySegment> segment_;
  std::optional<MetricsExporter> metrics_;
  std::vector<int> listen_fds_;
  std::vector<std::string> listen_names_;  ///< bound addresses, for logs and the ready file
  shm::Doorbell frontend_doorbell_;
  shm::Doorbell bridge_doorbell_;
  std::vector<shm::Doorbell> worker_doorbells_;
  std::vector<Child> children_;  // bridge, workers..., frontend
  int signal_fd_ = -1;
  bool draining_ = false;
  bool stopping_rest_ = false;  // drain phase 2 started
  std::int64_t drain_deadline_ns_ = 0;
  std::int64_t drain_close_ns_ = 0;       // when the sessions left are closed (0: done)
  std::optional<std::size_t> reloading_;  // index in children_ of the worker being replaced
  std::int64_t reload_deadline_ns_ = 0;
  std::int64_t reload_started_ns_ = 0;
  std::uint64_t watchdog_usec_ = 0;
  std::int64_t next_health_ns_ = 0;
};

}  // namespace gatehouse::supervisor
