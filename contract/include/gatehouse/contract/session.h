// Session: everything the gateway knows about one client connection, kept
// in the shared-memory session table (not in a worker's heap) so that a
// replacement worker picks the session up where a dead one left it. A POD:
// adding or changing a field changes the shm layout: layout.h's pins fail the
// build until kLayoutVersion is bumped. The cipher states are the crypto
// library's plain-data types, embedded by value and pinned in layout.h.
#pragma once

#include <cstdint>

#include "gatehouse/contract/control.h"
#include "gatehouse/crypto/legacy_crypto.h"
#include "gatehouse/crypto/modern_crypto.h"

namespace gatehouse {

struct Session {
  /// kLoginPending: authenticated, waiting for the bridge's verdict on a
  /// user logged in already (duplicate-login = refuse); not logged in yet.
  /// kAuthPending: its login is with the auth service (login = auth:), the
  /// bridge's kAuthVerdict says who it is; it has no user id or stream yet.
  enum State : std::uint32_t {
    kUnused = 0,
    kOpen = 1,
    kLoggedIn = 2,
    kClosed = 3,
    kLoginPending = 4,
    kAuthPending = 5
  };
  /// Set when the key exchange's ack has gone out (in clear).
  enum Crypto : std::uint32_t { kClear = 0, kLegacy = 1, kModern = 2 };

  State state;
  Crypto crypto;
  std::uint32_t rx_seq;  ///< client frames accepted; the next must carry rx_seq + 1
  std::uint32_t reserved0;
  /// The client's rate buckets (base/rate_limit.h; wall-clock ns): frames
  /// (rpm-limit, rpm-burst) and payload bytes (bpm-limit, bpm-burst).
  std::int64_t frames_tat_ns;
  std::int64_t bytes_tat_ns;
  std::int64_t opened_unix_ms;
  std::int64_t user_id;
  std::uint8_t address[16];  ///< remote IPv6 (IPv4-mapped for IPv4)
  std::uint16_t port;
  std::uint16_t listener;
  std::uint32_t reserved;
  std::uint64_t frames_in;
  std::uint64_t frames_out;
  std::uint64_t journal_batch;  ///< last worker batch that saved an undo image of it
  std::uint64_t game_seq_in;    ///< last game message delivered (batched links' Event.seq)
  /// The login's place among this gateway's logins (unix microseconds at
  /// login, times 64, plus the worker's index: unique, and later logins
  /// larger); game services get it with the stream (login-seq).
  std::uint64_t login_seq;
  union {
    struct {
      legacy::Rc4State decrypt;  ///< client -> gateway stream (key1)
      legacy::Rc4State encrypt;  ///< gateway -> client stream (key2)
    } legacy;
    struct {
      modern::AeadStream open;  ///< client -> gateway payloads
      modern::AeadStream seal;  ///< gateway -> client payloads
    } modern;
  } cipher;  ///< as `crypto` says
};

/// The listener setting's bit (CryptoModes) that allows a session's crypto.
constexpr std::uint8_t mode_of(Session::Crypto crypto) noexcept {
  return static_cast<std::uint8_t>(1u << crypto);
}
static_assert(mode_of(Session::kClear) == kCryptoClear &&
              mode_of(Session::kLegacy) == kCryptoLegacy &&
              mode_of(Session::kModern) == kCryptoModern);

}  // namespace gatehouse
