#include "gatehouse/bridge/etcd_registration.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <boost/json.hpp>
#include <stdexcept>
#include <utility>

#include "etcd_rpc.grpc.pb.h"
#include "gatehouse/base/log.h"
#include "gatehouse/base/version.h"
#include "gatehouse/bridge/etcd_channel.h"
#include "gatehouse/net/endpoint.h"

namespace gatehouse::bridge {

namespace {

/// Pause between attempts while etcd does not answer, doubling to the most.
constexpr std::chrono::milliseconds kFirstPause{200};
constexpr std::chrono::milliseconds kMostPause{2000};
/// How often the thread looks at the drain flag: the key goes this soon
/// after a drain starts.
constexpr std::chrono::milliseconds kLook{100};
/// How often it looks at the load (the key is put again when it changed).
constexpr std::chrono::milliseconds kLoadLook{2000};
/// One call's deadline; the last revoke's at a stop.
constexpr std::chrono::milliseconds kCallTimeout{2000};
constexpr std::chrono::milliseconds kStopTimeout{1000};

std::string hex(std::int64_t lease) {
  return fmt::format("{:x}", static_cast<std::uint64_t>(lease));
}

}  // namespace

std::string registration_value(const RegistrationFacts& facts) {
  boost::json::array listeners;
  for (const RegistrationFacts::Listener& l : facts.listeners) {
    boost::json::array transports;
    for (const auto& [bit, name] : kTransportNames) {
      if ((l.transports & bit) != 0) transports.emplace_back(std::string(name));
    }
    boost::json::array crypto;
    for (const std::string_view name : crypto_mode_names(l.crypto)) {
      crypto.emplace_back(std::string(name));
    }
    listeners.push_back(boost::json::object{{"address", l.address},
                                            {"transports", std::move(transports)},
                                            {"crypto", std::move(crypto)}});
  }
  const boost::json::object value{
      {"id", facts.id},
      {"address", facts.address},
      {"version", facts.version},
      {"listeners", std::move(listeners)},
      {"load", boost::json::object{{"sessions", facts.sessions},
                                   {"connections", facts.connections},
                                   {"max_connections", facts.max_connections},
                                   {"draining", facts.draining}}}};
  return boost::json::serialize(value);
}

std::string registration_key(std::string_view prefix, std::string_view id) {
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  return std::string(prefix) + "/" + std::string(id);
}

RegistrationFacts registration_facts(const Settings& settings, std::string id) {
  RegistrationFacts facts;
  facts.id = std::move(id);
  facts.version = std::string(version());
  for (std::uint32_t i = 0; i < std::min(settings.listener_count, kMaxListeners); ++i) {
    facts.listeners.push_back({settings.listener_addresses[i], settings.listener_transports[i],
                               settings.listener_crypto[i]});
  }
  if (facts.listeners.empty()) throw std::invalid_argument("register-prefix: no listener");
  try {
    facts.address = advertised_address(settings.register_address, facts.listeners[0].address);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("register-address: ") + e.what());
  }
  facts.max_connections = settings.max_connections;
  return facts;
}

/// One etcd endpoint: its channel and stubs.
class EtcdRegistration::Endpoint {
 public:
  explicit Endpoint(const std::string& target) : target_(target) {
    const auto channel = etcd_channel(target);
    kv_ = etcdserverpb::KV::NewStub(channel);
    lease_ = etcdserverpb::Lease::NewStub(channel);
  }
  const std::string& target() const { return target_; }
  etcdserverpb::KV::Stub& kv() { return *kv_; }
  etcdserverpb::Lease::Stub& lease() { return *lease_; }

 private:
  std::string target_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
};

EtcdRegistration::EtcdRegistration(GatewaySegment& segment, std::string gateway_id)
    : segment_(segment),
      metrics_(segment.metrics().bridges[0]),  // only the first bridge registers
      settings_generation_(segment.settings_generation()) {
  const Settings settings = segment.settings();
  key_ = registration_key(settings.register_prefix, gateway_id);
  ttl_s_ = settings.register_ttl_s;
  facts_ = registration_facts(settings, std::move(gateway_id));
  std::string error;
  for (const std::string& target : parse_etcd_endpoints(settings.etcd_hosts, &error)) {
    endpoints_.push_back(std::make_unique<Endpoint>(target));
  }
  if (endpoints_.empty()) throw std::invalid_argument(error);
  set_up(false);
  thread_ = std::thread([this] { run(); });
}

EtcdRegistration::~EtcdRegistration() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (call_ != nullptr) call_->TryCancel();
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool EtcdRegistration::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

bool EtcdRegistration::sleep_unless_stopped(std::chrono::milliseconds pause) {
  std::unique_lock lock(mutex_);
  return !stop_cv_.wait_for(lock, pause, [this] { return stopping_; });
}

bool EtcdRegistration::begin_call(grpc::ClientContext& context, std::chrono::milliseconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  std::lock_guard lock(mutex_);
  if (stopping_) return false;
  call_ = &context;
  return true;
}

void EtcdRegistration::end_call() {
  std::lock_guard lock(mutex_);
  call_ = nullptr;
}

void EtcdRegistration::set_up(bool up) {
  metrics_.set(metrics::kRegistrationUp, up ? 1 : 0);
}

std::string EtcdRegistration::current_value() {
  if (const std::uint64_t g = segment_.settings_generation(); g != settings_generation_) {
    settings_generation_ = g;  // a reload may change the listeners' crypto
    const Settings settings = segment_.settings();
    for (std::size_t i = 0; i < facts_.listeners.size(); ++i) {
      facts_.listeners[i].crypto = settings.listener_crypto[i];
    }
  }
  const MetricsBlock& m = segment_.metrics();
  facts_.sessions = 0;
  for (std::size_t w = 0; w < kMaxWorkers; ++w) {
    facts_.sessions +=
        m.workers[w].gauges[metrics::kSessionsLoggedIn].load(std::memory_order_relaxed);
  }
  facts_.connections = m.frontends_gauge(metrics::kConnectionsOpen);
  facts_.draining = segment_.draining();
  return registration_value(facts_);
}

void EtcdRegistration::run() {
  std::chrono::milliseconds pause = kFirstPause;
  while (!stopping()) {
    if (segment_.draining()) {
      withdraw();
      return;
    }
    std::string error;
    const Pass result = pass(&error);
    if (result == Pass::kFailed) {
      if (stopping()) break;
      failed(error);
      current_ = (current_ + 1) % endpoints_.size();
      if (!sleep_unless_stopped(pause)) break;
      pause = std::min(pause * 2, kMostPause);
      continue;
    }
    if (result == Pass::kDone) pause = kFirstPause;
    if (!sleep_unless_stopped(kLook)) break;  // kLeaseGone: granted again after it
  }
  // A stop without a drain (the drain revoked it already).
  if (lease_ != 0) {
    std::string error;
    if (revoke(kStopTimeout, /*last=*/true, &error)) {
      spdlog::info("stopping: {} removed from etcd", key_);
    } else {
      spdlog::warn("stopping: cannot remove {} from etcd ({}); it goes when its lease expires",
                   key_, error);
    }
  }
  set_up(false);
}

EtcdRegistration::Pass EtcdRegistration::pass(std::string* error) {
  Endpoint& endpoint = *endpoints_[current_];
  const auto now = std::chrono::steady_clock::now();
  if (lease_ == 0) {
    grpc::ClientContext context;
    if (!begin_call(context, kCallTimeout)) return Pass::kFailed;
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(ttl_s_);
    etcdserverpb::LeaseGrantResponse response;
    const grpc::Status status = endpoint.lease().LeaseGrant(&context, request, &response);
    end_call();
    if (!status.ok() || !response.error().empty()) {
      *error = "lease grant: " + (status.ok() ? response.error() : status.error_message());
      return Pass::kFailed;
    }
    lease_ = response.id();
    granted_ttl_s_ = std::max<std::int64_t>(1, response.ttl());
    put_value_.clear();
    next_keepalive_ = now + std::chrono::milliseconds(granted_ttl_s_ * 1000 / 3);
  }
  if (put_value_.empty() || now >= next_look_) {
    next_look_ = now + kLoadLook;
    std::string value = current_value();
    if (value != put_value_) {
      grpc::ClientContext context;
      if (!begin_call(context, kCallTimeout)) return Pass::kFailed;
      etcdserverpb::PutRequest request;
      request.set_key(key_);
      request.set_value(value);
      request.set_lease(lease_);
      etcdserverpb::PutResponse response;
      const grpc::Status status = endpoint.kv().Put(&context, request, &response);
      end_call();
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
        // "requested lease not found": etcd forgot it, or it expired.
        spdlog::warn("etcd {}: lease {} of {} is gone ({}): registering again", endpoint.target(),
                     hex(lease_), key_, status.error_message());
        lease_ = 0;
        put_value_.clear();
        set_up(false);
        metrics_.add(metrics::kRegistrationFailures);
        return Pass::kLeaseGone;
      }
      if (!status.ok()) {
        *error = "put: " + status.error_message();
        put_value_.clear();  // put it again once etcd answers
        return Pass::kFailed;
      }
      if (lease_ != announced_lease_) {
        if (announced_lease_ == 0) {
          spdlog::info("etcd {}: registered {} = {} (lease {}, ttl {} s)", endpoint.target(), key_,
                       value, hex(lease_), granted_ttl_s_);
        } else {
          spdlog::info("etcd {}: registered {} again (lease {})", endpoint.target(), key_,
                       hex(lease_));
        }
        announced_lease_ = lease_;
      }
      put_value_ = std::move(value);
    }
  }
  if (now >= next_keepalive_) {
    grpc::ClientContext context;
    if (!begin_call(context, kCallTimeout)) return Pass::kFailed;
    auto stream = endpoint.lease().LeaseKeepAlive(&context);
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(lease_);
    etcdserverpb::LeaseKeepAliveResponse response;
    const bool answered = stream->Write(request) && stream->WritesDone() && stream->Read(&response);
    if (answered) context.TryCancel();  // the answer is all we wanted
    const grpc::Status status = stream->Finish();
    end_call();
    if (!answered) {
      *error = "lease keepalive: " + status.error_message();
      return Pass::kFailed;
    }
    if (response.ttl() <= 0) {
      spdlog::warn(
          "etcd {}: lease {} of {} is gone (it expired while etcd was out of reach, or etcd lost "
          "its data): registering again",
          endpoint.target(), hex(lease_), key_);
      lease_ = 0;
      put_value_.clear();
      set_up(false);
      metrics_.add(metrics::kRegistrationFailures);
      return Pass::kLeaseGone;
    }
    next_keepalive_ = now + std::chrono::milliseconds(granted_ttl_s_ * 1000 / 3);
  }
  if (down_) {
    down_ = false;
    spdlog::info(
        "etcd {}: answering again after {:.1f} s; {} is registered", endpoint.target(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - down_since_).count(),
        key_);
  }
  set_up(true);
  return Pass::kDone;
}

void EtcdRegistration::failed(const std::string& error) {
  metrics_.add(metrics::kRegistrationFailures);
  set_up(false);
  if (down_) return;  // logged at the first failure of this outage
  down_ = true;
  down_since_ = std::chrono::steady_clock::now();
  spdlog::warn(
      "etcd {}: cannot register {}: {}; retrying until etcd answers (the key goes when its lease "
      "expires, {} s after the last keepalive)",
      endpoints_[current_]->target(), key_, error, ttl_s_);
}

bool EtcdRegistration::revoke(std::chrono::milliseconds timeout, bool last, std::string* error) {
  grpc::ClientContext context;
  if (last) {
    context.set_deadline(std::chrono::system_clock::now() + timeout);
  } else if (!begin_call(context, timeout)) {
    *error = "stopping";
    return false;
  }
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease_);
  etcdserverpb::LeaseRevokeResponse response;
  const grpc::Status status =
      endpoints_[current_]->lease().LeaseRevoke(&context, request, &response);
  if (!last) end_call();
  // NOT_FOUND: the lease has expired already, and the key with it.
  if (status.ok() || status.error_code() == grpc::StatusCode::NOT_FOUND) {
    lease_ = 0;
    put_value_.clear();
    set_up(false);
    return true;
  }
  *error = status.error_message();
  return false;
}

void EtcdRegistration::withdraw() {
  std::chrono::milliseconds pause = kFirstPause;
  bool told = false;
  // Past the lease's TTL it has expired, and the key with it.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(ttl_s_);
  while (lease_ != 0 && std::chrono::steady_clock::now() < give_up) {
    const std::int64_t lease = lease_;
    std::string error;
    if (revoke(kCallTimeout, /*last=*/false, &error)) {
      spdlog::info("draining: {} removed from etcd (lease {} revoked)", key_, hex(lease));
      break;
    }
    if (stopping()) break;
    metrics_.add(metrics::kRegistrationFailures);
    if (!told) {
      spdlog::warn(
          "draining: cannot remove {} from etcd ({}); retrying until its lease expires ({} s)",
          key_, error, ttl_s_);
      told = true;
    }
    current_ = (current_ + 1) % endpoints_.size();
    if (!sleep_unless_stopped(pause)) break;
    pause = std::min(pause * 2, kMostPause);
  }
  set_up(false);
  lease_ = 0;  // never kept alive again: it expires if etcd did not take the revoke
  std::unique_lock lock(mutex_);
  stop_cv_.wait(lock, [this] { return stopping_; });
}

}  // namespace gatehouse::bridge
