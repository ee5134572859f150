// Login providers. The gonet2 gateway logged everyone in as user 1; here
// login is an interface:
//   - AcceptAnyLogin: everyone gets in, with a stable user id derived from
//     open_udid (the same device always gets the same id);
//   - StaticTokenLogin: a table of tokens (the login's client_certificate)
//     to user ids, read from a file at start, for the demo and tests.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/contract/gateway_segment.h"

namespace gatehouse::worker {

class LoginProvider {
 public:
  virtual ~LoginProvider() = default;
  /// The user id, or nullopt when the login is refused.
  virtual std::optional<std::int32_t> authenticate(const protocol::LoginRequest& login) = 0;
};

class AcceptAnyLogin final : public LoginProvider {
 public:
  std::optional<std::int32_t> authenticate(const protocol::LoginRequest& login) override;
};

class StaticTokenLogin final : public LoginProvider {
 public:
  /// File format: one `<token> <user id>` per line; blank lines and lines
  /// starting with '#' are ignored. Throws std::runtime_error naming the file
  /// and line on a bad entry.
  static StaticTokenLogin from_file(const std::string& path);
  explicit StaticTokenLogin(std::unordered_map<std::string, std::int32_t> tokens)
      : tokens_(std::move(tokens)) {}
  std::optional<std::int32_t> authenticate(const protocol::LoginRequest& login) override;

 private:
  std::unordered_map<std::string, std::int32_t> tokens_;
};

/// The provider the settings ask for.
std::unique_ptr<LoginProvider> make_login_provider(const Settings& settings);

}  // namespace gatehouse::worker
