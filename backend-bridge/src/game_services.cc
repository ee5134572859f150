#include "gatehouse/bridge/game_services.h"

#include <grpcpp/support/status_code_enum.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "gatehouse/base/clock.h"
#include "gatehouse/base/log.h"
#include "gatehouse/base/log_limit.h"
#include "gatehouse/base/log_text.h"
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
std::string name_of(const char (&row)[metrics::kRoutingNameBytes]) {
  return std::string(row, strnlen(row, sizeof row));
}
/// An instance's counts are kept by service and name.
std::string counts_key(std::string_view service, std::string_view instance) {
  return std::string(service) + "/" + std::string(instance);
}

// A mass move (an instance with thousands of sessions leaves) must not
// flood the journal: one line a second, the rest counted.
LogLimit moved_log{spdlog::level::info, "session moved to another game-service instance"};
LogLimit gave_up_log{spdlog::level::warn, "session closed: no game-service instance took it"};
LogLimit waiting_overflow_log{spdlog::level::warn, "messages of a moving session dropped"};
constexpr std::size_t kNameLogBytes = 64;  // of an instance name an auth service gave
LogLimit named_missing_log{spdlog::level::warn,
                           "login refused: the game-service instance named for it is not live"};

constexpr std::uint32_t kFirstBackoffMs = 50;
constexpr std::uint32_t kMaxBackoffMs = 2000;
constexpr std::int64_t kWorkedNs = 5'000'000'000;

}  // namespace

/// Where an instance's upstream reports: the game's messages and kicks go
/// straight on to the worker rings (any thread); the ends of its sessions'
/// streams (main thread) pass GameServices::on_ended first.
class GameServices::InstanceEvents final : public UpstreamEvents {
 public:
  InstanceEvents(GameServices& services, Instance& instance)
      : services_(services), instance_(instance), events_(services.context_.events) {}

  void message(Unpublished& unpublished, std::uint64_t conn, std::uint64_t seq, std::string& bytes,
               ReplySource& from) override {
    events_.message(unpublished, conn, seq, bytes, from);
  }
  void kick(Unpublished& unpublished, std::uint64_t conn, ReplySource& from) override {
    events_.kick(unpublished, conn, from);
  }
  void ended(Unpublished& unpublished, std::uint64_t conn, std::int32_t grpc_code) override {
    if (!services_.on_ended(instance_, conn, grpc_code))
      events_.ended(unpublished, conn, grpc_code);
  }
  void publish(const Unpublished& unpublished) override { events_.publish(unpublished); }
  bool hold_reads(std::uint64_t conn, const std::weak_ptr<PausedReads>& call) override {
    return events_.hold_reads(conn, call);
  }

 private:
  GameServices& services_;
  Instance& instance_;
  UpstreamEvents& events_;
};

struct GameServices::Instance {
  Instance(GameServices& services, std::size_t service_, std::string name_, std::string value_,
           InstanceMetrics::Counts earlier_)
      : service(service_),
        name(std::move(name_)),
        value(std::move(value_)),
        hash(instance_hash(name)),
        metrics(services.context_.metrics),
        earlier(earlier_),
        events(services, *this) {}

  std::size_t service;  // its index in services_
  std::string name;
  std::string value;  // as the view gives it: the contract and the address
  std::uint64_t hash;
  InstanceMetrics metrics;          // the upstream's: outlives it
  InstanceMetrics::Counts earlier;  // its name's counts before it came
  InstanceEvents events;            // the upstream's: outlives it
  std::unique_ptr<Upstream> upstream;
  std::size_t sessions = 0;
  bool live = true;
  bool closing = false;  // removed, without sessions: its calls half-closed
  bool retired = false;  // its calls over too: it goes
  bool up = false;       // reachable, as last published
  int row = -1;          // in the routing table, -1: none
};

GameServices::GameServices(Context context, std::string game_service)
    : GameServices(std::move(context), ServicesPlan{{{std::move(game_service), false}}, {}, {}}) {}

GameServices::GameServices(Context context, ServicesPlan plan)
    : context_(std::move(context)),
      routes_(std::move(plan.routes)),
      game_instance_(std::move(plan.game_instance)) {
  if (plan.services.empty()) throw std::invalid_argument("GameServices: no service");
  if (!game_instance_.empty()) {
    spdlog::info("game service {}: every session goes to its instance {} (game-instance)",
                 plan.services[0].name, game_instance_);
  }
  for (auto& s : plan.services) {
    Service& service = services_.emplace_back();
    service.name = std::move(s.name);
    service.rebind = s.rebind;
  }
  // A predecessor's rows (this bridge restarted): its instances' counts and
  // its services' moves go on from there.
  metrics::RoutingNames before{};
  if (metrics::read_routing(context_.table, before)) {
    const std::uint32_t services = std::min(before.service_count, metrics::kMaxServiceRows);
    for (std::uint32_t i = 0; i < services; ++i) {
      const std::string name = name_of(before.services[i].name);
      for (Service& service : services_) {
        if (service.name != name) continue;
        for (std::size_t r = 0; r < metrics::kMoveReasonCount; ++r) {
          service.moved[r] += before.services[i].moved[r];
        }
      }
    }
    const std::uint32_t rows = std::min(before.instance_count, metrics::kMaxInstanceRows);
    for (std::uint32_t i = 0; i < rows; ++i) {
      const metrics::InstanceRow& row = before.instances[i];
      const std::string service =
          row.service < services ? name_of(before.services[row.service].name) : "";
      auto& counts = earlier_counts_[counts_key(service, name_of(row.name))];
      for (std::size_t c = 0; c < counts.size(); ++c) counts[c] += row.counts[c];
    }
  }
  republish();
}

GameServices::~GameServices() {
  cancel_all();
  publish_routing();  // the last counts, for a successor
  for (Service& service : services_) {
    service.instances.clear();  // each waits for its own calls to end
  }
}

std::unique_ptr<GameServices::Instance> GameServices::make_instance(Service& service,
                                                                    std::size_t index,
                                                                    const std::string& name,
                                                                    const std::string& value) {
  InstanceMetrics::Counts earlier{};
  if (const auto it = earlier_counts_.find(counts_key(service.name, name));
      it != earlier_counts_.end()) {
    earlier = it->second;
    earlier_counts_.erase(it);
  }
  auto instance = std::make_unique<Instance>(*this, index, name, value, earlier);
  const std::string address = address_of(value);
  spdlog::info("game service {} instance {}: {} ({} contract, {})", service.name, name, address,
               batched(value) ? "batched" : "gonet2", service.rebind ? "rebind" : "sticky");
  if (batched(value)) {
    instance->upstream = std::make_unique<BatchUpstream>(
        BatchUpstream::Options{address, context_.gateway_id + "/" + name, context_.backend_wait_ns,
                               service.rebind},
        context_.calls, instance->events, context_.wakeup, instance->metrics);
  } else {
    instance->upstream = std::make_unique<Gonet2Upstream>(
        Gonet2Upstream::Options{address, context_.numbering, context_.backend_wait_ns,
                                context_.gateway_id},
        context_.io, instance->events, instance->metrics, context_.in_flight);
  }
  return instance;
}

void GameServices::retire(Service& service, Instance& instance) {
  instance.retired = true;
  InstanceMetrics::Counts counts = instance.metrics.counts();
  for (std::size_t c = 0; c < counts.size(); ++c) counts[c] += instance.earlier[c];
  const auto namesake =
      std::find_if(service.instances.begin(), service.instances.end(),
                   [&](const auto& i) { return !i->retired && i->name == instance.name; });
  auto& into = namesake != service.instances.end()
                   ? (*namesake)->earlier
                   : earlier_counts_[counts_key(service.name, instance.name)];
  for (std::size_t c = 0; c < counts.size(); ++c) into[c] += counts[c];
}

void GameServices::update(const DiscoveryView& view) {
  if (stopping_) return;  // draining: no instance starts
  view_ = view;
  std::vector<Instance*> gone;
  for (std::size_t s = 0; s < services_.size(); ++s) update_service(services_[s], s, view, gone);
  republish();
  // A rebind service's sessions leave its removed instances now, for the
  // instances it has now.
  std::erase_if(gone, [this](const Instance* i) { return !services_[i->service].rebind; });
  if (!gone.empty()) {
    const std::int64_t now = monotonic_ns();
    for (auto& [conn, bound] : bound_) {
      if (bound.closed) continue;
      for (std::size_t s = 0; s < bound.places.size(); ++s) {
        Instance* on = bound.places[s].instance;
        if (on != nullptr && std::find(gone.begin(), gone.end(), on) != gone.end()) {
          move(conn, s, *on, metrics::kMovedRemoved, now);
        }
      }
    }
  }
  for (const Service& service : services_) warn_if_no_instance(service);
}

void GameServices::update_service(Service& service, std::size_t index, const DiscoveryView& view,
                                  std::vector<Instance*>& gone) {
  // The service's instances whose value is an address: a typo in etcd
  // makes no instance that every login routed to it would fail on.
  ServiceInstances wanted;
  if (const auto it = view.find(service.name); it != view.end()) {
    for (const auto& [name, value] : it->second) {
      try {
        parse_endpoint(address_of(value));
        wanted.emplace(name, value);
      } catch (const std::invalid_argument& e) {
        spdlog::error("game service {} instance {}: '{}' is not [batch:]HOST:PORT ({}); ignored",
                      service.name, name, value, e.what());
      }
    }
  }
  // Removed, or its contract changed: no new sessions; its own stay
  // (sticky) or move (rebind, once the live set is rebuilt).
  for (auto& instance : service.instances) {
    if (!instance->live) continue;
    const auto w = wanted.find(instance->name);
    if (w != wanted.end() && batched(w->second) == batched(instance->value)) continue;
    instance->live = false;
    gone.push_back(instance.get());
    if (service.rebind) {
      spdlog::warn(
          "game service {} instance {} ({}) is gone from the view: no new sessions go there; its "
          "{} sessions move to the other instances (rebind)",
          service.name, instance->name, instance->value, instance->sessions);
    } else {
      spdlog::warn(
          "game service {} instance {} ({}) is gone from the view: no new sessions go there; its "
          "{} sessions stay while their streams work",
          service.name, instance->name, instance->value, instance->sessions);
    }
  }
  for (const auto& entry : wanted) {
    const std::string& name = entry.first;
    const std::string& value = entry.second;
    // The instance, live; or removed and back (the same contract, its calls
    // not closed yet): its sessions and the new ones share its upstream.
    const auto same =
        std::find_if(service.instances.begin(), service.instances.end(), [&](const auto& i) {
          return i->name == name &&
                 (i->live || (!i->closing && batched(i->value) == batched(value)));
        });
    if (same == service.instances.end()) {
      service.instances.push_back(make_instance(service, index, name, value));
      continue;
    }
    Instance& instance = **same;
    if (!instance.live) {
      instance.live = true;
      std::erase(gone, &instance);
      spdlog::info("game service {} instance {} is back ({})", service.name, name, value);
    }
    if (instance.value != value) {
      spdlog::info("game service {} instance {} moved from {} to {}", service.name, name,
                   instance.value, value);
      instance.value = value;
      instance.upstream->move_to(address_of(value));
    }
  }
}

void GameServices::warn_if_no_instance(const Service& service) const {
  if (&service == &services_[0] && !game_instance_.empty() && !service.live.empty() &&
      std::none_of(service.live.begin(), service.live.end(),
                   [this](const Instance* i) { return i->name == game_instance_; })) {
    spdlog::warn(
        "game service {} has no live instance {} (game-instance): logins are refused "
        "(backend_unavailable) until it is",
        service.name, game_instance_);
  }
  if (!service.live.empty()) return;
  if (&service == &services_[0]) {
    spdlog::warn(
        "game service {} has no instance that takes sessions (none registered, or every one "
        "disabled): logins are refused (backend_unavailable) until one does",
        service.name);
  } else {
    spdlog::warn(
        "game service {} has no instance that takes sessions (none registered, or every one "
        "disabled): sessions that send it a message are closed (backend_unavailable) until one "
        "does",
        service.name);
  }
}

void GameServices::set_disabled(std::vector<std::string> names) {
  for (const Service& service : services_) {
    for (const auto& instance : service.instances) {
      const bool was = disabled(*instance);
      const bool is = std::find(names.begin(), names.end(), instance->name) != names.end();
      if (was == is) continue;
      if (is) {
        spdlog::warn(
            "game service {} instance {} disabled by an operator: no new sessions go there; its "
            "{} sessions stay",
            service.name, instance->name, instance->sessions);
      } else {
        spdlog::info("game service {} instance {} enabled by an operator: new sessions go there",
                     service.name, instance->name);
      }
    }
  }
  disabled_ = std::move(names);
  republish();
  for (const Service& service : services_) warn_if_no_instance(service);
}

bool GameServices::disabled(const Instance& instance) const {
  return std::find(disabled_.begin(), disabled_.end(), instance.name) != disabled_.end();
}

std::size_t GameServices::service_of(std::span<const std::byte> message) const noexcept {
  if (routes_.empty() || message.size() < 2) return 0;
  // | proto u16 big-endian | body | (shared/protocol.md)
  const auto proto = static_cast<std::uint16_t>((std::to_integer<unsigned>(message[0]) << 8) |
                                                std::to_integer<unsigned>(message[1]));
  for (const ServicesPlan::Route& route : routes_) {
    if (proto >= route.first && proto <= route.last) return route.service;
  }
  return 0;
}

void GameServices::pin(std::uint64_t conn, std::string instance) {
  pins_[conn] = std::move(instance);
}

Upstream* GameServices::route(std::uint64_t conn, std::int64_t user_id, std::uint64_t login_seq,
                              std::size_t service) {
  if (const auto it = bound_.find(conn); it != bound_.end()) {
    const Place& place = it->second.places[service];
    if (place.instance != nullptr) return place.instance->upstream.get();
    if (waiting_.contains({conn, service})) return nullptr;  // hold() takes its messages
  }
  const Service& s = services_[service];
  if (s.live.empty()) return nullptr;
  // The game service's instance named for the session (its auth service's
  // choice, else game-instance), or hashing.
  std::string named;
  if (service == 0) {
    const auto pinned = pins_.find(conn);
    named = pinned != pins_.end() ? pinned->second : game_instance_;
  }
  Instance* instance =
      named.empty() ? s.live[rendezvous_pick(user_id, s.live_hashes)] : named_instance(named, conn);
  if (instance == nullptr) return nullptr;  // kept in pins_ for a later route, until it closes
  if (service == 0) pins_.erase(conn);
  const auto [it, fresh] = bound_.try_emplace(conn);
  if (fresh) {
    it->second.user_id = user_id;
    it->second.login_seq = login_seq;
    it->second.places.resize(services_.size());
  }
  if (service == 0) it->second.named = std::move(named);
  bind(conn, service, instance);
  return instance->upstream.get();
}

void GameServices::bind(std::uint64_t conn, std::size_t service, Instance* instance) {
  bound_.at(conn).places[service].instance = instance;
  set_sessions(*instance, instance->sessions + 1);
}

Upstream* GameServices::of(std::uint64_t conn, std::size_t service) const {
  const auto it = bound_.find(conn);
  if (it == bound_.end()) return nullptr;
  const Instance* instance = it->second.places[service].instance;
  return instance == nullptr ? nullptr : instance->upstream.get();
}

bool GameServices::login_of(std::uint64_t conn, std::int64_t& user_id,
                            std::uint64_t& login_seq) const {
  const auto it = bound_.find(conn);
  if (it == bound_.end()) return false;
  user_id = it->second.user_id;
  login_seq = it->second.login_seq;
  return true;
}

bool GameServices::hold(std::uint64_t conn, std::size_t service, std::uint64_t seq,
                        std::span<const std::byte> message) {
  if (waiting_.empty()) return false;
  const auto it = waiting_.find({conn, service});
  if (it == waiting_.end()) return false;
  Waiting& w = it->second;
  if (w.messages.size() >= kMaxWaitingMessages) {
    context_.metrics.add(metrics::kDroppedToGame);
    waiting_overflow_log.log(
        "conn {:#x}: {} messages wait for an instance of game service {}; dropping more", conn,
        w.messages.size(), services_[service].name);
    return true;
  }
  w.messages.push_back(
      {seq, std::string(reinterpret_cast<const char*>(message.data()), message.size())});
  return true;
}

GameServices::Instance* GameServices::named_instance(const std::string& name,
                                                     std::uint64_t conn) const {
  const Service& game = services_[0];
  const auto it = std::find_if(game.live.begin(), game.live.end(),
                               [&name](const Instance* i) { return i->name == name; });
  if (it != game.live.end()) return *it;
  named_missing_log.log(
      "conn {:#x}: game service {} has no live instance {} (named for it{}): the login is refused "
      "(backend_unavailable)",
      conn, game.name, log_text(name, kNameLogBytes),
      name == game_instance_ ? " by game-instance" : " by the auth service");
  return nullptr;
}

const std::string& GameServices::named_of(std::uint64_t conn, std::size_t service) const {
  static const std::string any;
  if (service != 0) return any;
  const auto it = bound_.find(conn);
  return it == bound_.end() ? any : it->second.named;
}

void GameServices::close(std::uint64_t conn, const Origin& origin) {
  pins_.erase(conn);
  const auto it = bound_.find(conn);
  if (it == bound_.end()) return;
  for (const Place& place : it->second.places) {
    if (place.instance != nullptr) place.instance->upstream->close(conn, origin);
  }
  for (std::size_t s = 0; s < services_.size() && !waiting_.empty(); ++s) {
    const auto w = waiting_.find({conn, s});
    if (w == waiting_.end()) continue;
    context_.metrics.add(metrics::kDroppedToGame, w->second.messages.size());
    waiting_.erase(w);
  }
  closed(conn);
}

void GameServices::closed(std::uint64_t conn) {
  pins_.erase(conn);
  const auto it = bound_.find(conn);
  if (it == bound_.end() || it->second.closed) return;
  it->second.closed = true;
  closed_.push_back(conn);
}

GameServices::Instance* GameServices::pick(const Service& service, std::int64_t user_id,
                                           std::uint64_t conn, std::uint64_t avoid) const {
  // Best: reachable, not the one that failed the session. Then any but that
  // one; then that one itself (it may come back: it is retried with
  // backoff). Never one where the session's previous stream still ends.
  // A session named for one instance goes there only (or waits for it).
  const std::string& named = named_of(conn, static_cast<std::size_t>(&service - services_.data()));
  std::vector<Instance*> tier[3];
  for (Instance* instance : service.live) {
    if (instance->upstream->has_call(conn)) continue;
    if (!named.empty() && instance->name != named) continue;
    const int t = instance->hash == avoid ? 2 : instance->up ? 0 : 1;
    tier[t].push_back(instance);
  }
  for (const auto& candidates : tier) {
    if (candidates.empty()) continue;
    std::vector<std::uint64_t> hashes;
    hashes.reserve(candidates.size());
    for (const Instance* instance : candidates) hashes.push_back(instance->hash);
    return candidates[rendezvous_pick(user_id, hashes)];
  }
  return nullptr;
}

void GameServices::move(std::uint64_t conn, std::size_t service, Instance& from,
                        metrics::MoveReason reason, std::int64_t now_ns) {
  Bound& bound = bound_.at(conn);
  Place& place = bound.places[service];
  // Half-closed there: what the client sent before is delivered ahead of
  // the end; its end, when it comes, means nothing (on_ended: it left).
  from.upstream->close(conn, Origin{});
  set_sessions(from, from.sessions - 1);
  place.instance = nullptr;
  // A session has backend-wait from its first failure to find an instance
  // that works: failing again meanwhile does not start it anew, and each
  // attempt waits twice as long as the last (an instance that refuses every
  // stream at once is not hammered).
  const bool worked = place.reopened_ns != 0 && now_ns - place.reopened_ns > kWorkedNs;
  if (place.failed_ns == 0 || worked || now_ns - place.failed_ns > context_.backend_wait_ns) {
    place.failed_ns = now_ns;
    place.backoff_ms = 0;
  }
  Waiting& w = waiting_[{conn, service}];
  w.avoid = reason == metrics::kMovedFailed ? from.hash : 0;
  w.due_ns = now_ns + std::int64_t{place.backoff_ms} * 1'000'000;
  place.backoff_ms =
      place.backoff_ms == 0 ? kFirstBackoffMs : std::min(place.backoff_ms * 2, kMaxBackoffMs);
  w.reason = reason;
  // A removed instance's sessions go at once (nothing failed: no message
  // waits); a failed one's in the next pass (so that an instance whose
  // upstream fails an open at once is not tried in a loop).
  if (reason == metrics::kMovedRemoved) reopen(conn, service);
}

bool GameServices::reopen(std::uint64_t conn, std::size_t service) {
  auto node = waiting_.extract({conn, service});
  if (node.empty()) return false;
  Waiting& w = node.mapped();
  Bound& bound = bound_.at(conn);
  Service& s = services_[service];
  Instance* to = pick(s, bound.user_id, conn, w.avoid);
  if (to == nullptr) {
    waiting_.insert(std::move(node));
    return false;
  }
  bind(conn, service, to);
  bound.places[service].reopened_ns = monotonic_ns();
  // In this process's hands since their records were read: no record to
  // keep for a game's acknowledgement.
  const Origin held{};
  to->upstream->open(conn, bound.user_id, bound.login_seq, &held);
  if (to->hash == w.avoid) {
    // Back on the instance that failed it (the only one left): a retry, not
    // a move.
    spdlog::debug("conn {:#x}: game service {}: stream re-opened on instance {}", conn, s.name,
                  to->name);
  } else {
    ++s.moved[w.reason];
    moved_log.log(
        "conn {:#x} user {}: game service {}: moved to instance {} ({}); {} messages follow", conn,
        bound.user_id, s.name, to->name,
        w.reason == metrics::kMovedFailed ? "its stream failed" : "its instance left",
        w.messages.size());
  }
  Upstream* upstream = of(conn, service);  // null if that open failed at once: it waits again
  for (const Waiting::Held& m : w.messages) {
    const auto bytes = std::as_bytes(std::span(m.message));
    if (upstream != nullptr) {
      upstream->send(conn, m.seq, bytes, held);
    } else if (!hold(conn, service, m.seq, bytes)) {
      context_.metrics.add(metrics::kDroppedToGame);
    }
  }
  return true;
}

std::size_t GameServices::reopen_waiting(std::int64_t now_ns) {
  if (waiting_.empty()) return 0;
  std::vector<Key> due;
  for (const auto& [key, w] : waiting_) {
    if (w.due_ns <= now_ns) due.push_back(key);
  }
  std::size_t work = 0;
  UpstreamEvents::Unpublished unpublished;
  for (const Key& key : due) {
    const auto it = waiting_.find(key);
    if (it == waiting_.end()) continue;
    Place& place = bound_.at(key.conn).places[key.service];
    const bool in_time = now_ns - place.failed_ns < context_.backend_wait_ns;
    if (in_time && reopen(key.conn, key.service)) {
      ++work;
      continue;
    }
    Waiting& w = it->second;
    if (in_time) {
      place.backoff_ms = std::max(place.backoff_ms, kFirstBackoffMs);
      w.due_ns = now_ns + std::int64_t{place.backoff_ms} * 1'000'000;
      place.backoff_ms = std::min(place.backoff_ms * 2, kMaxBackoffMs);
      continue;
    }
    // Nobody took it within backend-wait: its worker closes it.
    gave_up_log.log(
        "conn {:#x}: no instance of game service {} took the session within {} s; closed "
        "(backend_unavailable), {} messages dropped",
        key.conn, services_[key.service].name, static_cast<double>(context_.backend_wait_ns) / 1e9,
        w.messages.size());
    context_.metrics.add(metrics::kDroppedToGame, w.messages.size());
    waiting_.erase(it);
    context_.events.ended(unpublished, key.conn, grpc::StatusCode::UNAVAILABLE);
    ++work;
  }
  context_.events.publish(unpublished);
  return work;
}

bool GameServices::on_ended(Instance& instance, std::uint64_t conn, std::int32_t grpc_code) {
  if (stopping_) return false;  // the drain: every session is closing
  const auto it = bound_.find(conn);
  if (it == bound_.end()) return false;
  Bound& bound = it->second;
  if (bound.places[instance.service].instance != &instance) {
    // The session left this instance (moved, or waits for another): the
    // end of its stream there means nothing to it.
    return true;
  }
  if (!services_[instance.service].rebind || grpc_code == grpc::StatusCode::OK || bound.closed) {
    return false;  // sticky; or the game ended the session; or it is closing anyway
  }
  move(conn, instance.service, instance, metrics::kMovedFailed, monotonic_ns());
  return true;
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
  for (Service& service : services_) {
    for (auto& instance : service.instances) work += instance->upstream->flush(now_ns);
  }
  work += reopen_waiting(now_ns);
  // Closed sessions stay on their instances while their calls end (a newer
  // login of the user waits for them there).
  std::erase_if(closed_, [this](std::uint64_t conn) {
    const auto it = bound_.find(conn);
    if (it == bound_.end()) return true;
    for (const Place& place : it->second.places) {
      if (place.instance != nullptr && place.instance->upstream->has_call(conn)) return false;
    }
    for (const Place& place : it->second.places) {
      if (place.instance != nullptr) set_sessions(*place.instance, place.instance->sessions - 1);
    }
    bound_.erase(it);
    return true;
  });
  // Removed instances go once nothing is on them.
  bool dropped = false;
  for (Service& service : services_) {
    for (auto& instance : service.instances) {
      if (instance->live || instance->sessions != 0) continue;
      if (!instance->closing) {
        instance->closing = true;
        instance->upstream->close_all();
      }
      if (instance->upstream->calls_open() != 0 || !instance->upstream->calls_over()) continue;
      spdlog::info("game service {} instance {} ({}) has no session left; dropped", service.name,
                   instance->name, instance->value);
      retire(service, *instance);
    }
    dropped |= std::erase_if(service.instances, [](const std::unique_ptr<Instance>& instance) {
                 return instance->retired;
               }) != 0;
  }
  if (dropped) {
    republish();
    ++work;
  }
  return work;
}

void GameServices::close_all() {
  stopping_ = true;
  // Sessions waiting for an instance are not re-opened during the drain:
  // their workers are closing them.
  waiting_.clear();
  for (Service& service : services_) {
    for (auto& instance : service.instances) instance->upstream->close_all();
  }
}

void GameServices::cancel_all() {
  for (Service& service : services_) {
    for (auto& instance : service.instances) instance->upstream->cancel_all();
  }
}

std::size_t GameServices::calls_open() const {
  std::size_t n = 0;
  for (const Service& service : services_) {
    for (const auto& instance : service.instances) n += instance->upstream->calls_open();
  }
  return n;
}

std::uint64_t GameServices::unacknowledged() const {
  std::uint64_t n = 0;
  for (const Service& service : services_) {
    for (const auto& instance : service.instances) n += instance->upstream->unacknowledged();
  }
  return n;
}

void GameServices::republish() {
  for (Service& service : services_) {
    service.live.clear();
    service.live_hashes.clear();
    for (auto& instance : service.instances) {
      if (!instance->live || disabled(*instance)) continue;
      service.live.push_back(instance.get());
      service.live_hashes.push_back(instance->hash);
    }
  }
  metrics::RoutingNames& names = routing_;
  names = {};
  // The services routed to first (the game service's row 0), then the
  // others watched (their instances counted).
  for (const Service& service : services_) {
    if (names.service_count == metrics::kMaxServiceRows) break;
    metrics::ServiceRow& row = names.services[names.service_count++];
    copy_name(row.name, service.name);
    row.instances = static_cast<std::int64_t>(service.live.size());
  }
  for (const auto& entry : view_) {
    const std::string& name = entry.first;
    const ServiceInstances& instances = entry.second;
    if (names.service_count == metrics::kMaxServiceRows) break;
    if (std::any_of(services_.begin(), services_.end(),
                    [&](const Service& s) { return s.name == name; })) {
      continue;
    }
    metrics::ServiceRow& row = names.services[names.service_count++];
    copy_name(row.name, name);
    row.instances = static_cast<std::int64_t>(instances.size());
  }
  for (std::size_t s = 0; s < services_.size(); ++s) {
    for (auto& instance : services_[s].instances) {
      instance->row = -1;
      if (names.instance_count == metrics::kMaxInstanceRows) {
        ++names.unlisted;
        continue;
      }
      instance->row = static_cast<int>(names.instance_count++);
      metrics::InstanceRow& row = names.instances[instance->row];
      copy_name(row.name, instance->name);
      row.service = static_cast<std::uint32_t>(s);
      row.state = !instance->live       ? metrics::kInstanceRemoved
                  : disabled(*instance) ? metrics::kInstanceDisabled
                                        : metrics::kInstanceLive;
    }
  }
  publish_routing();
  for (Service& service : services_) {
    for (auto& instance : service.instances) {
      set_sessions(*instance, instance->sessions);
      if (instance->row >= 0) {
        context_.table.up[instance->row].store(instance->up ? 1 : 0, std::memory_order_relaxed);
      }
    }
  }
}

void GameServices::publish_routing() {
  for (std::size_t s = 0; s < services_.size() && s < metrics::kMaxServiceRows; ++s) {
    std::copy(std::begin(services_[s].moved), std::end(services_[s].moved),
              routing_.services[s].moved);
    for (const auto& instance : services_[s].instances) {
      if (instance->row < 0) continue;
      const InstanceMetrics::Counts now = instance->metrics.counts();
      std::uint64_t* counts = routing_.instances[instance->row].counts;
      for (std::size_t c = 0; c < now.size(); ++c) counts[c] = instance->earlier[c] + now[c];
    }
  }
  metrics::publish_routing(context_.table, routing_);
}

void GameServices::publish_reachability() {
  publish_routing();
  for (const Service& service : services_) {
    for (auto& instance : service.instances) {
      const bool up = instance->upstream->reachable();
      if (instance->row >= 0) {
        context_.table.up[instance->row].store(up ? 1 : 0, std::memory_order_relaxed);
      }
      if (up == instance->up) continue;
      instance->up = up;
      // At most one line per period and instance, however it flaps.
      if (up) {
        spdlog::info("game service {} instance {}: reachable", service.name, instance->name);
      } else {
        spdlog::warn("game service {} instance {}: unreachable", service.name, instance->name);
      }
    }
  }
}

}  // namespace gatehouse::bridge
