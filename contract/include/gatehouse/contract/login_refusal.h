// Why a login was refused: the `reason` of the refusal's log line and of
// gatehouse_logins_total{result="refused"} (docs/login.md). Counted per
// reason in each worker's metrics shard, so the numbering is in the layout.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace gatehouse {

enum class LoginRefusal : std::uint8_t {
  kMalformed = 0,    ///< the credential is not a token of the provider's format
  kUnknownKey,       ///< signed: a key id the gateway holds no key for
  kBadSignature,     ///< signed: the signature does not verify
  kExpired,          ///< signed: past its expiry
  kWrongAudience,    ///< signed: minted for another audience
  kUnknownToken,     ///< tokens: not in the table
  kNoDevice,         ///< any: no open_udid to derive an id from
  kAlreadyLoggedIn,  ///< a second login on a logged-in session
  kAddressBackoff,   ///< too many failed logins from the address: not checked
  kUserBackoff,      ///< too many failed logins for the user id: not let in
  kDuplicateLogin,   ///< the user is logged in already (duplicate-login = refuse)
  kAuthRefused,      ///< auth: the auth service said no
  kAuthTimeout,      ///< auth: no answer within auth-timeout
  kAuthBusy,         ///< auth: auth-max-inflight calls were in flight already
  kAuthUnavailable,  ///< auth: the call failed (the service is down, or gave no valid answer)
  kCount
};

inline constexpr std::array<std::string_view, static_cast<std::size_t>(LoginRefusal::kCount)>
    kLoginRefusalNames = {"malformed",    "unknown_key",       "bad_signature",
                          "expired",      "wrong_audience",    "unknown_token",
                          "no_device",    "already_logged_in", "address_backoff",
                          "user_backoff", "duplicate_login",   "auth_refused",
                          "auth_timeout", "auth_busy",         "auth_unavailable"};

/// Whether the refusal counts as a failed login (docs/login.md, "Failed
/// logins"): not when the auth service could not say anything about the
/// credential (a slow, busy or absent user centre is not the client's doing,
/// and counting it would lock everyone out during an outage).
constexpr bool is_failed_login(LoginRefusal refusal) noexcept {
  return refusal != LoginRefusal::kAuthTimeout && refusal != LoginRefusal::kAuthBusy &&
         refusal != LoginRefusal::kAuthUnavailable;
}

constexpr std::string_view to_string(LoginRefusal refusal) noexcept {
  const auto i = static_cast<std::size_t>(refusal);
  return i < kLoginRefusalNames.size() ? kLoginRefusalNames[i] : "unknown";
}

}  // namespace gatehouse
