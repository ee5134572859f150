#include "gatehouse/bridge/etcd_discovery.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <utility>

#include "etcd_rpc.grpc.pb.h"
#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"

namespace gatehouse::bridge {

namespace {

/// Pause between attempts while etcd does not answer, doubling to the most.
constexpr std::chrono::milliseconds kFirstPause{200};
constexpr std::chrono::milliseconds kMostPause{2000};
/// A Range while the watch thread catches up (read() has the caller's).
constexpr std::chrono::milliseconds kReadTimeout{3000};

std::string prefix_end(std::string prefix) {
  // [prefix, end): etcd's "every key with this prefix" (the prefix ends in
  // '/', so the last byte is never 0xff).
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

std::string with_slash(std::string root) {
  if (root.empty() || root.back() != '/') root += '/';
  return root;
}

}  // namespace

/// One etcd endpoint: its channel and stubs.
class EtcdDiscovery::Endpoint {
 public:
  explicit Endpoint(const std::string& target) : target_(target) {
    grpc::ChannelArguments args;
    // Notice a dead etcd, or a link that went quiet, within seconds, and
    // reconnect quickly once it is back (gRPC's default backoff grows to
    // two minutes).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    kv_ = etcdserverpb::KV::NewStub(channel_);
    watch_ = etcdserverpb::Watch::NewStub(channel_);
  }
  const std::string& target() const { return target_; }
  etcdserverpb::KV::Stub& kv() { return *kv_; }
  etcdserverpb::Watch::Stub& watch() { return *watch_; }

 private:
  std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
};

EtcdDiscovery::EtcdDiscovery(DiscoveryOptions options, Wakeup& wakeup)
    : options_(std::move(options)),
      prefix_(with_slash(options_.root)),
      range_end_(prefix_end(prefix_)),
      wakeup_(wakeup),
      stale_since_ns_(monotonic_ns()) {
  for (const std::string& target : options_.endpoints) {
    endpoints_.push_back(std::make_unique<Endpoint>(target));
  }
}

EtcdDiscovery::~EtcdDiscovery() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (watch_context_ != nullptr) watch_context_->TryCancel();
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string EtcdDiscovery::endpoints_text() const {
  std::string out;
  for (const auto& e : endpoints_) out += (out.empty() ? "" : ",") + e->target();
  return out;
}

bool EtcdDiscovery::read(std::chrono::milliseconds timeout) {
  for (std::size_t i = 0; i < endpoints_.size(); ++i) {
    const std::size_t e = (current_ + i) % endpoints_.size();
    std::string error;
    if (read_from(*endpoints_[e], timeout, &error)) {
      current_ = e;
      return true;
    }
    spdlog::warn("etcd {}: cannot read {}: {}", endpoints_[e]->target(), prefix_, error);
  }
  return false;
}

bool EtcdDiscovery::read_from(Endpoint& endpoint, std::chrono::milliseconds timeout,
                              std::string* error) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  etcdserverpb::RangeRequest request;
  request.set_key(prefix_);
  request.set_range_end(range_end_);
  etcdserverpb::RangeResponse response;
  const grpc::Status status = endpoint.kv().Range(&context, request, &response);
  if (!status.ok()) {
    *error = status.error_message();
    return false;
  }
  DiscoveryView fresh;
  view_.swap(fresh);
  for (const auto& kv : response.kvs()) apply(kv.key(), std::string_view(kv.value()));
  revision_ = response.header().revision();
  std::size_t instances = 0;
  for (const auto& [service, list] : view_) instances += list.size();
  spdlog::info("etcd {}: {} instances of {} services under {} at revision {}", endpoint.target(),
               instances, view_.size(), prefix_, revision_);
  std::lock_guard lock(mutex_);
  if (!first_read_) ++counts_.resyncs;
  first_read_ = false;
  publish_locked();
  return true;
}

bool EtcdDiscovery::apply(std::string_view key, std::optional<std::string_view> value) {
  if (!key.starts_with(prefix_)) return false;
  key.remove_prefix(prefix_.size());
  const std::size_t slash = key.find('/');
  if (slash == std::string_view::npos || slash == 0) return false;  // not SERVICE/INSTANCE
  const std::string service(key.substr(0, slash));
  const std::string instance(key.substr(slash + 1));
  if (instance.empty() || instance.find('/') != std::string::npos) return false;
  if (std::find(options_.services.begin(), options_.services.end(), service) ==
      options_.services.end()) {
    return false;  // a service this gateway does not serve
  }
  if (!value) {
    const auto it = view_.find(service);
    if (it == view_.end() || it->second.erase(instance) == 0) return false;
    return true;
  }
  std::string address(*value);
  while (!address.empty() && (address.back() == '\n' || address.back() == ' ')) address.pop_back();
  std::string& slot = view_[service][instance];
  if (slot == address) return false;
  slot = std::move(address);
  return true;
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
  while (!endpoints_.empty()) {
    Endpoint& endpoint = *endpoints_[current_];
    std::string error;
    if (revision_ == 0 && !read_from(endpoint, kReadTimeout, &error)) {
      if (!told) spdlog::warn("etcd {}: cannot read {}: {}", endpoint.target(), prefix_, error);
      told = true;
      current_ = (current_ + 1) % endpoints_.size();
      if (!sleep_unless_stopped(pause)) return;
      pause = std::min(pause * 2, kMostPause);
      continue;
    }
    const WatchEnd end = watch(endpoint);
    if (end == WatchEnd::kStopped) return;
    std::int64_t current = 0;  // the view is stale from the first break on
    const bool was_current = stale_since_ns_.compare_exchange_strong(current, monotonic_ns());
    if (end == WatchEnd::kCompacted) {
      revision_ = 0;  // read the tree again; the bridge diffs the views
      continue;
    }
    if (was_current) {
      spdlog::warn("etcd {}: watch lost; routing with the last known instances until it is back",
                   endpoint.target());
      told = true;
      pause = kFirstPause;
    }
    current_ = (current_ + 1) % endpoints_.size();
    if (!sleep_unless_stopped(pause)) return;
    pause = std::min(pause * 2, kMostPause);
  }
}

EtcdDiscovery::WatchEnd EtcdDiscovery::watch(Endpoint& endpoint) {
  grpc::ClientContext context;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return WatchEnd::kStopped;
    watch_context_ = &context;
  }
  struct Unregister {
    EtcdDiscovery& self;
    ~Unregister() {
      std::lock_guard lock(self.mutex_);
      self.watch_context_ = nullptr;
    }
  } unregister{*this};

  auto stream = endpoint.watch().Watch(&context);
  etcdserverpb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(prefix_);
  create->set_range_end(range_end_);
  create->set_start_revision(revision_ + 1);
  if (!stream->Write(request)) {
    stream->Finish().ok();
    return stopping() ? WatchEnd::kStopped : WatchEnd::kBroken;
  }
  etcdserverpb::WatchResponse response;
  while (stream->Read(&response)) {
    if (response.created()) {
      const std::int64_t stale = stale_since_ns_.exchange(0, std::memory_order_relaxed);
      if (stale != 0 && !first_watch_) {
        spdlog::info("etcd {}: watching {} again from revision {} (the view was {:.1f} s old)",
                     endpoint.target(), prefix_, revision_ + 1,
                     static_cast<double>(monotonic_ns() - stale) / 1e9);
      }
      first_watch_ = false;
    }
    if (response.compact_revision() != 0) {
      spdlog::warn("etcd {}: revision {} was compacted (oldest {}): reading {} again",
                   endpoint.target(), revision_ + 1, response.compact_revision(), prefix_);
      context.TryCancel();
      stream->Finish().ok();
      return WatchEnd::kCompacted;
    }
    if (response.canceled()) break;
    bool changed = false;
    Counts counts;
    for (const auto& event : response.events()) {
      const bool put = event.type() == mvccpb::Event::PUT;
      const bool applied =
          apply(event.kv().key(),
                put ? std::optional<std::string_view>(event.kv().value()) : std::nullopt);
      if (applied) {
        ++(put ? counts.puts : counts.deletes);
        spdlog::info("etcd: {} {}{}", put ? "put" : "delete", event.kv().key(),
                     put ? " = " + event.kv().value() : "");
      }
      changed = changed || applied;
      revision_ = std::max(revision_, event.kv().mod_revision());
    }
    if (changed) {
      std::lock_guard lock(mutex_);
      counts_.puts += counts.puts;
      counts_.deletes += counts.deletes;
      publish_locked();
    }
  }
  const grpc::Status status = stream->Finish();
  if (stopping()) return WatchEnd::kStopped;
  spdlog::debug("etcd {}: watch ended: {}", endpoint.target(), status.error_message());
  return WatchEnd::kBroken;
}

bool EtcdDiscovery::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

std::optional<DiscoveryView> EtcdDiscovery::take_view() {
  std::lock_guard lock(mutex_);
  std::optional<DiscoveryView> out;
  out.swap(published_);
  return out;
}

EtcdDiscovery::Counts EtcdDiscovery::take_counts() {
  std::lock_guard lock(mutex_);
  return std::exchange(counts_, Counts{});
}

}  // namespace gatehouse::bridge
