#include "gatehouse/bridge/call_on_queue.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <limits>

#include "gatehouse/codec/game_link_limits.h"

namespace gatehouse::bridge {

/// A game service that comes back is used again within ~2 s (gRPC's default
/// reconnect backoff grows to 2 minutes); sessions that log in while it is
/// down are kicked at once (backend_unavailable) rather than kept waiting.
/// gRPC C-core uses the "min reconnect backoff" as the deadline of each
/// connection attempt, HTTP/2 handshake included: at 100 ms a game service
/// busy for a moment failed every stream opened meanwhile (seen under ASan on
/// a loaded CI machine), so it gets 5 s.
std::shared_ptr<grpc::Channel> game_channel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // The bridge keeps every game service's channel connected, calls or not
  // (Upstream::reachable()): gRPC's idle timeout (30 min) would drop it,
  // and /ready with it, until the next check connected it again.
  args.SetInt(GRPC_ARG_CLIENT_IDLE_TIMEOUT_MS, std::numeric_limits<int>::max());
  // Explicit, and the same as gw::game_server's: a game keeps its messages
  // (batches, frames) within them (game_link_limits.h).
  args.SetMaxReceiveMessageSize(static_cast<int>(game_link::kMaxMessageBytes));
  args.SetMaxSendMessageSize(static_cast<int>(game_link::kMaxMessageBytes));
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

CallQueue::CallQueue() {
  thread_ = std::thread([this] {
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
      const auto* t = static_cast<CallOnQueue::Tag*>(tag);
      t->call->on_completion(t->op, ok);
    }
  });
}

CallQueue::~CallQueue() {
  wait_for_calls();
  queue_.Shutdown();
  if (thread_.joinable()) thread_.join();
}

void CallQueue::wait_for_calls() {
  std::unique_lock lock(mutex_);
  calls_over_.wait(lock, [this] { return calls_live_ == 0; });
}

void CallQueue::wait_for_calls(const CallGroup& group) {
  std::unique_lock lock(mutex_);
  calls_over_.wait(lock, [&group] { return group.live_ == 0; });
}

std::size_t CallQueue::calls_live(const CallGroup& group) {
  std::lock_guard lock(mutex_);
  return group.live_;
}

void CallQueue::call_began(CallGroup& group) {
  std::lock_guard lock(mutex_);
  ++calls_live_;
  ++group.live_;
}

void CallQueue::call_ended(CallGroup& group) {
  std::lock_guard lock(mutex_);
  --calls_live_;
  --group.live_;
  calls_over_.notify_all();
}

}  // namespace gatehouse::bridge
