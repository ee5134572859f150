// DemoAuth: the demo's user centre. It answers gatehouse.auth.Auth.Login
// (proto/auth.proto), the check the gateway makes per login with
// `login = auth:HOST:PORT`, so that the demo and the gateway's tests have a
// real service to call. Serve it on a GameServer's port:
//
//   DemoAuth auth({}, &std::cerr);
//   GameServerOptions options;
//   options.services.push_back(auth.service());
//   GameServer server(handler, std::move(options));  // auth outlives server
//
// The credential (LoginRequest.client_certificate) is `NAME:PASSWORD` (split
// at the first ':'). The first login of a NAME registers the account: it
// gets the next user id (1001, 1002, ...; never reused) and a hash of the
// password. Later logins of NAME must give the same password: OK with the
// account's id, else REFUSED with claimed_user_id = that id ("wrong
// password"). A credential without ':', with an empty NAME or PASSWORD, a
// NAME over kMaxNameBytes or a PASSWORD over kMaxPasswordBytes is REFUSED
// with claimed_user_id 0; so is a new NAME once max_accounts exist ("full").
//
// A demo, not a user centre: accounts live in memory only (a restart forgets
// them), anyone may register any free NAME, and the password hash
// (libsodium's crypto_pwhash_str, Argon2id at its minimum limits, so that a
// login costs microseconds on a gRPC thread) is far weaker than a real
// service's.
//
// Test knobs (also settable while serving): `delay` holds each reply (but
// kUnavailable's) that long without holding a thread (a grpc::Alarm per held call; the account
// is decided, and logged, when the call arrives); Mode::kRefuseAll refuses
// every login; Mode::kUnavailable fails every call with UNAVAILABLE, a user
// centre that is down while the game is up. A GameServer without the service
// answers Auth calls UNIMPLEMENTED (gatehouse-demo-game --no-auth).
//
// Thread-safe. Runs on gRPC's callback threads; nothing in it blocks beyond a
// short mutex and one hash.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace grpc {
class Service;
}

namespace gatehouse::game::demo {

class DemoAuth {
 public:
  static constexpr std::size_t kMaxNameBytes = 64;
  static constexpr std::size_t kMaxPasswordBytes = 1024;
  static constexpr std::int32_t kFirstUserId = 1001;

  enum class Mode : std::uint8_t {
    kServe,        ///< register / check as above
    kRefuseAll,    ///< REFUSED "refusing every login", claimed 0
    kUnavailable,  ///< every call fails with grpc UNAVAILABLE
  };

  struct Options {
    /// How late each reply is sent; 0 = at once.
    std::chrono::milliseconds delay{0};
    Mode mode = Mode::kServe;
    /// Accounts at most; a new NAME beyond it is REFUSED "full".
    std::size_t max_accounts = 100000;
  };

  /// What Login answers (LoginReply's fields), for a credential.
  struct Verdict {
    bool ok = false;
    std::int32_t user_id = 0;          ///< ok: the account's id
    std::int32_t claimed_user_id = 0;  ///< !ok: the account the NAME named, or 0
    std::string detail;                ///< !ok: why
    bool registered = false;           ///< ok: this login made the account
  };

  /// `log` gets one line per Login (never the password); nullptr keeps
  /// quiet. Throws std::runtime_error when libsodium cannot start, or
  /// std::invalid_argument when max_accounts would run the ids past int32.
  DemoAuth(Options options, std::ostream* log);
  ~DemoAuth();
  DemoAuth(const DemoAuth&) = delete;
  DemoAuth& operator=(const DemoAuth&) = delete;

  /// The gatehouse.auth.Auth service (callback API), for
  /// GameServerOptions::services or any grpc::ServerBuilder.
  grpc::Service* service() noexcept;

  /// The check Login makes, without gRPC or the mode and delay: registers or
  /// verifies.
  Verdict check(std::string_view credential);

  void set_delay(std::chrono::milliseconds delay) noexcept;
  void set_mode(Mode mode) noexcept;

  /// Accounts registered so far.
  std::size_t accounts() const;
  /// Login calls received so far (whatever became of them).
  std::uint64_t calls() const noexcept;
  /// Replies being held by the delay right now.
  std::size_t held() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gatehouse::game::demo
