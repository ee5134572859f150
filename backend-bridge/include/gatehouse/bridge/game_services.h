// GameServices: the game services the bridge serves, their instances, and
// which instance each session is on (docs/discovery.md).
//
//   a view (EtcdDiscovery's, or the backend lines) --update()--> instances by
//       service and name
//   a session's first call to a service --route(conn, user, login_seq, s)-->
//       rendezvous hashing of the user id over the service's live instances;
//       the choice is kept for the session, so an instance that joins later
//       moves no live session
//       or, for the game service, the instance named for the session: the
//       one its auth service named (pin(), LoginReply.instance), else the
//       game-instance setting's (gonet2's GetServiceWithId with its
//       DEFAULT_GSID); none live of that name: no instance (the login is
//       refused backend_unavailable), never another one
//   the session's later calls --of(conn, s)--> the same instance
//   a client message --service_of(message)--> the service its proto number
//       is routed to (`route`; the game service's when none)
//
// Services: the game service (index 0: every login opens its stream there)
// and those that proto-number ranges are routed to (`route`), each with its
// own instances; a session's stream (or batched link membership) on one of
// those opens at its first message for it. The other services watched are
// counted.
//
// Modes, per service: sticky (the default, gonet2's): a session stays on its
// instance. An instance removed from the view gets no new sessions; its
// sessions keep their streams while those work and, when one fails, go as
// on any instance (the contract's backend-wait, then backend_unavailable).
// rebind (stateless services): a session moves. Its instance removed from
// the view: its stream there is half-closed (a CLOSE on a batched link) and
// one opened on the instance rendezvous hashing picks now, with the same
// userid and login-seq; what the client sent before the move went to the
// old stream in order, what it sends after goes to the new one. Its stream
// failed (the instance died before etcd noticed; a batched link broke): the
// session is re-opened on another live instance, retried with backoff and
// routed again at each attempt, for up to backend-wait from the failure;
// what the client sends meanwhile waits here (bounded) and follows. Only if
// no instance takes it within backend-wait is it closed backend_unavailable.
// The client notices nothing either way. Each upstream reports the ends of
// its sessions' streams through its instance's InstanceEvents, which is
// where a rebind service's failures are taken and where ends from an
// instance a session has left are dropped.
//
// An instance an operator disabled (set_disabled) gets no new sessions
// either, and keeps its sessions and its upstream until it is enabled again
// (in both modes: disabling drains an instance, it does not empty it).
// An instance removed from the view goes once no session is on it and its
// calls are over. An instance whose address changes keeps its name, and so
// its users and sessions: its Upstream moves (Upstream::move_to). One whose
// contract changes (a batch: prefix comes or goes) is removed and comes
// again as a new instance of the same name.
//
// The routing table in shared memory (metrics::RoutingTable) shows the
// services (with their moves), the instances, their sessions and their
// traffic and errors (InstanceMetrics). An instance's counts go on by name
// across its comings and goings and across bridge restarts (a new bridge
// takes them from the table its predecessor left), so they stay Prometheus
// counters while rows are renumbered. Main thread only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "gatehouse/bridge/call_on_queue.h"
#include "gatehouse/bridge/etcd_discovery.h"
#include "gatehouse/bridge/io_poller.h"
#include "gatehouse/bridge/rendezvous.h"
#include "gatehouse/bridge/upstream.h"
#include "gatehouse/codec/frame_numbering.h"
#include "gatehouse/contract/metrics.h"

namespace gatehouse::bridge {

/// Which services a bridge routes to and how (from the settings:
/// services_plan_of() in bridge.cc).
struct ServicesPlan {
  struct Service {
    std::string name;     ///< "" for the backend lines without discovery
    bool rebind = false;  ///< rebind mode; else sticky
  };
  /// Client messages whose proto number is in [first, last] go to service
  /// `service` (an index in `services`, never 0).
  struct Route {
    std::uint16_t first;
    std::uint16_t last;
    std::size_t service;
  };
  std::vector<Service> services;  ///< [0]: the game service
  std::vector<Route> routes;
  /// The game service's instance every session goes to, by name
  /// (game-instance); "": rendezvous hashing.
  std::string game_instance;
};

class GameServices {
 public:
  /// What the upstreams are made with; everything here outlives this.
  struct Context {
    CallQueue& calls;  ///< a batched link's calls
    IoPoller& io;      ///< the gonet2 contract's connections
    UpstreamEvents& events;
    Wakeup& wakeup;
    metrics::Writer& metrics;
    metrics::RoutingTable& table;
    std::atomic<std::int64_t>& in_flight;
    FrameNumbering numbering;
    std::int64_t backend_wait_ns;
    std::string gateway_id;  ///< a batched link's gateway-id is this + "/" + instance
  };
  /// Most client messages one session may have waiting for a rebind
  /// service's instance; more are dropped and counted.
  static constexpr std::size_t kMaxWaitingMessages = 1024;

  GameServices(Context context, ServicesPlan plan);
  /// One sticky service, `game_service`.
  GameServices(Context context, std::string game_service);
  /// Cancels the calls still up and waits for them to end.
  ~GameServices();
  GameServices(const GameServices&) = delete;
  GameServices& operator=(const GameServices&) = delete;

  /// The view is now `view`: instances new to it start, those gone from it
  /// are removed (a sticky service's sessions stay, a rebind service's
  /// move), those that moved move. An instance's value is HOST:PORT (the
  /// gonet2 contract) or batch:HOST:PORT.
  void update(const DiscoveryView& view);

  /// The instances an operator took out of rotation (gatehousectl backend
  /// disable, by name): no new session goes to them, those on them stay.
  /// An instance of that name that joins later is out of rotation too.
  void set_disabled(std::vector<std::string> names);

  /// The game service's instance `conn`'s session goes to, by name (its
  /// auth service's choice), over the game-instance setting and hashing:
  /// said before its first route(), forgotten when it closes.
  void pin(std::uint64_t conn, std::string instance);

  /// The service a client message goes to (its proto number's route; 0,
  /// the game service, when none).
  std::size_t service_of(std::span<const std::byte> message) const noexcept;
  std::size_t service_count() const noexcept { return services_.size(); }

  /// The session's instance of `service`: the one it is on, or for a
  /// session that has none yet the service's live instance for `user_id`,
  /// which it is then on. Null when there is none (no live instance, or a
  /// rebind service's session waits for one: hold() takes its messages).
  Upstream* route(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq = 0,
                  std::size_t service = 0);
  /// The instance of `service` the session is on; null if none.
  Upstream* of(std::uint64_t conn, std::size_t service = 0) const;
  /// The session's user and login, as routed (for a later service's
  /// stream): false when the session is not known here.
  bool login_of(std::uint64_t conn, std::int64_t& user_id, std::uint64_t& login_seq) const;
  /// A client message for a rebind service's session that waits for an
  /// instance: kept (in order, bounded) for the one it gets. False when the
  /// session does not wait.
  bool hold(std::uint64_t conn, std::size_t service, std::uint64_t seq,
            std::span<const std::byte> message);
  /// The session closed: every service's stream of it is half-closed
  /// (`origin`: its record), and it leaves its instances once their calls
  /// have ended.
  void close(std::uint64_t conn, const Origin& origin);
  /// The session closed, its streams half-closed by the caller: it leaves
  /// its instances once their calls have ended.
  void closed(std::uint64_t conn);

  /// Once per duty-cycle pass: flushes every upstream, re-opens the streams
  /// of rebind services' sessions that wait (when due), lets closed
  /// sessions go, and drops removed instances that have no session and no
  /// call left.
  std::size_t flush(std::int64_t now_ns);
  /// The drain: half-closes every call.
  void close_all();
  void cancel_all();
  std::size_t calls_open() const;
  std::uint64_t unacknowledged() const;
  /// Live instances of the game service.
  std::size_t live() const noexcept { return services_[0].live.size(); }
  /// Every 100 ms: asks each instance whether it is reachable
  /// (Upstream::reachable()), publishes it and the instance's counts in its
  /// routing-table row, and logs when reachability changes.
  void publish_reachability();

 private:
  struct Instance;
  class InstanceEvents;
  struct Service {
    std::string name;
    bool rebind = false;
    std::vector<std::unique_ptr<Instance>> instances;  // live and removed
    std::vector<Instance*> live;                       // those new sessions go to, by name
    std::vector<std::uint64_t> live_hashes;            // theirs, for rendezvous_pick
    std::uint64_t moved[metrics::kMoveReasonCount] = {};
  };
  /// A session's place in one service.
  struct Place {
    Instance* instance = nullptr;  // null: none yet, or waiting for one (rebind)
    // Rebind: when its stream first failed (it may wait backend-wait from
    // there), the backoff before its next attempt, and when it was last
    // re-opened (a stream that has held kWorkedNs works: the next failure
    // starts afresh).
    std::int64_t failed_ns = 0;
    std::uint32_t backoff_ms = 0;
    std::int64_t reopened_ns = 0;
  };
  struct Bound {
    std::int64_t user_id = 0;
    std::uint64_t login_seq = 0;
    std::string named;          // the game service's instance it must be on ("": any)
    bool closed = false;        // the session closed: it goes once its calls have ended
    std::vector<Place> places;  // by service
  };
  /// A rebind service's session whose stream failed (or whose instance left
  /// with no other to take it): re-opened when due.
  struct Waiting {
    std::uint64_t avoid = 0;  // the hash of the instance that failed it (0: none)
    std::int64_t due_ns = 0;
    metrics::MoveReason reason = metrics::kMovedRemoved;
    struct Held {
      std::uint64_t seq;
      std::string message;
    };
    std::deque<Held> messages;
  };
  /// A session in one service.
  struct Key {
    std::uint64_t conn;
    std::size_t service;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& key) const noexcept {
      return std::hash<std::uint64_t>{}(key.conn * 31 + key.service);
    }
  };

  std::unique_ptr<Instance> make_instance(Service& service, std::size_t index,
                                          const std::string& name, const std::string& value);
  /// The instance goes: its name's counts stay (with its namesake, if one
  /// came while it ended, or for the next to come).
  void retire(Service& service, Instance& instance);
  /// The instances of `service` wanted by `view`; removed ones listed in
  /// `gone` (to move their sessions once the live set is rebuilt).
  void update_service(Service& service, std::size_t index, const DiscoveryView& view,
                      std::vector<Instance*>& gone);
  /// A live instance of `service` for `user_id`, preferring those not
  /// `avoid` that are reachable and have no call of `conn` still ending;
  /// null when there is none.
  Instance* pick(const Service& service, std::int64_t user_id, std::uint64_t conn,
                 std::uint64_t avoid) const;
  /// The live instance of the game service named `name`; null (and a log
  /// line) when none is.
  Instance* named_instance(const std::string& name, std::uint64_t conn) const;
  /// The name the session's game-service instance must have ("": any).
  const std::string& named_of(std::uint64_t conn, std::size_t service) const;
  void bind(std::uint64_t conn, std::size_t service, Instance* instance);
  /// A rebind service's session leaves `from` (removed, or its stream
  /// failed there): it is opened elsewhere now, or waits.
  void move(std::uint64_t conn, std::size_t service, Instance& from, metrics::MoveReason reason,
            std::int64_t now_ns);
  /// Opens the stream of a waiting session on the instance picked for it
  /// now, its held messages after the open; false (it waits on) when there
  /// is none.
  bool reopen(std::uint64_t conn, std::size_t service);
  /// Opens the waiting sessions' streams that are due; gives up on those
  /// past backend-wait.
  std::size_t reopen_waiting(std::int64_t now_ns);
  /// An upstream says a session's stream ended (InstanceEvents, main
  /// thread): true when that is handled here (the session left `instance`,
  /// or its rebind service moves it), false when its worker must hear it.
  bool on_ended(Instance& instance, std::uint64_t conn, std::int32_t grpc_code);
  void set_sessions(Instance& instance, std::size_t sessions);
  /// Rebuilds each service's live set and the routing table's rows after a
  /// set changed.
  void republish();
  /// Publishes routing_ with each row's counts as they are now.
  void publish_routing();
  bool disabled(const Instance& instance) const;
  /// Logins (or a service's messages) fail while no instance takes
  /// sessions: says so.
  void warn_if_no_instance(const Service& service) const;

  Context context_;
  std::vector<Service> services_;  // [0]: the game service
  std::vector<ServicesPlan::Route> routes_;
  std::string game_instance_;                            // ServicesPlan::game_instance
  std::unordered_map<std::uint64_t, std::string> pins_;  // pin()s not routed yet, by conn
  std::unordered_map<std::uint64_t, Bound> bound_;       // by conn
  std::vector<std::uint64_t> closed_;  // sessions closed, on their instances until their calls end
  std::unordered_map<Key, Waiting, KeyHash> waiting_;  // rebind services' sessions without one
  DiscoveryView view_;                 // the last one, for the counts of the other services
  std::vector<std::string> disabled_;  // instance names out of rotation (set_disabled)
  metrics::RoutingNames routing_{};    // as last published
  // Counts of instance names that have no Instance now, by name (a
  // predecessor's rows, and instances dropped since).
  std::unordered_map<std::string, InstanceMetrics::Counts> earlier_counts_;
  bool stopping_ = false;  // close_all(): nothing starts any more
};

}  // namespace gatehouse::bridge
