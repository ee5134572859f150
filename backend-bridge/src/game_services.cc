#include "gatehouse/bridge/game_services.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "gatehouse/base/log.h"
#include "gatehouse/bridge/batch_upstream.h"
#include "gatehouse/bridge/gonet2_upstream.h"
#include "gatehouse/bridge/rendezvous.h"
#include "gatehouse/net/endpoint.h"

namespace gatehouse::bridge {

namespace {

/// A value "batch:HOST:PORT" speaks the batched contract, "HOST:PORT" gonet2's.
constexpr std::string_view kBatchPrefix = "batch:";

bool batched(std::string_view value) {
  return value.starts_with(kBatchPrefix);
}
std::string address_of(std::string_view value) {
  return std::string(batched(value) ? value.substr(kBatchPrefix.size()) : value);
}

/// A name in a routing-table row (cut to fit, terminated).
void copy_name(char (&out)[metrics::kRoutingNameBytes], std::string_view name) {
  const std::size_t n = std::min(name.size(), sizeof out - 1);
  std::memset(out, 0, sizeof out);
  std::memcpy(out, name.data(), n);
}

}  // namespace

GameServices::GameServices(Context context, std::string game_service)
    : context_(std::move(context)), game_service_(std::move(game_service)) {
  // A predecessor's rows (this bridge restarted): its instances' counts go
  // on from there.
  metrics::RoutingNames before{};
  if (metrics::read_routing(context_.table, before)) {
    const std::uint32_t rows = std::min(before.instance_count, metrics::kMaxInstanceRows);
    for (std::uint32_t i = 0; i < rows; ++i) {
      const metrics::InstanceRow& row = before.instances[i];
      auto& counts = earlier_counts_[std::string(row.name, strnlen(row.name, sizeof row.name))];
      for (std::size_t c = 0; c < counts.size(); ++c) counts[c] += row.counts[c];
    }
  }
  republish();
}

GameServices::~GameServices() {
  cancel_all();
  publish_routing();   // the last counts, for a successor
  instances_.clear();  // each waits for its own calls to end
}

std::unique_ptr<GameServices::Instance> GameServices::make_instance(const std::string& name,
                                                                    const std::string& value) {
  InstanceMetrics::Counts earlier{};
  if (const auto it = earlier_counts_.find(name); it != earlier_counts_.end()) {
    earlier = it->second;
    earlier_counts_.erase(it);
  }
  auto instance = std::make_unique<Instance>(name, value, context_.metrics, earlier);
  const std::string address = address_of(value);
  spdlog::info("game service {} instance {}: {} ({} contract)", game_service_, name, address,
               batched(value) ? "batched" : "gonet2");
  if (batched(value)) {
    instance->upstream = std::make_unique<BatchUpstream>(
        BatchUpstream::Options{address, context_.gateway_id + "/" + name, context_.backend_wait_ns},
        context_.calls, context_.events, context_.wakeup, instance->metrics);
  } else {
    instance->upstream = std::make_unique<Gonet2Upstream>(
        Gonet2Upstream::Options{address, context_.numbering, context_.backend_wait_ns,
                                context_.gateway_id},
        context_.calls, context_.events, context_.wakeup, instance->metrics, context_.in_flight);
  }
  return instance;
}

void GameServices::retire(Instance& instance) {
  instance.retired = true;
  InstanceMetrics::Counts counts = instance.metrics.counts();
  for (std::size_t c = 0; c < counts.size(); ++c) counts[c] += instance.earlier[c];
  const auto namesake = std::find_if(instances_.begin(), instances_.end(), [&](const auto& i) {
    return !i->retired && i->name == instance.name;
  });
  auto& into = namesake != instances_.end() ? (*namesake)->earlier : earlier_counts_[instance.name];
  for (std::size_t c = 0; c < counts.size(); ++c) into[c] += counts[c];
}

void GameServices::update(const DiscoveryView& view) {
  if (stopping_) return;  // draining: no instance starts
  view_ = view;
  // The game service's instances whose value is an address: a typo in etcd
  // makes no instance that every login routed to it would fail on.
  ServiceInstances wanted;
  if (const auto it = view.find(game_service_); it != view.end()) {
    for (const auto& [name, value] : it->second) {
      try {
        parse_endpoint(address_of(value));
        wanted.emplace(name, value);
      } catch (const std::invalid_argument& e) {
        spdlog::error("game service {} instance {}: '{}' is not [batch:]HOST:PORT ({}); ignored",
                      game_service_, name, value, e.what());
      }
    }
  }
  // Removed, or its contract changed: no new sessions; its own stay.
  for (auto& instance : instances_) {
    if (!instance->live) continue;
    const auto w = wanted.find(instance->name);
    if (w != wanted.end() && batched(w->second) == batched(instance->value)) continue;
    instance->live = false;
    spdlog::warn(
        "game service {} instance {} ({}) is gone from the view: no new sessions go there; its "
        "{} sessions stay while their streams work",
        game_service_, instance->name, instance->value, instance->sessions);
  }
  for (const auto& entry : wanted) {
    const std::string& name = entry.first;
    const std::string& value = entry.second;
    // The instance, live; or removed and back (the same contract, its calls
    // not closed yet): its sessions and the new ones share its upstream.
    const auto same = std::find_if(instances_.begin(), instances_.end(), [&](const auto& i) {
      return i->name == name && (i->live || (!i->closing && batched(i->value) == batched(value)));
    });
    if (same == instances_.end()) {
      instances_.push_back(make_instance(name, value));
      continue;
    }
    Instance& instance = **same;
    if (!instance.live) {
      instance.live = true;
      spdlog::info("game service {} instance {} is back ({})", game_service_, name, value);
    }
    if (instance.value != value) {
      spdlog::info("game service {} instance {} moved from {} to {}", game_service_, name,
                   instance.value, value);
      instance.value = value;
      instance.upstream->move_to(address_of(value));
    }
  }
  republish();
  warn_if_no_instance();
}

void GameServices::warn_if_no_instance() const {
  if (!live_.empty()) return;
  spdlog::warn(
      "game service {} has no instance that takes sessions (none registered, or every one "
      "disabled): logins are refused (backend_unavailable) until one does",
      game_service_);
}

void GameServices::set_disabled(std::vector<std::string> names) {
  for (const auto& instance : instances_) {
    const bool was = disabled(*instance);
    const bool is = std::find(names.begin(), names.end(), instance->name) != names.end();
    if (was == is) continue;
    if (is) {
      spdlog::warn(
          "game service {} instance {} disabled by an operator: no new sessions go there; its "
          "{} sessions stay",
          game_service_, instance->name, instance->sessions);
    } else {
      spdlog::info("game service {} instance {} enabled by an operator: new sessions go there",
                   game_service_, instance->name);
    }
  }
  disabled_ = std::move(names);
  republish();
  warn_if_no_instance();
}

bool GameServices::disabled(const Instance& instance) const {
  return std::find(disabled_.begin(), disabled_.end(), instance.name) != disabled_.end();
}

Upstream* GameServices::route(std::uint64_t conn, std::int64_t user_id) {
  if (const auto it = bound_.find(conn); it != bound_.end()) return it->second->upstream.get();
  if (live_.empty()) return nullptr;
  Instance& instance = *live_[rendezvous_pick(user_id, live_hashes_)];
  bound_.emplace(conn, &instance);
  set_sessions(instance, instance.sessions + 1);
  return instance.upstream.get();
}

Upstream* GameServices::of(std::uint64_t conn) const {
  const auto it = bound_.find(conn);
  return it == bound_.end() ? nullptr : it->second->upstream.get();
}

void GameServices::closed(std::uint64_t conn) {
  if (bound_.contains(conn)) closed_.push_back(conn);
}

void GameServices::unbind(std::uint64_t conn) {
  const auto it = bound_.find(conn);
  if (it == bound_.end()) return;
  set_sessions(*it->second, it->second->sessions - 1);
  bound_.erase(it);
}

void GameServices::set_sessions(Instance& instance, std::size_t sessions) {
  instance.sessions = sessions;
  if (instance.row >= 0) {
    context_.table.sessions[instance.row].store(static_cast<std::int64_t>(sessions),
                                                std::memory_order_relaxed);
  }
}

std::size_t GameServices::flush(std::int64_t now_ns) {
  std::size_t work = 0;
  for (auto& instance : instances_) work += instance->upstream->flush(now_ns);
  // Closed sessions stay on their instance while their calls end (a newer
  // login of the user waits for them there).
  std::erase_if(closed_, [this](std::uint64_t conn) {
    const Upstream* upstream = of(conn);
    if (upstream != nullptr && upstream->has_call(conn)) return false;
    unbind(conn);
    return true;
  });
  // Removed instances go once nothing is on them.
  const std::size_t before = instances_.size();
  for (auto& instance : instances_) {
    if (instance->live || instance->sessions != 0) continue;
    if (!instance->closing) {
      instance->closing = true;
      instance->upstream->close_all();
    }
    if (instance->upstream->calls_open() != 0 || !instance->upstream->calls_over()) continue;
    spdlog::info("instance {} ({}) has no session left; dropped", instance->name, instance->value);
    retire(*instance);
  }
  std::erase_if(instances_,
                [](const std::unique_ptr<Instance>& instance) { return instance->retired; });
  if (instances_.size() != before) {
    republish();
    ++work;
  }
  return work;
}

void GameServices::close_all() {
  stopping_ = true;
  for (auto& instance : instances_) instance->upstream->close_all();
}

void GameServices::cancel_all() {
  for (auto& instance : instances_) instance->upstream->cancel_all();
}

std::size_t GameServices::calls_open() const {
  std::size_t n = 0;
  for (const auto& instance : instances_) n += instance->upstream->calls_open();
  return n;
}

std::uint64_t GameServices::unacknowledged() const {
  std::uint64_t n = 0;
  for (const auto& instance : instances_) n += instance->upstream->unacknowledged();
  return n;
}

void GameServices::republish() {
  live_.clear();
  live_hashes_.clear();
  for (auto& instance : instances_) {
    if (!instance->live || disabled(*instance)) continue;
    live_.push_back(instance.get());
    live_hashes_.push_back(instance->hash);
  }
  metrics::RoutingNames& names = routing_;
  names = {};
  // The game service first, then the others watched (their instances counted).
  names.service_count = 1;
  copy_name(names.services[0].name, game_service_);
  names.services[0].instances = static_cast<std::int64_t>(live_.size());
  for (const auto& [service, instances] : view_) {
    if (service == game_service_ || names.service_count == metrics::kMaxServiceRows) continue;
    metrics::ServiceRow& row = names.services[names.service_count++];
    copy_name(row.name, service);
    row.instances = static_cast<std::int64_t>(instances.size());
  }
  for (auto& instance : instances_) {
    instance->row = -1;
    if (names.instance_count == metrics::kMaxInstanceRows) {
      ++names.unlisted;
      continue;
    }
    instance->row = static_cast<int>(names.instance_count++);
    metrics::InstanceRow& row = names.instances[instance->row];
    copy_name(row.name, instance->name);
    row.service = 0;
    row.state = !instance->live       ? metrics::kInstanceRemoved
                : disabled(*instance) ? metrics::kInstanceDisabled
                                      : metrics::kInstanceLive;
  }
  publish_routing();
  for (auto& instance : instances_) {
    set_sessions(*instance, instance->sessions);
    if (instance->row >= 0) {
      context_.table.up[instance->row].store(instance->up ? 1 : 0, std::memory_order_relaxed);
    }
  }
}

void GameServices::publish_routing() {
  for (const auto& instance : instances_) {
    if (instance->row < 0) continue;
    const InstanceMetrics::Counts now = instance->metrics.counts();
    std::uint64_t* counts = routing_.instances[instance->row].counts;
    for (std::size_t c = 0; c < now.size(); ++c) counts[c] = instance->earlier[c] + now[c];
  }
  metrics::publish_routing(context_.table, routing_);
}

void GameServices::publish_reachability() {
  publish_routing();
  for (auto& instance : instances_) {
    const bool up = instance->upstream->reachable();
    if (instance->row >= 0) {
      context_.table.up[instance->row].store(up ? 1 : 0, std::memory_order_relaxed);
    }
    if (up == instance->up) continue;
    instance->up = up;
    // At most one line per period and instance, however it flaps.
    if (up) {
      spdlog::info("game service {} instance {}: reachable", game_service_, instance->name);
    } else {
      spdlog::warn("game service {} instance {}: unreachable", game_service_, instance->name);
    }
  }
}

}  // namespace gatehouse::bridge
