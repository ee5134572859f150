#include "gatehouse/worker/login.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace gatehouse::worker {

std::optional<std::int32_t> AcceptAnyLogin::authenticate(const protocol::LoginRequest& login) {
  if (login.open_udid.empty()) return std::nullopt;
  // FNV-1a: stable across processes, builds and restarts (std::hash is not).
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char ch : login.open_udid) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ull;
  }
  return static_cast<std::int32_t>(h % 0x7FFF'FFFEu) + 1;  // [1, 2^31 - 1]
}

StaticTokenLogin StaticTokenLogin::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read login token file " + path);
  std::unordered_map<std::string, std::int32_t> tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream fields(line);
    std::string token;
    long long uid = 0;
    if (!(fields >> token) || token[0] == '#') continue;
    std::string extra;
    if (!(fields >> uid) || uid <= 0 || uid > 0x7FFF'FFFF || (fields >> extra)) {
      throw std::runtime_error(path + ":" + std::to_string(number) +
                               ": expected '<token> <user id 1..2147483647>'");
    }
    tokens[token] = static_cast<std::int32_t>(uid);
  }
  return StaticTokenLogin(std::move(tokens));
}

std::optional<std::int32_t> StaticTokenLogin::authenticate(const protocol::LoginRequest& login) {
  const auto it = tokens_.find(std::string(login.client_certificate));
  if (it == tokens_.end()) return std::nullopt;
  return it->second;
}

std::unique_ptr<LoginProvider> make_login_provider(const Settings& settings) {
  switch (settings.login_mode) {
    case LoginMode::kStaticTokens:
      return std::make_unique<StaticTokenLogin>(StaticTokenLogin::from_file(settings.login_file));
    case LoginMode::kAcceptAny:
      break;
  }
  return std::make_unique<AcceptAnyLogin>();
}

}  // namespace gatehouse::worker
