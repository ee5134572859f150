// Why a session ended. Every close has exactly one reason; it appears in the
// close log line, in metrics (as a bounded label value) and, where the
// gateway initiated it, it is the kick reason.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace gatehouse {

enum class CloseReason : std::uint8_t {
  kClientClosed = 0,    ///< the client closed or reset the connection
  kBadSeq,              ///< seq was not the number of frames received so far
  kUnknownProto,        ///< gateway proto (<= 1000) it does not handle
  kNotLoggedIn,         ///< a game proto (> 1000) before login
  kFrameTooLarge,       ///< a frame over the size limit (either direction)
  kBadBody,             ///< a payload or body that does not parse
  kRpmExceeded,         ///< more frames in a minute than the limit
  kSlowConsumer,        ///< the client does not read what is sent to it
  kKickedByGame,        ///< the game service sent Kick (or ended the stream)
  kBackendUnavailable,  ///< the game stream could not open or failed
  kReadTimeout,         ///< nothing received within the read deadline
  kShutdown,            ///< the gateway is draining
  kLoginFailed,         ///< login refused (reply 12 sent)
  kConnectionLimit,     ///< over the connection limit at accept
  kIoError,             ///< a socket error other than a clean close
  kCryptoRefused,       ///< clear traffic or a key exchange its listener does not allow
  kDecryptFailed,       ///< a modern payload that fails authentication
  kBpmExceeded,         ///< more payload bytes than the per-minute limit allows
  kLoginTimeout,        ///< no login within the login deadline after accept
  kPreloginExceeded,    ///< more frames or bytes before login than the budget
  kReplaced,            ///< the same user logged in again (duplicate-login = replace)
  kDuplicateLogin,      ///< the user is logged in already (duplicate-login = refuse)
  kUnknownGatewayKey,   ///< key_exchange2_req naming a key id the gateway does not hold
  kHandshakeFailed,     ///< TLS handshake or WebSocket upgrade failed or refused (origin)
  kTextFrame,           ///< a WebSocket text message (frames travel as binary messages)
  kKickedByAdmin,       ///< an operator kicked it (gatehousectl kick; docs/operations.md)
  kCount
};

std::string_view to_string(CloseReason reason) noexcept;
std::optional<CloseReason> close_reason_from(std::string_view name) noexcept;

}  // namespace gatehouse
