#include "gatehouse/worker/login.h"

#include "gatehouse/token/key_files.h"
#include "gatehouse/token/token_file.h"

namespace gatehouse::worker {

LoginVerdict AcceptAnyLogin::authenticate(const protocol::LoginRequest& login, std::int64_t) {
  if (login.open_udid.empty()) return LoginVerdict::refused(LoginRefusal::kNoDevice);
  // FNV-1a: stable across processes, builds and restarts (std::hash is not).
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char ch : login.open_udid) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ull;
  }
  return LoginVerdict::ok(static_cast<std::int32_t>(h % 0x7FFF'FFFEu) + 1);  // [1, 2^31 - 1]
}

StaticTokenLogin StaticTokenLogin::from_file(const std::string& path) {
  return StaticTokenLogin(token::read_token_file(path));
}

LoginVerdict StaticTokenLogin::authenticate(const protocol::LoginRequest& login, std::int64_t) {
  if (login.client_certificate.empty()) return LoginVerdict::refused(LoginRefusal::kMalformed);
  const auto it = hashes_.find(token::hash_token(login.client_certificate));
  if (it == hashes_.end()) return LoginVerdict::refused(LoginRefusal::kUnknownToken);
  return LoginVerdict::ok(it->second);
}

LoginVerdict SignedTokenLogin::authenticate(const protocol::LoginRequest& login,
                                            std::int64_t now_unix_s) {
  const token::Verdict v = verifier_.verify(login.client_certificate, now_unix_s);
  if (v.ok) return LoginVerdict::ok(v.uid);
  switch (v.refusal) {
    case token::Refusal::kMalformed:
      return LoginVerdict::refused(LoginRefusal::kMalformed);
    case token::Refusal::kUnknownKey:
      return LoginVerdict::refused(LoginRefusal::kUnknownKey, v.uid);
    case token::Refusal::kBadSignature:
      return LoginVerdict::refused(LoginRefusal::kBadSignature, v.uid);
    case token::Refusal::kExpired:
      return LoginVerdict::refused(LoginRefusal::kExpired, v.uid, true);
    case token::Refusal::kWrongAudience:
      return LoginVerdict::refused(LoginRefusal::kWrongAudience, v.uid, true);
  }
  return LoginVerdict::refused(LoginRefusal::kMalformed);
}

LoginVerdict AuthServiceLogin::authenticate(const protocol::LoginRequest& login, std::int64_t) {
  if (login.client_certificate.empty()) return LoginVerdict::refused(LoginRefusal::kMalformed);
  return LoginVerdict::defer();
}

std::unique_ptr<LoginProvider> make_login_provider(const Settings& settings) {
  switch (settings.login_mode) {
    case LoginMode::kStaticTokens:
      return std::make_unique<StaticTokenLogin>(StaticTokenLogin::from_file(settings.login_file));
    case LoginMode::kSignedTokens:
      return std::make_unique<SignedTokenLogin>(
          token::Verifier(token::read_public_keys(settings.login_file), settings.login_audience));
    case LoginMode::kAuthService:
      return std::make_unique<AuthServiceLogin>();
    case LoginMode::kAcceptAny:
      break;
  }
  return std::make_unique<AcceptAnyLogin>();
}

}  // namespace gatehouse::worker
