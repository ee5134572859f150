// The demo game: the example game protocol (protos above 1000, which the
// gateway forwards) and the GameHandler that gatehouse-demo-game runs.
//
//   proto  name            body (big-endian)              the game answers
//   1001   proto_ping_req  anything                       1002 proto_ping_ack, same body, to the
//   sender 1003   chat_say        text string                    1004 chat_hear to every stream
//   1004   chat_hear       uid int32, text string         (game -> client only)
//   1005   kick_me         anything                       Kick frame to the sender, stream ends
//
// `string` = | len u16 | bytes |, as everywhere in the gonet2 protocols.
// Anything else is logged and ignored.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include "gatehouse/game/game_server.h"

namespace gatehouse::game::demo {

enum Proto : std::int16_t {
  kPingReq = 1001,
  kPingAck = 1002,
  kChatSay = 1003,
  kChatHear = 1004,
  kKickMe = 1005,
};

/// `| 1002 | body |` for a `| 1001 | body |` message; nullopt for anything
/// else. The echo every example game service answers (the demo, the tests'
/// fake game service).
std::optional<Bytes> echo_reply(std::span<const std::byte> message);

/// `| 1003 | text string |`, as a client sends it.
Bytes encode_chat_say(std::string_view text);
/// `| 1004 | uid int32 | text string |`, as the game broadcasts it.
Bytes encode_chat_hear(std::int32_t uid, std::string_view text);
struct ChatHear {
  std::int32_t uid;
  std::string text;
};
/// The inverse of encode_chat_hear; nullopt when it is not a well-formed 1004.
std::optional<ChatHear> parse_chat_hear(std::span<const std::byte> message);

class DemoGameHandler final : public GameHandler {
 public:
  /// `log` receives one line per stream open/end and per ignored message;
  /// nullptr keeps quiet. Lines are written whole (under a mutex).
  explicit DemoGameHandler(std::ostream* log) noexcept : log_(log) {}

  void on_open(StreamHandle stream) override;
  void on_message(StreamHandle stream, std::span<const std::byte> message) override;
  void on_end(StreamHandle stream, bool client_half_closed) override;

 private:
  void log_line(const std::string& line);

  std::ostream* const log_;
  std::mutex log_mu_;
};

}  // namespace gatehouse::game::demo
