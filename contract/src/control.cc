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

}  // namespace gatehouse
