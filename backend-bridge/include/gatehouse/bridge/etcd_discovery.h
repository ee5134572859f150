// EtcdDiscovery: the game-service instances that etcd lists, kept current, as
// gonet2's agent found them (its `services` package): every key under
// `etcd-root` is ROOT/SERVICE/INSTANCE = "HOST:PORT", and only the SERVICE
// names given by `services` are kept (docs/discovery.md).
//
// Two APIs, chosen by `etcd-api` (their keys are apart): the part that
// speaks each is an EtcdWire (etcd_wire.h); the rest is shared. The tree is
// read once, giving the index (v3: the store's revision; v2: X-Etcd-Index)
// every change up to which it holds; a watch from the next index then brings
// every change in order. The watch is resumed after a disconnect from the
// index after the last change seen, so no change is missed or replayed; when
// etcd no longer has that index (v3: compacted; v2: cleared from its 1000
// events of history) the tree is read again (the bridge diffs the new view
// against the one it has).
//
// Threads: read() runs on the caller's (the bridge's start, before it
// serves); the watch runs on a thread of its own with blocking calls,
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

#include "gatehouse/bridge/etcd_wire.h"
#include "gatehouse/bridge/upstream.h"
#include "gatehouse/contract/control.h"

namespace gatehouse::bridge {

/// One service's instances: instance name -> "HOST:PORT".
using ServiceInstances = std::map<std::string, std::string>;
/// What etcd lists: service name -> its instances (kept services only).
using DiscoveryView = std::map<std::string, ServiceInstances>;

struct DiscoveryOptions {
  std::vector<std::string> endpoints;  ///< HOST:PORT (parse_etcd_endpoints())
  std::string root;                    ///< "/backends"
  std::vector<std::string> services;   ///< the names kept
  EtcdApi api = EtcdApi::kV3;          ///< the API the keys are read with
};

class EtcdDiscovery final : private EtcdWire::Sink {
 public:
  /// Counts since the last take_counts(), for the metrics.
  struct Counts {
    std::uint64_t puts = 0;
    std::uint64_t deletes = 0;
    std::uint64_t resyncs = 0;
    std::uint64_t bad_replies = 0;  ///< replies from etcd that could not be used
  };

  /// `wakeup`: rung when a new view is ready; outlives this. The wire is
  /// options.api's.
  EtcdDiscovery(const DiscoveryOptions& options, Wakeup& wakeup);
  /// With the wire given (tests).
  EtcdDiscovery(DiscoveryOptions options, std::unique_ptr<EtcdWire> wire, Wakeup& wakeup);
  /// Stops the watch and joins its thread.
  ~EtcdDiscovery();
  EtcdDiscovery(const EtcdDiscovery&) = delete;
  EtcdDiscovery& operator=(const EtcdDiscovery&) = delete;

  /// Reads the tree once, trying each endpoint in turn, each within
  /// `timeout`; false when none answered. Before start().
  bool read(std::chrono::milliseconds timeout);
  /// Starts the watch thread: it watches from the index read() got, or
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
  /// Reads the tree from `endpoint`; replaces the view, sets index_. False
  /// (with `error`) when etcd did not answer.
  bool read_from(std::size_t endpoint, std::chrono::milliseconds timeout, std::string* error);
  void run();
  /// Applies one change; the number of instances it added, moved or removed.
  std::size_t apply(const EtcdChange& change);
  /// A directory `dir` is gone: the instances under it; their number.
  std::size_t remove_under(std::string_view dir);
  void publish_locked();
  bool sleep_unless_stopped(std::chrono::milliseconds pause);
  // EtcdWire::Sink, on the watch thread.
  void watching() override;
  void changes(const std::vector<EtcdChange>& batch) override;

  const DiscoveryOptions options_;
  const std::string prefix_;  // ROOT + "/"
  Wakeup& wakeup_;
  const std::unique_ptr<EtcdWire> wire_;
  std::size_t current_ = 0;  // the endpoint that answered last (watch thread)
  // The watch thread's (read() before it starts).
  DiscoveryView view_;
  bool have_tree_ = false;  // a read succeeded since the last outdated watch
  std::int64_t index_ = 0;  // every change up to it is in view_
  bool first_read_ = true;
  bool first_watch_ = true;

  mutable std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;                   // guarded by mutex_
  std::optional<DiscoveryView> published_;  // guarded by mutex_
  Counts counts_;                           // guarded by mutex_
  std::atomic<std::int64_t> stale_since_ns_;
  std::thread thread_;
};

}  // namespace gatehouse::bridge
