// GameTestClient: the gateway's side of one GameService.Stream, for tests of
// game services (the fake and the demo). Sync gRPC API with a deadline on
// every stream, so a test that waits for a frame that never comes fails
// instead of hanging.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "game.grpc.pb.h"
#include "gatehouse/game/game_server.h"
#include "patience.h"

namespace gatehouse::testing {

/// A channel to 127.0.0.1:port that reconnects quickly (tests restart servers).
std::shared_ptr<grpc::Channel> make_game_channel(int port);

/// The bytes of a string literal or a frame's message.
game::Bytes to_bytes(std::string_view text);
/// `| proto i16 | body |`.
game::Bytes packet(std::int16_t proto, std::span<const std::byte> body);

class GameTestClient {
 public:
  /// A whole stream's bound: generous, as the tests run under sanitizers
  /// on busy machines.
  static constexpr std::chrono::seconds kDeadline = kPatience;

  /// Opens a stream with metadata userid = `userid` (none when nullopt: the
  /// tests of the metadata check send malformed ones too).
  GameTestClient(const std::shared_ptr<grpc::Channel>& channel, std::optional<std::string> userid);
  /// Convenience: userid = the decimal `user_id`.
  GameTestClient(const std::shared_ptr<grpc::Channel>& channel, std::int32_t user_id)
      : GameTestClient(channel, std::to_string(user_id)) {}

  /// Sends a frame of raw wire type `type` (Message is 0 in both numberings).
  bool send(std::span<const std::byte> message, int type = 0);
  /// The next frame; nullopt once the stream is over.
  std::optional<proto::Game::Frame> read();
  bool writes_done();
  /// Reads whatever is left, then the status.
  grpc::Status finish();
  void cancel();

 private:
  grpc::ClientContext context_;
  std::unique_ptr<proto::GameService::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<proto::Game::Frame, proto::Game::Frame>> stream_;
};

/// The raw wire value of a frame's type.
inline int type_of(const proto::Game::Frame& frame) {
  return static_cast<int>(frame.type());
}
/// A frame's message as bytes.
game::Bytes message_of(const proto::Game::Frame& frame);

}  // namespace gatehouse::testing
