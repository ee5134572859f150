// Core: the server, its polling threads, the registry, the janitor, shutdown.
#include "server_core.h"

#include <algorithm>
#include <random>
#include <stdexcept>

#include "batch_link.h"
#include "batch_session.h"
#include "stream_reactor.h"

namespace gatehouse::game::detail {

std::uint64_t draw_epoch() {
  std::random_device device;
  std::uint32_t epoch = 0;
  while (epoch == 0) epoch = static_cast<std::uint32_t>(device());
  return epoch;
}

Core::Core(GameServer& owner, GameHandler& handler, GameServerOptions options)
    : owner_(owner),
      handler_(handler),
      options_(std::move(options)),
      types_(frame_type_values(options_.numbering)) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.address, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(&stream_service_);
  builder.RegisterService(&batch_service_);
  for (grpc::Service* service : options_.services) {
    if (service != nullptr) builder.RegisterService(service);
  }
  queue_ = builder.AddCompletionQueue();
  // Two game servers on one port would split the gateway's streams between
  // them; a second bind must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Accept the gateway's keepalive pings (a game outage must be noticed on
  // idle streams too) instead of answering them with GOAWAY too_many_pings.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Explicit, and the same as the gateway's (game_link_limits.h): our
  // batches are cut to fit them.
  builder.SetMaxReceiveMessageSize(static_cast<int>(game_link::kMaxMessageBytes));
  builder.SetMaxSendMessageSize(static_cast<int>(game_link::kMaxMessageBytes));
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    throw std::runtime_error("game server: cannot listen on " + options_.address);
  }
  request_stream(*this);
  BatchLink::request(*this);
  for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.threads); ++i) {
    pollers_.emplace_back([this] {
      void* tag = nullptr;
      bool ok = false;
      while (queue_->Next(&tag, &ok)) {
        const auto* t = static_cast<AsyncCall::Tag*>(tag);
        t->call->on_completion(t->op, ok);
      }
    });
  }
  janitor_ = std::thread([this] { janitor(); });
}

Core::~Core() {
  stop_janitor();
  // Zombies left after shutdown() would keep their GatewayState (and it them).
  for (const auto& [id, gateway] : gateways_) {
    std::lock_guard lock(gateway->mu);
    gateway->sessions.clear();
  }
}

void Core::call_began() {
  std::lock_guard lock(calls_mu_);
  ++calls_;
}

void Core::call_ended() {
  std::lock_guard lock(calls_mu_);
  if (--calls_ == 0) calls_over_.notify_all();
}

bool Core::add(Endpoint& endpoint) {
  std::lock_guard lock(mu_);
  return add_locked(endpoint);
}

bool Core::add_locked(Endpoint& endpoint) {
  if (shutting_down_) return false;
  const StreamHandle h = endpoint.handle();
  streams_.emplace(static_cast<std::uint64_t>(h.id()), &endpoint);
  by_user_.emplace(h.user_id(), &endpoint);
  return true;
}

void Core::remove(Endpoint& endpoint) {
  std::lock_guard lock(mu_);
  remove_locked(endpoint);
}

void Core::remove_locked(Endpoint& endpoint) {
  const StreamHandle h = endpoint.handle();
  streams_.erase(static_cast<std::uint64_t>(h.id()));
  auto [first, last] = by_user_.equal_range(h.user_id());
  for (auto it = first; it != last; ++it) {
    if (it->second == &endpoint) {
      by_user_.erase(it);
      break;
    }
  }
}

std::shared_ptr<GatewayState> Core::gateway_of(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("gateway-id");
  if (it == metadata.end() || it->second.empty()) {
    return std::make_shared<GatewayState>(std::string(), false, options_.reattach_grace);
  }
  std::string id(it->second.data(), it->second.size());
  std::lock_guard lock(mu_);
  std::shared_ptr<GatewayState>& gateway = gateways_[id];
  if (!gateway)
    gateway = std::make_shared<GatewayState>(std::move(id), true, options_.reattach_grace);
  return gateway;
}

void Core::janitor() {
  std::unique_lock lock(janitor_mu_);
  while (!janitor_wake_.wait_for(lock, std::chrono::milliseconds(100),
                                 [this] { return janitor_stop_; })) {
    lock.unlock();
    expire(Clock::now());
    lock.lock();
  }
}

void Core::stop_janitor() {
  {
    std::lock_guard lock(janitor_mu_);
    janitor_stop_ = true;
  }
  janitor_wake_.notify_all();
  if (janitor_.joinable()) janitor_.join();
}

void Core::expire(Clock::time_point now) {
  std::vector<std::shared_ptr<GatewayState>> due;
  {
    std::lock_guard lock(mu_);
    for (auto it = gateways_.begin(); it != gateways_.end();) {
      GatewayState& gateway = *it->second;
      bool idle = false;
      {
        std::lock_guard state(gateway.mu);
        gateway.tombstones.sweep(now);
        gateway.forgotten.sweep(now);
        // Only this map refers to it (new references are made under mu_): no
        // link, no session.
        idle =
            it->second.use_count() == 1 && gateway.tombstones.empty() && gateway.forgotten.empty();
        if (!idle && gateway.next_expiry <= now) due.push_back(it->second);
      }
      it = idle ? gateways_.erase(it) : std::next(it);
    }
  }
  std::vector<std::shared_ptr<BatchSession>> ended;
  for (const auto& gateway : due) {
    std::lock_guard lock(mu_);
    std::lock_guard state(gateway->mu);
    expire_detached_locked(*gateway, now, ended);
  }
  for (const auto& session : ended) session->retire(false);
}

Frame Core::make_frame(int type, std::span<const std::byte> message, std::int32_t user_id) const {
  Frame frame;
  frame.set_type(static_cast<proto::Game::FrameType>(type));
  frame.set_message(reinterpret_cast<const char*>(message.data()), message.size());
  // The later generation carries the user id in every frame; the gonet2
  // gateway's Frame has no such field.
  if (options_.numbering == FrameNumbering::kLaterGeneration) frame.set_userid(user_id);
  return frame;
}

std::vector<StreamHandle> Core::streams() const {
  std::lock_guard lock(mu_);
  std::vector<StreamHandle> handles;
  handles.reserve(streams_.size());
  for (const auto& [id, reactor] : streams_) handles.push_back(reactor->handle());
  return handles;
}

std::size_t Core::stream_count() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

void Core::shutdown(std::chrono::milliseconds grace) {
  std::lock_guard serial(shutdown_mu_);
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  apply_many(std::nullopt, [](Endpoint& endpoint) {
    return endpoint.end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "game server shutting down"));
  });
  // Waits for every call to be done (over() included), cancelling those
  // still open at the deadline.
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  {
    // The calls cancelled at the deadline finish on the polling threads.
    std::unique_lock lock(calls_mu_);
    calls_over_.wait(lock, [this] { return calls_ == 0; });
  }
  // What is left on the queue are the requests for next calls, which fail.
  queue_->Shutdown();
  for (std::thread& poller : pollers_) poller.join();
  pollers_.clear();
  stop_janitor();  // its on_end calls, if any, are over too
}

}  // namespace gatehouse::game::detail
