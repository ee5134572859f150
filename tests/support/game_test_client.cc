#include "game_test_client.h"

#include "gatehouse/codec/byte_io.h"

namespace gatehouse::testing {

std::shared_ptr<grpc::Channel> make_game_channel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  // A private subchannel, so that tests in one process do not share a
  // connection (and its state) through gRPC's global subchannel pool.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

game::Bytes to_bytes(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return {p, p + text.size()};
}

game::Bytes packet(std::int16_t proto, std::span<const std::byte> body) {
  game::Bytes out;
  ByteWriter(out).i16(proto).bytes(body);
  return out;
}

game::Bytes message_of(const proto::Game::Frame& frame) {
  return to_bytes(frame.message());
}

GameTestClient::GameTestClient(const std::shared_ptr<grpc::Channel>& channel,
                               std::optional<std::string> userid) {
  if (userid) context_.AddMetadata("userid", *userid);
  context_.set_deadline(std::chrono::system_clock::now() + kDeadline);
  stub_ = proto::GameService::NewStub(channel);
  stream_ = stub_->Stream(&context_);
}

bool GameTestClient::send(std::span<const std::byte> message, int type) {
  proto::Game::Frame frame;
  frame.set_type(static_cast<proto::Game::FrameType>(type));
  frame.set_message(reinterpret_cast<const char*>(message.data()), message.size());
  return stream_->Write(frame);
}

std::optional<proto::Game::Frame> GameTestClient::read() {
  proto::Game::Frame frame;
  if (!stream_->Read(&frame)) return std::nullopt;
  return frame;
}

bool GameTestClient::writes_done() {
  return stream_->WritesDone();
}

grpc::Status GameTestClient::finish() {
  while (read()) {
  }
  return stream_->Finish();
}

void GameTestClient::cancel() {
  context_.TryCancel();
}

}  // namespace gatehouse::testing
