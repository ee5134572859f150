// GameServer (gatehouse/game/game_server.h) on gRPC's completion-queue API:
// one StreamReactor per gonet2 call, one BatchLink per batched call (each
// session on it a BatchSession, kept per gateway-id in a GatewayState so that
// it can outlive the link), a registry of live sessions of both kinds
// (Endpoint), and a small state machine per call. The server's own threads
// (GameServerOptions::threads) poll the queue and run each completion, and
// the handler's calls, inline: with the callback API, gRPC polled on threads
// of its own and handed every completion to another, a wakeup each way per
// message.
//
// This file is the facade; the parts, in gatehouse::game::detail:
//
//   async_call.h      Endpoint (a session, as the registry sees it), Decision,
//                     AsyncCall (one call and its completion tags)
//   server_core.*     Core: the gRPC server, the threads polling its queue,
//                     the registry, the janitor, shutdown; the lock order
//   stream_reactor.*  the gonet2 contract: StreamReactor, one per Stream
//                     call, and its ownership rules
//   batch_session.*   the batched contract: its rules, GatewayState (one
//                     gateway-id's sessions), BatchSession, deferred on_end
//   batch_link.*      BatchLink, one per Batches() call: writes, acks,
//                     re-sends and de-duplication
#include "gatehouse/game/game_server.h"

#include <utility>

#include "server_core.h"

namespace gatehouse::game {

bool StreamHandle::push(std::span<const std::byte> message) const {
  return server_->push(id_, message);
}
bool StreamHandle::kick() const {
  return server_->kick(id_);
}
bool StreamHandle::finish(grpc::Status status) const {
  return server_->finish(id_, std::move(status));
}

using detail::Core;
using detail::Endpoint;

struct GameServer::Impl {
  Impl(GameServer& owner, GameHandler& handler, GameServerOptions options)
      : core(owner, handler, std::move(options)) {}
  Core core;
};

GameServer::GameServer(GameHandler& handler, GameServerOptions options)
    : impl_(std::make_unique<Impl>(*this, handler, std::move(options))) {}

GameServer::~GameServer() {
  shutdown();
}

int GameServer::port() const noexcept {
  return impl_->core.port();
}
FrameNumbering GameServer::numbering() const noexcept {
  return impl_->core.numbering();
}

bool GameServer::push(StreamId stream, std::span<const std::byte> message) {
  Core& core = impl_->core;
  if (!core.fits(message)) return false;
  return core.apply_one(stream, [&](Endpoint& endpoint) { return endpoint.push(message); });
}

std::size_t GameServer::push_to_user(std::int32_t user_id, std::span<const std::byte> message) {
  Core& core = impl_->core;
  if (!core.fits(message)) return 0;
  return core.apply_many(user_id, [&](Endpoint& endpoint) { return endpoint.push(message); });
}

std::size_t GameServer::broadcast(std::span<const std::byte> message) {
  Core& core = impl_->core;
  if (!core.fits(message)) return 0;
  return core.apply_many(std::nullopt, [&](Endpoint& endpoint) { return endpoint.push(message); });
}

bool GameServer::kick(StreamId stream) {
  return impl_->core.apply_one(stream, [](Endpoint& endpoint) { return endpoint.kick(); });
}

std::size_t GameServer::kick_user(std::int32_t user_id) {
  return impl_->core.apply_many(user_id, [](Endpoint& endpoint) { return endpoint.kick(); });
}

bool GameServer::finish(StreamId stream, grpc::Status status) {
  return impl_->core.apply_one(stream,
                               [&](Endpoint& endpoint) { return endpoint.end(std::move(status)); });
}

std::size_t GameServer::finish_user(std::int32_t user_id, const grpc::Status& status) {
  return impl_->core.apply_many(user_id, [&](Endpoint& endpoint) { return endpoint.end(status); });
}

std::uint64_t GameServer::oversize_refused() const noexcept {
  return impl_->core.oversize_refused();
}

std::vector<StreamHandle> GameServer::streams() const {
  return impl_->core.streams();
}
std::size_t GameServer::stream_count() const {
  return impl_->core.stream_count();
}

void GameServer::shutdown(std::chrono::milliseconds grace) {
  impl_->core.shutdown(grace);
}

}  // namespace gatehouse::game
