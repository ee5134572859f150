// Bridge: the backend-bridge process. Holds the game-service instances
// (GameServices, game_services.h: one Upstream each, the gonet2 contract, a
// Stream per session, or the batched one, a link per instance), from the
// --backend lines or found through etcd (EtcdDiscovery, etcd_discovery.h),
// and moves records between the workers' rings and them.
//
//   worker rings --kStreamOpen/Message/Close--> Bridge::do_work
//       --the session's instance (a login: by user id)--> Upstream ==gRPC==> game
//   worker rings <--kGameMessage/Kick/StreamEnded-- WorkerRings <-- Upstream <==
//   etcd ==watch==> EtcdDiscovery's thread --whole views--> GameServices::update
//   segment (load, drain) --> EtcdRegistration's thread ==lease, put==> etcd
//     (register-prefix: the gateway's own key, etcd_registration.h)
//
// Threads: the main thread runs the duty cycle (do_work(): worker rings ->
// upstreams, their I/O, ends of calls, backlogs) and parks on an IoPoller:
// its doorbell and the sockets of the gonet2 contract's connections, which
// it drives itself (grpc_h2.h: a session's message goes out and its reply
// comes into the worker ring on this thread, no other woken). One gRPC
// thread (CallQueue) polls the completion queue the batched links and the
// auth calls live on and writes the game's events straight into the worker
// rings (WorkerRings, under each ring's producer mutex, ringing the
// worker's doorbell): a batched reply costs no wakeup of the main thread.
// What needs the main thread (a call that ended) wakes it through the
// bridge's own doorbell if it is parked.
//
// Logins checked by a user centre (login = auth:) go through AuthClient
// (auth_client.h): a call per login on the same completion queue, its
// verdict written to the worker's ring from the gRPC thread.
//
// Shards (docs/architecture.md, "Bridge shards"): an instance runs `bridges`
// of these, bridge b serving the sessions whose user bridge_of_user() puts on
// it (and the auth calls of the logins bridge_of_slot() does) over its own
// rings with every worker; each has its own game-service connections,
// discovery watch, routing table (MetricsBlock::routing[b]) and metrics
// shard. Only the first registers the gateway in etcd.
//
// Start: with discovery (--services), the constructor reads etcd within
// discovery-wait; when it does not answer, the --backend lines given serve
// until it does, and without them a first start fails (the gateway refuses
// to start, naming etcd-hosts); a bridge that replaced a dead one serves
// what etcd gives once it answers. take_over() re-opens the game streams of every session logged in
// according to the session table (a bridge that starts while sessions are
// logged in replaced one that died), and refuses the logins whose auth calls
// died with it, before any ring is read. Stop:
// request_stop() half-closes every call; run() returns once every call has
// ended or the drain timeout passed.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gatehouse/bridge/auth_client.h"
#include "gatehouse/bridge/call_on_queue.h"
#include "gatehouse/bridge/etcd_discovery.h"
#include "gatehouse/bridge/etcd_registration.h"
#include "gatehouse/bridge/game_services.h"
#include "gatehouse/bridge/io_poller.h"
#include "gatehouse/bridge/upstream.h"
#include "gatehouse/bridge/user_sessions.h"
#include "gatehouse/bridge/worker_link.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/metrics.h"
#include "gatehouse/contract/records.h"
#include "gatehouse/shm/doorbell.h"

namespace gatehouse::bridge {

class Bridge {
 public:
  /// Finds the game services (etcd's view, or the backend lines) and starts
  /// the batched links (sessions come with take_over()). Throws when etcd
  /// does not answer at a first start and no backend line is given.
  /// Bridge `index` of the settings' `bridges`.
  Bridge(GatewaySegment& segment, std::uint32_t index, shm::Doorbell doorbell,
         std::vector<shm::Doorbell> worker_doorbells);
  /// Cancels the calls still up (the drain timed out) and waits for them;
  /// its game services are no longer reachable through it.
  ~Bridge();

  /// take_over(), then do_work() until finished(), idling between passes;
  /// returns the process exit code.
  int run();
  /// Async-signal-safe: half-close every stream, then exit.
  void request_stop() noexcept { stop_requested_ = 1; }

  /// Opens the game streams of the sessions logged in according to the
  /// session table, and counts the frames a dead predecessor left in flight
  /// as lost. Before the first do_work().
  void take_over();
  /// One pass of the duty cycle (main thread): reads the worker rings into
  /// the upstreams, flushes them (writes, ended calls, retries, re-links),
  /// writes what waits for ring room, heartbeats, and after request_stop()
  /// drains. Returns how much it did (0: the caller may idle).
  std::size_t do_work();
  /// The drain is over: every call ended, or the drain timeout passed.
  bool finished() const noexcept { return finished_; }

 private:
  // One per record type from a worker, decoded and checked by its ring's
  // RecordReader (WorkerLink::read).
  void on(const ipc::Parsed<ipc::StreamOpen>& r, const Origin& origin);
  void on(const ipc::Parsed<ipc::StreamMessage>& r, const Origin& origin);
  void on(const ipc::Parsed<ipc::StreamClose>& r, const Origin& origin);
  void on(const ipc::Parsed<ipc::AuthRequest>& r, const Origin& origin);
  /// The backend lines as a view of the game service's instances.
  DiscoveryView backend_lines() const;
  /// Reads etcd (within discovery-wait) and starts watching it.
  void start_discovery();
  /// A new view from etcd, the discovery's counts and age (main thread).
  std::size_t take_discovery();
  /// The instances an operator disabled (ControlBlock::disabled_backends),
  /// when the supervisor has published a new list.
  std::size_t take_disabled_backends();
  void park(std::chrono::nanoseconds timeout);
  /// Publishes whether each game service is reachable (a few times a
  /// second; RoutingTable::up) and logs when that changes.
  void publish_reachability(std::int64_t now_ns);

  GatewaySegment& segment_;
  const Settings settings_;
  const std::uint32_t index_;             // of the bridge shards
  const std::string gateway_id_;          // host/segment@creation: gateway_id_of()
  ProcessStatus& status_;                 // this shard's, in the control block
  metrics::RoutingTable& routing_;        // this shard's, in the metrics block
  metrics::Writer metrics_;               // main thread only
  std::atomic<std::int64_t>& in_flight_;  // in the segment; any thread
  shm::Doorbell doorbell_;
  Wakeup wakeup_;
  std::vector<std::unique_ptr<WorkerLink>> workers_;
  WorkerRings rings_;
  CallQueue calls_;                           // after rings_: its thread writes there
  IoPoller io_;                               // the doorbell and the gonet2 connections
  GameServices services_;                     // after calls_: its upstreams' calls are there
  std::unique_ptr<EtcdDiscovery> discovery_;  // null: the backend lines serve
  UserSessions users_;                        // every session's open/send/close goes through it
  AuthClient auth_;                           // after calls_: cancelled before the queue waits
  std::uint64_t settings_generation_;         // the live settings auth_ was configured with
  std::uint64_t disabled_generation_ = 0;     // the disabled instances services_ has
  std::uint64_t pass_ = 0;                    // duty-cycle passes, for coalescing kept records
  std::int64_t next_reachability_ns_ = 0;
  bool stopping_ = false;
  std::int64_t stop_deadline_ns_ = 0;
  bool finished_ = false;
  volatile std::sig_atomic_t stop_requested_ = 0;
  /// The gateway's key in etcd (register-prefix), on a thread of its own;
  /// null: not registered. Its destruction stops it, revoking the key
  /// unless the drain did.
  std::unique_ptr<EtcdRegistration> registration_;
};

}  // namespace gatehouse::bridge
