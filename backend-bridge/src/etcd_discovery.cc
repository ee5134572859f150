#include "gatehouse/bridge/etcd_discovery.h"

#include <algorithm>
#include <utility>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"

namespace gatehouse::bridge {

namespace {

/// Pause between attempts while etcd does not answer, doubling to the most.
constexpr std::chrono::milliseconds kFirstPause{200};
constexpr std::chrono::milliseconds kMostPause{2000};
/// A read while the watch thread catches up (read() has the caller's).
constexpr std::chrono::milliseconds kReadTimeout{3000};

std::string with_slash(std::string root) {
  if (root.empty() || root.back() != '/') root += '/';
  return root;
}

std::unique_ptr<EtcdWire> wire_of(const DiscoveryOptions& options) {
  if (options.api == EtcdApi::kV2) return make_etcd_v2_wire(options.endpoints, options.root);
  return make_etcd_v3_wire(options.endpoints, with_slash(options.root));
}

}  // namespace

EtcdDiscovery::EtcdDiscovery(const DiscoveryOptions& options, Wakeup& wakeup)
    : EtcdDiscovery(options, wire_of(options), wakeup) {}

EtcdDiscovery::EtcdDiscovery(DiscoveryOptions options, std::unique_ptr<EtcdWire> wire,
                             Wakeup& wakeup)
    : options_(std::move(options)),
      prefix_(with_slash(options_.root)),
      wakeup_(wakeup),
      wire_(std::move(wire)),
      stale_since_ns_(monotonic_ns()) {}

EtcdDiscovery::~EtcdDiscovery() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wire_->stop();
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string EtcdDiscovery::endpoints_text() const {
  std::string out;
  for (const std::string& e : options_.endpoints) out += (out.empty() ? "" : ",") + e;
  return out;
}

bool EtcdDiscovery::read(std::chrono::milliseconds timeout) {
  const std::size_t n = options_.endpoints.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t e = (current_ + i) % n;
    std::string error;
    if (read_from(e, timeout, &error)) {
      current_ = e;
      return true;
    }
    spdlog::warn("etcd {}: cannot read {}: {}", options_.endpoints[e], prefix_, error);
  }
  return false;
}

bool EtcdDiscovery::read_from(std::size_t endpoint, std::chrono::milliseconds timeout,
                              std::string* error) {
  EtcdTree tree;
  if (!wire_->read(endpoint, timeout, &tree, error)) return false;
  DiscoveryView fresh;
  view_.swap(fresh);
  for (const EtcdChange& key : tree.keys) apply(key);
  index_ = tree.index;
  have_tree_ = true;
  std::size_t instances = 0;
  for (const auto& [service, list] : view_) instances += list.size();
  spdlog::info("etcd {}: {} instances of {} services under {} at {} {}",
               options_.endpoints[endpoint], instances, view_.size(), prefix_, wire_->index_name(),
               index_);
  std::lock_guard lock(mutex_);
  if (!first_read_) ++counts_.resyncs;
  first_read_ = false;
  publish_locked();
  return true;
}

std::size_t EtcdDiscovery::apply(const EtcdChange& change) {
  if (change.dir) {
    // A directory made or changed holds no instance itself; one deleted
    // (v2) takes every key under it.
    return change.value ? 0 : remove_under(change.key);
  }
  std::string_view key = change.key;
  if (!key.starts_with(prefix_)) return 0;
  key.remove_prefix(prefix_.size());
  const std::size_t slash = key.find('/');
  if (slash == std::string_view::npos || slash == 0) return 0;  // not SERVICE/INSTANCE
  const std::string service(key.substr(0, slash));
  const std::string instance(key.substr(slash + 1));
  if (instance.empty() || instance.find('/') != std::string::npos) return 0;
  if (std::find(options_.services.begin(), options_.services.end(), service) ==
      options_.services.end()) {
    return 0;  // a service this gateway does not serve
  }
  if (!change.value) {
    const auto it = view_.find(service);
    if (it == view_.end() || it->second.erase(instance) == 0) return 0;
    return 1;
  }
  std::string address(*change.value);
  while (!address.empty() && (address.back() == '\n' || address.back() == ' ')) address.pop_back();
  std::string& slot = view_[service][instance];
  if (slot == address) return 0;
  slot = std::move(address);
  return 1;
}

std::size_t EtcdDiscovery::remove_under(std::string_view dir) {
  std::string under(dir);
  if (under.empty() || under.back() != '/') under += '/';
  // A service whose instances are all gone stays in the view, empty, as when
  // they go one by one.
  std::size_t removed = 0;
  if (prefix_.starts_with(under)) {  // the root, or a directory above it
    for (auto& [service, list] : view_) {
      removed += list.size();
      list.clear();
    }
    return removed;
  }
  if (!under.starts_with(prefix_)) return 0;
  const std::string_view service =
      std::string_view(under).substr(prefix_.size(), under.size() - prefix_.size() - 1);
  if (service.find('/') != std::string_view::npos) return 0;  // deeper: no instance is a directory
  const auto it = view_.find(std::string(service));
  if (it == view_.end()) return 0;
  removed = it->second.size();
  it->second.clear();
  return removed;
}

void EtcdDiscovery::publish_locked() {
  published_ = view_;
  wakeup_.notify();
}

void EtcdDiscovery::start() {
  thread_ = std::thread([this] { run(); });
}

bool EtcdDiscovery::sleep_unless_stopped(std::chrono::milliseconds pause) {
  std::unique_lock lock(mutex_);
  return !stop_cv_.wait_for(lock, pause, [this] { return stopping_; });
}

void EtcdDiscovery::run() {
  std::chrono::milliseconds pause = kFirstPause;
  bool told = false;  // this outage was logged
  const std::size_t n = options_.endpoints.size();
  while (n != 0) {
    const std::string& endpoint = options_.endpoints[current_];
    std::string error;
    if (!have_tree_ && !read_from(current_, kReadTimeout, &error)) {
      if (!told) spdlog::warn("etcd {}: cannot read {}: {}", endpoint, prefix_, error);
      told = true;
      current_ = (current_ + 1) % n;
      if (!sleep_unless_stopped(pause)) return;
      pause = std::min(pause * 2, kMostPause);
      continue;
    }
    const std::int64_t began_ns = monotonic_ns();
    const EtcdWire::WatchEnd end = wire_->watch(current_, index_ + 1, *this);
    if (end == EtcdWire::WatchEnd::kStopped) return;
    // A watch that lived a while was a working link: the next outage starts
    // from the first pause. One that ended at once (a server or proxy that
    // answers and hangs up) keeps the pause doubling, so it is not hammered.
    const bool lived = monotonic_ns() - began_ns >= std::chrono::nanoseconds(kMostPause).count();
    std::int64_t current = 0;  // the view is stale from the first break on
    const bool was_current = stale_since_ns_.compare_exchange_strong(current, monotonic_ns());
    if (end == EtcdWire::WatchEnd::kOutdated) {
      have_tree_ = false;  // read the tree again; the bridge diffs the views
      continue;
    }
    if (was_current) {
      spdlog::warn("etcd {}: watch lost; routing with the last known instances until it is back",
                   endpoint);
      told = true;
    }
    if (lived) pause = kFirstPause;
    current_ = (current_ + 1) % n;
    if (!sleep_unless_stopped(pause)) return;
    pause = std::min(pause * 2, kMostPause);
  }
}

void EtcdDiscovery::watching() {
  const std::int64_t stale = stale_since_ns_.exchange(0, std::memory_order_relaxed);
  if (stale != 0 && !first_watch_) {
    spdlog::info("etcd {}: watching {} again from {} {} (the view was {:.1f} s old)",
                 options_.endpoints[current_], prefix_, wire_->index_name(), index_ + 1,
                 static_cast<double>(monotonic_ns() - stale) / 1e9);
  }
  first_watch_ = false;
}

void EtcdDiscovery::changes(const std::vector<EtcdChange>& batch) {
  Counts counts;
  for (const EtcdChange& change : batch) {
    const std::size_t applied = apply(change);
    if (applied != 0) {
      const bool put = change.value.has_value();
      (put ? counts.puts : counts.deletes) += applied;
      if (change.dir) {
        spdlog::info("etcd: delete {} (a directory: {} instances)", change.key, applied);
      } else {
        spdlog::info("etcd: {} {}{}", put ? "put" : "delete", change.key,
                     put ? " = " + *change.value : "");
      }
    }
    index_ = std::max(index_, change.index);
  }
  if (counts.puts + counts.deletes != 0) {
    std::lock_guard lock(mutex_);
    counts_.puts += counts.puts;
    counts_.deletes += counts.deletes;
    publish_locked();
  }
}

std::optional<DiscoveryView> EtcdDiscovery::take_view() {
  std::lock_guard lock(mutex_);
  std::optional<DiscoveryView> out;
  out.swap(published_);
  return out;
}

EtcdDiscovery::Counts EtcdDiscovery::take_counts() {
  std::lock_guard lock(mutex_);
  Counts out = std::exchange(counts_, Counts{});
  out.bad_replies = wire_->take_bad_replies();
  return out;
}

}  // namespace gatehouse::bridge
