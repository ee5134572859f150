// EtcdRegistration: the gateway's own key in etcd (register-prefix; docs/
// discovery.md "The gateway in etcd"), so that load balancers and tools find
// gateways and can pick the least loaded: PREFIX/GATEWAY-ID = a JSON object
// saying what clients dial, each listener with its transports and crypto,
// the version and the load (registration_value()).
//
// Lifecycle, over etcd's v3 API (proto/etcd_rpc.proto):
//   - a lease of register-ttl is granted and the key put with it;
//   - the lease is kept alive every third of its TTL (a LeaseKeepAlive
//     stream per keepalive, each under a deadline), and the key is put again
//     on the same lease when the load it shows has changed (looked at every
//     2 s);
//   - a lease etcd no longer knows (a keepalive answered with TTL 0, a put
//     refused NOT_FOUND: the lease expired while etcd was out of reach, or
//     etcd restarted without its data) is granted and the key put again;
//   - etcd out of reach: logged once (and once when it is back), each failed
//     call counted (gatehouse_registration_failures_total), the next
//     endpoint tried after a pause of 200 ms doubling to 2 s;
//   - when the drain starts (ControlBlock::draining, looked at every 100 ms)
//     the lease is revoked at once, which deletes the key, so load balancers
//     stop sending players; a draining gateway never registers again (nor
//     does a bridge that replaces a dead one during the drain). A stop
//     without a drain revokes it too. A gateway that dies leaves its key
//     until the lease expires.
//
// Threads: a thread of its own with blocking calls, so that etcd never
// delays the bridge's duty cycle. It reads the segment (settings, load,
// drain) and writes only its own cells of the bridge's metrics shard
// (kRegistrationUp, kRegistrationFailures).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/metrics.h"

namespace grpc {
class ClientContext;
class Status;
}  // namespace grpc

namespace gatehouse::bridge {

/// What the gateway's key says.
struct RegistrationFacts {
  struct Listener {
    std::string address;      ///< as bound, HOST:PORT
    std::uint8_t transports;  ///< Transports bits
    std::uint8_t crypto;      ///< CryptoModes bits
  };
  std::string id;       ///< the gateway id (as game services see it)
  std::string address;  ///< what clients dial (advertised_address())
  std::string version;
  std::vector<Listener> listeners;
  std::int64_t sessions = 0;  ///< logged in
  std::int64_t connections = 0;
  std::uint32_t max_connections = 0;
  bool draining = false;
};

/// The key's value: a JSON object (schema in docs/discovery.md).
std::string registration_value(const RegistrationFacts& facts);
/// PREFIX/ID, a trailing '/' of the prefix dropped.
std::string registration_key(std::string_view prefix, std::string_view id);
/// The facts `settings` give (the load not filled in). Throws
/// std::invalid_argument when register-address cannot be made.
RegistrationFacts registration_facts(const Settings& settings, std::string id);

class EtcdRegistration {
 public:
  /// Registers the gateway `gateway_id` as `segment`'s settings say
  /// (register-prefix set), on a thread started here. Throws
  /// std::invalid_argument on settings it cannot use.
  EtcdRegistration(GatewaySegment& segment, std::string gateway_id);
  /// Stops the thread; the key is removed (the lease revoked) unless the
  /// drain did it already.
  ~EtcdRegistration();
  EtcdRegistration(const EtcdRegistration&) = delete;
  EtcdRegistration& operator=(const EtcdRegistration&) = delete;

 private:
  class Endpoint;
  /// What one pass did: all that was due; a call failed (`error` says why,
  /// or the stop cancelled it); the lease was gone (grant another at once).
  enum class Pass { kDone, kFailed, kLeaseGone };

  void run();
  /// Grants a lease if there is none, puts the key when it is not in etcd
  /// or its load changed, keeps the lease alive when that is due.
  Pass pass(std::string* error);
  /// Revokes the lease (deleting the key); true when etcd took it, or had
  /// forgotten the lease. `last`: the stop's, which a stop does not cancel.
  bool revoke(std::chrono::milliseconds timeout, bool last, std::string* error);
  /// The drain began: the key goes at once, retried until etcd takes it
  /// or the lease expires; then nothing until the stop.
  void withdraw();
  /// The facts with the load and the drain flag as the segment says now.
  std::string current_value();
  void failed(const std::string& error);
  void set_up(bool up);
  /// A deadline for one call, registered so that the stop cancels it;
  /// false when stopping.
  bool begin_call(grpc::ClientContext& context, std::chrono::milliseconds timeout);
  void end_call();
  bool sleep_unless_stopped(std::chrono::milliseconds pause);
  bool stopping();

  GatewaySegment& segment_;
  metrics::Writer metrics_;  // this thread's cells of the bridge's shard only
  std::string key_;
  std::int64_t ttl_s_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::size_t current_ = 0;
  // The thread's.
  RegistrationFacts facts_;
  std::uint64_t settings_generation_;
  std::int64_t lease_ = 0;  // 0: none granted (or it is gone)
  std::int64_t granted_ttl_s_ = 0;
  std::string put_value_;  // what etcd holds under the lease; "": the key is not put
  std::chrono::steady_clock::time_point next_keepalive_;
  std::chrono::steady_clock::time_point next_look_;     // at the load
  std::chrono::steady_clock::time_point down_since_{};  // the first failure of an outage
  bool down_ = false;
  std::int64_t announced_lease_ = 0;  // the last lease logged as registered

  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;                // guarded by mutex_
  grpc::ClientContext* call_ = nullptr;  // guarded by mutex_: cancelled to stop
  std::thread thread_;
};

}  // namespace gatehouse::bridge
