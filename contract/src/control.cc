#include "gatehouse/contract/control.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace gatehouse {

namespace {
constexpr std::pair<std::string_view, std::uint8_t> kCryptoNames[] = {
    {"clear", kCryptoClear},
    {"legacy", kCryptoLegacy},
    {"modern", kCryptoModern},
    {"modern1", kCryptoModern1},
    {"any", kCryptoAny}};  // last: crypto_modes_text() names the others first
constexpr std::string_view kHttp = "http://";
constexpr std::string_view kHttps = "https://";
}  // namespace

std::optional<std::uint8_t> parse_crypto_modes(std::string_view text) {
  std::uint8_t modes = 0;
  while (!text.empty()) {
    const std::size_t plus = text.find('+');
    const std::string_view name = text.substr(0, plus);
    const auto* it = std::find_if(std::begin(kCryptoNames), std::end(kCryptoNames),
                                  [&](const auto& n) { return n.first == name; });
    if (it == std::end(kCryptoNames)) return std::nullopt;
    modes |= it->second;
    text = plus == std::string_view::npos ? std::string_view{} : text.substr(plus + 1);
    if (plus != std::string_view::npos && text.empty()) return std::nullopt;  // "modern+"
  }
  if (modes == 0) return std::nullopt;
  return modes;
}

std::string crypto_modes_text(std::uint8_t modes) {
  std::string text;
  if ((modes & kCryptoAny) == kCryptoAny) {
    text = "any";
    modes &= static_cast<std::uint8_t>(~kCryptoAny);
  }
  for (const auto& [name, bit] : kCryptoNames) {
    if ((modes & bit) == 0 || bit == kCryptoAny) continue;
    if (!text.empty()) text += '+';
    text += name;
  }
  return text;
}

std::vector<std::string_view> crypto_mode_names(std::uint8_t modes) {
  std::vector<std::string_view> names;
  for (const auto& [name, bit] : kCryptoNames) {
    if ((modes & bit) != 0 && bit != kCryptoAny) names.push_back(name);
  }
  return names;
}

std::optional<ProxyMode> parse_proxy_mode(std::string_view text) {
  for (const ProxyMode mode :
       {ProxyMode::kNone, ProxyMode::kV1, ProxyMode::kV2, ProxyMode::kOptional}) {
    if (text == proxy_mode_text(mode)) return mode;
  }
  return std::nullopt;
}

std::string_view proxy_mode_text(ProxyMode mode) {
  switch (mode) {
    case ProxyMode::kNone:
      return "none";
    case ProxyMode::kV1:
      return "v1";
    case ProxyMode::kV2:
      return "v2";
    case ProxyMode::kOptional:
      return "optional";
  }
  return "?";
}

std::optional<EtcdApi> parse_etcd_api(std::string_view text) {
  for (const EtcdApi api : {EtcdApi::kV3, EtcdApi::kV2}) {
    if (text == etcd_api_text(api)) return api;
  }
  return std::nullopt;
}

std::string_view etcd_api_text(EtcdApi api) {
  switch (api) {
    case EtcdApi::kV3:
      return "v3";
    case EtcdApi::kV2:
      return "v2";
  }
  return "?";
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::vector<std::string> parse_etcd_endpoints(std::string_view hosts, std::string* error) {
  std::vector<std::string> out;
  for (std::string host : split_list(hosts)) {
    if (host.starts_with(kHttps)) {
      *error =
          "etcd-hosts: " + host + ": https is not supported (use http:// on a trusted network)";
      return {};
    }
    if (host.starts_with(kHttp)) host.erase(0, kHttp.size());
    while (!host.empty() && host.back() == '/') host.pop_back();
    if (host.find(':') == std::string::npos || host.find('/') != std::string::npos) {
      *error = "etcd-hosts: '" + host + "' is not http://HOST:PORT";
      return {};
    }
    out.push_back(std::move(host));
  }
  if (out.empty()) *error = "etcd-hosts names no endpoint";
  return out;
}

std::string game_service_of(std::string_view services, std::string_view game_service) {
  constexpr std::string_view kGonet2Game = "game-10000";
  const std::vector<std::string> names = split_list(services);
  const auto named = [&](std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  if (!game_service.empty()) return named(game_service) ? std::string(game_service) : "";
  if (names.size() == 1) return names.front();
  return named(kGonet2Game) ? std::string(kGonet2Game) : "";
}

}  // namespace gatehouse
