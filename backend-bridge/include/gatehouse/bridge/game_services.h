// GameServices: the game-service instances the bridge serves, and which
// instance each session is on (docs/discovery.md).
//
//   a view (EtcdDiscovery's, or the backend lines) --update()--> instances by name
//   a session's first call --route(conn, user)--> rendezvous hashing of the
//       user id over the live instances of the game service; the choice is
//       kept for the session, so an instance that joins later moves no live
//       session
//   the session's later calls --of(conn)--> the same instance
//
// An instance an operator disabled (set_disabled) gets no new sessions
// either, and keeps its sessions and its upstream until it is enabled again.
// An instance removed from the view gets no new sessions; its sessions stay
// (gonet2's behaviour: sticky): they keep their streams while those work and,
// when one fails, go as on any instance (the contract's backend-wait, then
// backend_unavailable). Its Upstream goes once no session is on it and its
// calls are over. An instance whose address changes keeps its name, and so
// its users and sessions: its Upstream moves (Upstream::move_to). One whose
// contract changes (a batch: prefix comes or goes) is removed and comes
// again as a new instance of the same name.
//
// Only the game service's instances get sessions; the other services watched
// are counted. The routing table in shared memory (metrics::RoutingTable)
// shows the services, the instances, their sessions and their traffic and
// errors (InstanceMetrics). An instance's counts go on by name across its
// comings and goings and across bridge restarts (a new bridge takes them
// from the table its predecessor left), so they stay Prometheus counters
// while rows are renumbered. Main thread only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "gatehouse/bridge/call_on_queue.h"
#include "gatehouse/bridge/etcd_discovery.h"
#include "gatehouse/bridge/rendezvous.h"
#include "gatehouse/bridge/upstream.h"
#include "gatehouse/codec/frame_numbering.h"
#include "gatehouse/contract/metrics.h"

namespace gatehouse::bridge {

class GameServices {
 public:
  /// What the upstreams are made with; everything here outlives this.
  struct Context {
    CallQueue& calls;
    UpstreamEvents& events;
    Wakeup& wakeup;
    metrics::Writer& metrics;
    metrics::RoutingTable& table;
    std::atomic<std::int64_t>& in_flight;
    FrameNumbering numbering;
    std::int64_t backend_wait_ns;
    std::string gateway_id;  ///< a batched link's gateway-id is this + "/" + instance
  };
  /// `game_service`: the service of the view whose instances get sessions.
  GameServices(Context context, std::string game_service);
  /// Cancels the calls still up and waits for them to end.
  ~GameServices();
  GameServices(const GameServices&) = delete;
  GameServices& operator=(const GameServices&) = delete;

  /// The view is now `view`: instances new to it start, those gone from it
  /// are removed (their sessions stay), those that moved move. An instance's
  /// value is HOST:PORT (the gonet2 contract) or batch:HOST:PORT.
  void update(const DiscoveryView& view);

  /// The instances an operator took out of rotation (gatehousectl backend
  /// disable, by name): no new session goes to them, those on them stay.
  /// An instance of that name that joins later is out of rotation too.
  void set_disabled(std::vector<std::string> names);

  /// The session's instance: the one it is on, or for a session that has
  /// none yet the game service's live instance for `user_id`, which it is
  /// then on. Null when there is no live instance.
  Upstream* route(std::uint64_t conn, std::int64_t user_id);
  /// The instance the session is on; null if none.
  Upstream* of(std::uint64_t conn) const;
  /// The session closed: it leaves its instance once its call has ended.
  void closed(std::uint64_t conn);

  /// Once per duty-cycle pass: flushes every upstream, lets closed sessions
  /// go, and drops removed instances that have no session and no call left.
  std::size_t flush(std::int64_t now_ns);
  /// The drain: half-closes every call.
  void close_all();
  void cancel_all();
  std::size_t calls_open() const;
  std::uint64_t unacknowledged() const;
  /// Live instances of the game service.
  std::size_t live() const noexcept { return live_.size(); }
  /// Every 100 ms: asks each instance whether it is reachable
  /// (Upstream::reachable()), publishes it and the instance's counts in its
  /// routing-table row, and logs when reachability changes.
  void publish_reachability();

 private:
  struct Instance {
    Instance(std::string name_, std::string value_, metrics::Writer& bridge,
             InstanceMetrics::Counts earlier_)
        : name(std::move(name_)),
          value(std::move(value_)),
          hash(instance_hash(name)),
          metrics(bridge),
          earlier(earlier_) {}

    std::string name;
    std::string value;  // as the view gives it: the contract and the address
    std::uint64_t hash;
    InstanceMetrics metrics;          // the upstream's: outlives it
    InstanceMetrics::Counts earlier;  // its name's counts before it came
    std::unique_ptr<Upstream> upstream;
    std::size_t sessions = 0;
    bool live = true;
    bool closing = false;  // removed, without sessions: its calls half-closed
    bool retired = false;  // its calls over too: it goes
    bool up = false;       // reachable, as last published
    int row = -1;          // in the routing table, -1: none
  };

  /// A new instance, its upstream started.
  std::unique_ptr<Instance> make_instance(const std::string& name, const std::string& value);
  /// The instance goes: its name's counts stay (with its namesake, if one
  /// came while it ended, or for the next to come).
  void retire(Instance& instance);
  /// Leaves `conn`'s instance.
  void unbind(std::uint64_t conn);
  void set_sessions(Instance& instance, std::size_t sessions);
  /// Rebuilds live_ and the routing table's rows after the set changed.
  void republish();
  /// Publishes routing_ with each row's counts as they are now.
  void publish_routing();
  bool disabled(const Instance& instance) const;
  /// Logins are refused while no instance takes sessions: says so.
  void warn_if_no_instance() const;

  Context context_;
  const std::string game_service_;
  std::vector<std::unique_ptr<Instance>> instances_;    // the game service's, live and removed
  std::vector<Instance*> live_;                         // those new sessions go to, by name
  std::vector<std::uint64_t> live_hashes_;              // theirs, for rendezvous_pick
  std::unordered_map<std::uint64_t, Instance*> bound_;  // by conn: the session's instance
  std::vector<std::uint64_t> closed_;  // sessions closed, on their instance until their call ends
  DiscoveryView view_;                 // the last one, for the counts of the other services
  std::vector<std::string> disabled_;  // instance names out of rotation (set_disabled)
  metrics::RoutingNames routing_{};    // as last published
  // Counts of instance names that have no Instance now, by name (a
  // predecessor's rows, and instances dropped since).
  std::unordered_map<std::string, InstanceMetrics::Counts> earlier_counts_;
  bool stopping_ = false;  // close_all(): nothing starts any more
};

}  // namespace gatehouse::bridge
