// The v3 wire (etcd_wire.h): etcd's v3 API over gRPC, from the subset of its
// published API in proto/etcd_rpc.proto. One KV.Range of the prefix gives
// the tree and the store's revision; a Watch of the prefix from a revision
// brings every change from it, or says that revision was compacted.
#include <grpcpp/grpcpp.h>

#include <mutex>

#include "etcd_rpc.grpc.pb.h"
#include "gatehouse/base/log.h"
#include "gatehouse/bridge/etcd_channel.h"
#include "gatehouse/bridge/etcd_wire.h"

namespace gatehouse::bridge {

namespace {

std::string prefix_end(std::string prefix) {
  // [prefix, end): etcd's "every key with this prefix" (the prefix ends in
  // '/', so the last byte is never 0xff).
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

/// One etcd endpoint: its channel and stubs.
class Endpoint {
 public:
  explicit Endpoint(const std::string& target) : target_(target) {
    channel_ = etcd_channel(target);
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

class EtcdV3Wire final : public EtcdWire {
 public:
  EtcdV3Wire(const std::vector<std::string>& endpoints, const std::string& prefix)
      : prefix_(prefix), range_end_(prefix_end(prefix_)) {
    for (const std::string& target : endpoints) {
      endpoints_.push_back(std::make_unique<Endpoint>(target));
    }
  }

  const char* index_name() const override { return "revision"; }

  bool read(std::size_t e, std::chrono::milliseconds timeout, EtcdTree* tree,
            std::string* error) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    etcdserverpb::RangeRequest request;
    request.set_key(prefix_);
    request.set_range_end(range_end_);
    etcdserverpb::RangeResponse response;
    const grpc::Status status = endpoints_[e]->kv().Range(&context, request, &response);
    if (!status.ok()) {
      *error = status.error_message();
      return false;
    }
    tree->keys.clear();
    for (const auto& kv : response.kvs()) {
      tree->keys.push_back({kv.key(), kv.value(), false, kv.mod_revision()});
    }
    tree->index = response.header().revision();
    return true;
  }

  WatchEnd watch(std::size_t e, std::int64_t from, Sink& sink) override {
    Endpoint& endpoint = *endpoints_[e];
    grpc::ClientContext context;
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return WatchEnd::kStopped;
      watch_context_ = &context;
    }
    struct Unregister {
      EtcdV3Wire& self;
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
    create->set_start_revision(from);
    if (!stream->Write(request)) {
      stream->Finish().ok();
      return stopped() ? WatchEnd::kStopped : WatchEnd::kBroken;
    }
    etcdserverpb::WatchResponse response;
    std::vector<EtcdChange> batch;
    while (stream->Read(&response)) {
      if (response.created()) sink.watching();
      if (response.compact_revision() != 0) {
        spdlog::warn("etcd {}: revision {} was compacted (oldest {}): reading {} again",
                     endpoint.target(), from, response.compact_revision(), prefix_);
        context.TryCancel();
        stream->Finish().ok();
        return WatchEnd::kOutdated;
      }
      if (response.canceled()) break;
      batch.clear();
      for (const auto& event : response.events()) {
        const bool put = event.type() == mvccpb::Event::PUT;
        batch.push_back({event.kv().key(),
                         put ? std::optional<std::string>(event.kv().value()) : std::nullopt, false,
                         event.kv().mod_revision()});
      }
      if (!batch.empty()) sink.changes(batch);
    }
    const grpc::Status status = stream->Finish();
    if (stopped()) return WatchEnd::kStopped;
    spdlog::debug("etcd {}: watch ended: {}", endpoint.target(), status.error_message());
    return WatchEnd::kBroken;
  }

  void stop() override {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    if (watch_context_ != nullptr) watch_context_->TryCancel();
  }

 private:
  bool stopped() {
    std::lock_guard lock(mutex_);
    return stopped_;
  }

  const std::string prefix_;
  const std::string range_end_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::mutex mutex_;
  bool stopped_ = false;                          // guarded by mutex_
  grpc::ClientContext* watch_context_ = nullptr;  // guarded by mutex_: cancelled to stop
};

}  // namespace

std::unique_ptr<EtcdWire> make_etcd_v3_wire(const std::vector<std::string>& endpoints,
                                            const std::string& prefix) {
  return std::make_unique<EtcdV3Wire>(endpoints, prefix);
}

}  // namespace gatehouse::bridge
