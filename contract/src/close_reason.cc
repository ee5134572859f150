#include "gatehouse/contract/close_reason.h"

#include <array>

namespace gatehouse {
namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(CloseReason::kCount)> kNames = {
    "client_closed",
    "bad_seq",
    "unknown_proto",
    "not_logged_in",
    "frame_too_large",
    "bad_body",
    "rpm_exceeded",
    "slow_consumer",
    "kicked_by_game",
    "backend_unavailable",
    "read_timeout",
    "shutdown",
    "login_failed",
    "connection_limit",
    "io_error",
    "crypto_refused",
    "decrypt_failed",
    "bpm_exceeded",
    "login_timeout",
    "prelogin_exceeded",
    "replaced",
    "duplicate_login",
    "unknown_gateway_key",
    "handshake_failed",
    "text_frame",
    "kicked_by_admin"};

}  // namespace

std::string_view to_string(CloseReason reason) noexcept {
  const auto i = static_cast<std::size_t>(reason);
  return i < kNames.size() ? kNames[i] : "unknown";
}

std::optional<CloseReason> close_reason_from(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<CloseReason>(i);
  }
  return std::nullopt;
}

}  // namespace gatehouse
