// EtcdDiscovery: the game-service instances that etcd lists, kept current, as
// gonet2's agent found them (its `services` package): every key under
// `etcd-root` is ROOT/SERVICE/INSTANCE = "HOST:PORT", and only the SERVICE
// names given by `services` are kept (docs/discovery.md).
//
// etcd's v3 API over gRPC (proto/etcd_rpc.proto): one KV.Range of the prefix
// gives the tree and the store's revision R; a Watch of the prefix from R + 1
// then brings every change in order. The watch is resumed after a disconnect
// from the revision after the last event seen, so no event is missed or
// replayed; when etcd has compacted that revision away the tree is read
// again (the bridge diffs the new view against the one it has).
//
// Threads: read() runs on the caller's (the bridge's start, before it
// serves); the watch runs on a thread of its own with blocking gRPC calls,
// so an etcd that is slow or gone never delays the game calls (their
// completion-queue thread) or the duty cycle. It hands the main thread whole
// views (take_view()), waking it through the bridge's Wakeup.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gatehouse/bridge/upstream.h"

namespace grpc {
class ClientContext;
}

namespace gatehouse::bridge {

/// One service's instances: instance name -> "HOST:PORT".
using ServiceInstances = std::map<std::string, std::string>;
/// What etcd lists: service name -> its instances (kept services only).
using DiscoveryView = std::map<std::string, ServiceInstances>;

struct DiscoveryOptions {
  std::vector<std::string> endpoints;  ///< gRPC targets, HOST:PORT
  std::string root;                    ///< "/backends"
  std::vector<std::string> services;   ///< the names kept
};

class EtcdDiscovery {
 public:
  /// Counts since the last take_counts(), for the metrics.
  struct Counts {
    std::uint64_t puts = 0;
    std::uint64_t deletes = 0;
    std::uint64_t resyncs = 0;
  };

  /// `wakeup`: rung when a new view is ready; outlives this.
  EtcdDiscovery(DiscoveryOptions options, Wakeup& wakeup);
  /// Stops the watch and joins its thread.
  ~EtcdDiscovery();
  EtcdDiscovery(const EtcdDiscovery&) = delete;
  EtcdDiscovery& operator=(const EtcdDiscovery&) = delete;

  /// Reads the tree once, trying each endpoint in turn, each within
  /// `timeout`; false when none answered. Before start().
  bool read(std::chrono::milliseconds timeout);
  /// Starts the watch thread: it watches from the revision read() got, or
  /// reads first (etcd was unreachable), and goes on until destruction.
  void start();

  /// Main thread: the whole view, when it changed since the last call.
  std::optional<DiscoveryView> take_view();
  Counts take_counts();
  /// CLOCK_MONOTONIC ns since when the view may be out of date (the watch
  /// is down, or etcd never answered); 0 while the watch is up.
  std::int64_t stale_since_ns() const noexcept {
    return stale_since_ns_.load(std::memory_order_relaxed);
  }
  /// What etcd-hosts names, for messages.
  std::string endpoints_text() const;

 private:
  class Endpoint;
  enum class WatchEnd { kStopped, kBroken, kCompacted };
  /// KV.Range of the prefix on `endpoint`; replaces the view, sets
  /// revision_. False (with `error`) when etcd did not answer.
  bool read_from(Endpoint& endpoint, std::chrono::milliseconds timeout, std::string* error);
  WatchEnd watch(Endpoint& endpoint);
  void run();
  /// Applies one key's change; true when the view changed.
  bool apply(std::string_view key, std::optional<std::string_view> value);
  void publish_locked();
  bool sleep_unless_stopped(std::chrono::milliseconds pause);
  bool stopping();

  const DiscoveryOptions options_;
  const std::string prefix_;     // ROOT + "/"
  const std::string range_end_;  // the prefix with its last byte + 1
  Wakeup& wakeup_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::size_t current_ = 0;  // the endpoint that answered last (watch thread)
  // The watch thread's (read() before it starts).
  DiscoveryView view_;
  std::int64_t revision_ = 0;  // every event up to it is in view_; 0: not read
  bool first_read_ = true;
  bool first_watch_ = true;

  mutable std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;                         // guarded by mutex_
  grpc::ClientContext* watch_context_ = nullptr;  // guarded by mutex_: cancelled to stop
  std::optional<DiscoveryView> published_;        // guarded by mutex_
  Counts counts_;                                 // guarded by mutex_
  std::atomic<std::int64_t> stale_since_ns_;
  std::thread thread_;
};

}  // namespace gatehouse::bridge
