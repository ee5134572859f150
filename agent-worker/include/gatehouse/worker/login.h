// Login providers (docs/login.md; what each proves: docs/security.md). The
// gonet2 gateway logged everyone in as user 1; here login is an interface:
//   - AcceptAnyLogin: everyone gets in, with a user id derived from
//     open_udid. Proves nothing, and the 31-bit id collides: development
//     only (the supervisor refuses it on a non-loopback listener unless
//     login-any-allow-public).
//   - StaticTokenLogin: a table of token hashes (the login's
//     client_certificate) to user ids, read from a file at start.
//   - SignedTokenLogin: Ed25519-signed tokens naming the user id, an expiry
//     and an audience, verified with the configured public keys, no network
//     round trip.
//   - AuthServiceLogin: the studio's user centre decides (proto/auth.proto);
//     the worker only defers the login to it: the bridge makes the call and
//     its kAuthVerdict carries the answer (Worker::on(AuthVerdict)).
// Failed logins are limited by the worker (login_failures.h), not here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/contract/gateway_segment.h"
#include "gatehouse/contract/login_refusal.h"
#include "gatehouse/token/signed_token.h"

namespace gatehouse::worker {

struct LoginVerdict {
  std::int32_t uid = 0;                             ///< > 0: logged in as this user
  LoginRefusal refusal = LoginRefusal::kMalformed;  ///< when uid == 0
  /// A refused login's claimed user id (0: none), for the log.
  std::int32_t claimed_uid = 0;
  /// The failure counts against claimed_uid's failed-login bucket: only when
  /// the claim is authentic (a genuine signed token, expired or for another
  /// audience), so that nobody can lock another player out by naming them
  /// in forged tokens (docs/login.md, "Failed logins").
  bool counts_against_user = false;
  /// Neither yet: the auth service decides (uid == 0 meanwhile).
  bool deferred = false;

  static LoginVerdict ok(std::int32_t uid) {
    return {uid, LoginRefusal::kMalformed, 0, false, false};
  }
  static LoginVerdict refused(LoginRefusal why, std::int32_t claimed_uid = 0,
                              bool counts_against_user = false) {
    return {0, why, claimed_uid, counts_against_user, false};
  }
  static LoginVerdict defer() { return {0, LoginRefusal::kMalformed, 0, false, true}; }
};

class LoginProvider {
 public:
  virtual ~LoginProvider() = default;
  /// `now_unix_s`: the wall clock, for expiries.
  virtual LoginVerdict authenticate(const protocol::LoginRequest& login,
                                    std::int64_t now_unix_s) = 0;
};

class AcceptAnyLogin final : public LoginProvider {
 public:
  LoginVerdict authenticate(const protocol::LoginRequest& login, std::int64_t) override;
};

class StaticTokenLogin final : public LoginProvider {
 public:
  /// The hashed table (gatehouse/token/token_file.h); throws
  /// std::runtime_error naming the file and line on a bad entry.
  static StaticTokenLogin from_file(const std::string& path);
  explicit StaticTokenLogin(std::unordered_map<std::string, std::int32_t> hashes)
      : hashes_(std::move(hashes)) {}
  LoginVerdict authenticate(const protocol::LoginRequest& login, std::int64_t) override;

 private:
  std::unordered_map<std::string, std::int32_t> hashes_;  ///< token hash -> user id
};

class SignedTokenLogin final : public LoginProvider {
 public:
  explicit SignedTokenLogin(token::Verifier verifier) : verifier_(std::move(verifier)) {}
  LoginVerdict authenticate(const protocol::LoginRequest& login, std::int64_t now_unix_s) override;

 private:
  token::Verifier verifier_;
};

class AuthServiceLogin final : public LoginProvider {
 public:
  /// Defers every login with a credential; one without is malformed (no call).
  LoginVerdict authenticate(const protocol::LoginRequest& login, std::int64_t) override;
};

/// The provider the settings ask for; throws std::runtime_error when its
/// files cannot be read.
std::unique_ptr<LoginProvider> make_login_provider(const Settings& settings);

}  // namespace gatehouse::worker
