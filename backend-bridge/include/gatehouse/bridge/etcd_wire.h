// EtcdWire: the part of discovery that speaks one of etcd's APIs
// (docs/discovery.md). EtcdDiscovery (etcd_discovery.h) owns everything
// else: its thread, the view and what changes it, the counts, the age of
// the view, which endpoint is tried, and when to read the tree again. A wire
// only reads the tree under the root and watches it, turning what etcd says
// into EtcdChanges with the index each was made at:
//   - v3 (etcd_v3_wire.cc): gRPC, proto/etcd_rpc.proto; the index is the
//     store's revision; a watch from a compacted revision is outdated;
//   - v2 (etcd_v2_wire.cc): the v2 keys API over HTTP (Boost.Beast), the
//     JSON read by etcd_v2_json.h; the index is the v2 store's
//     (X-Etcd-Index, modifiedIndex); a watch from an index etcd has cleared
//     from its 1000 events of history (errorCode 401) is outdated.
// Threads: read() and watch() run on one thread at a time (the bridge's at
// start, then the discovery's); stop() on any.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::bridge {

/// One key as a read finds it, or one change as a watch brings it.
struct EtcdChange {
  std::string key;                   ///< the whole key, ROOT/SERVICE/INSTANCE for an instance
  std::optional<std::string> value;  ///< nullopt: deleted (or expired)
  /// v2: the node is a directory; deleted, everything under it is gone.
  bool dir = false;
  std::int64_t index = 0;  ///< the revision (v3) or index (v2) it was made at
};

/// The tree under the root: its keys, and the index every change up to
/// which it holds (a watch goes on from the next).
struct EtcdTree {
  std::vector<EtcdChange> keys;
  std::int64_t index = 0;
};

class EtcdWire {
 public:
  enum class WatchEnd {
    kStopped,   ///< stop() was called
    kBroken,    ///< etcd went away or the link broke: resume from the next index
    kOutdated,  ///< etcd no longer has the changes from that index: read the tree again
  };

  /// What a watch hands over while it runs (on the watching thread).
  class Sink {
   public:
    /// The watch is established.
    virtual void watching() = 0;
    /// Changes in the order they were made.
    virtual void changes(const std::vector<EtcdChange>& batch) = 0;

   protected:
    ~Sink() = default;
  };

  virtual ~EtcdWire() = default;

  /// "revision" (v3) or "index" (v2), for messages.
  virtual const char* index_name() const = 0;
  /// Reads every key under the root from endpoint number `endpoint` within
  /// `timeout`. False (with `error`) when it did not answer, or not usably.
  virtual bool read(std::size_t endpoint, std::chrono::milliseconds timeout, EtcdTree* tree,
                    std::string* error) = 0;
  /// Watches the tree on `endpoint` from index `from` on (every change made
  /// at `from` or later is handed to `sink`, once, in order) until it ends.
  virtual WatchEnd watch(std::size_t endpoint, std::int64_t from, Sink& sink) = 0;
  /// Any thread: ends a watch or read in progress and any later one
  /// (kStopped, false).
  virtual void stop() = 0;

  /// Replies the wire could not use (logged as they came) since the last
  /// call, for the metrics.
  std::uint64_t take_bad_replies() noexcept {
    return bad_replies_.exchange(0, std::memory_order_relaxed);
  }

 protected:
  void count_bad_reply() noexcept { bad_replies_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> bad_replies_{0};
};

/// etcd's v3 API on `endpoints` (gRPC targets HOST:PORT), the keys under
/// `prefix` (ROOT/).
std::unique_ptr<EtcdWire> make_etcd_v3_wire(const std::vector<std::string>& endpoints,
                                            const std::string& prefix);
/// etcd's v2 keys API on `endpoints` (HOST:PORT, http), the directory `root`.
std::unique_ptr<EtcdWire> make_etcd_v2_wire(const std::vector<std::string>& endpoints,
                                            const std::string& root);

}  // namespace gatehouse::bridge
