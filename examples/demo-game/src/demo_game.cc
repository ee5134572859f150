#include "gatehouse/game/demo_game.h"

#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"

namespace gatehouse::game::demo {

std::optional<Bytes> echo_reply(std::span<const std::byte> message) {
  const auto packet = protocol::parse_server_payload(message);
  if (!packet || packet->proto != kPingReq) return std::nullopt;
  Bytes reply;
  reply.reserve(message.size());
  ByteWriter(reply).i16(kPingAck).bytes(packet->body);
  return reply;
}

Bytes encode_chat_say(std::string_view text) {
  Bytes out;
  ByteWriter(out).i16(kChatSay).string(text);
  return out;
}

Bytes encode_chat_hear(std::int32_t uid, std::string_view text) {
  Bytes out;
  ByteWriter(out).i16(kChatHear).i32(uid).string(text);
  return out;
}

std::optional<ChatHear> parse_chat_hear(std::span<const std::byte> message) {
  ByteReader reader(message);
  const std::int16_t proto = reader.i16();
  ChatHear hear{reader.i32(), std::string(reader.string())};
  if (!reader.ok() || proto != kChatHear) return std::nullopt;
  return hear;
}

void DemoGameHandler::on_open(StreamHandle stream) {
  log_line("stream " + std::to_string(static_cast<std::uint64_t>(stream.id())) + " open: user " +
           std::to_string(stream.user_id()));
}

void DemoGameHandler::on_message(StreamHandle stream, std::span<const std::byte> message) {
  const auto packet = protocol::parse_server_payload(message);
  if (!packet) {
    log_line("user " + std::to_string(stream.user_id()) + ": message shorter than a proto");
    return;
  }
  switch (packet->proto) {
    case kPingReq:
      if (const auto reply = echo_reply(message)) stream.push(*reply);
      return;
    case kChatSay: {
      ByteReader reader(packet->body);
      const std::string_view text = reader.string();
      if (!reader.ok()) {
        log_line("user " + std::to_string(stream.user_id()) + ": malformed chat_say");
        return;
      }
      stream.server().broadcast(encode_chat_hear(stream.user_id(), text));
      return;
    }
    case kKickMe:
      stream.kick();
      return;
    default:
      log_line("user " + std::to_string(stream.user_id()) + ": ignoring proto " +
               std::to_string(packet->proto));
      return;
  }
}

void DemoGameHandler::on_end(StreamHandle stream, bool client_half_closed) {
  log_line("stream " + std::to_string(static_cast<std::uint64_t>(stream.id())) + " end: user " +
           std::to_string(stream.user_id()) +
           (client_half_closed ? " (client left)" : " (ended by the game or cancelled)"));
}

void DemoGameHandler::log_line(const std::string& line) {
  if (log_ == nullptr) return;
  std::lock_guard lock(log_mu_);
  *log_ << "gatehouse-demo-game: " << line << '\n' << std::flush;
}

}  // namespace gatehouse::game::demo
