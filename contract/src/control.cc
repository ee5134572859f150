#include "gatehouse/contract/control.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace gatehouse {

namespace {
constexpr std::pair<std::string_view, std::uint8_t> kCryptoNames[] = {
    {"clear", kCryptoClear}, {"legacy", kCryptoLegacy}, {"modern", kCryptoModern}};
}  // namespace

std::optional<std::uint8_t> parse_crypto_modes(std::string_view text) {
  if (text == "any") return kCryptoAny;
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
  if ((modes & kCryptoAny) == kCryptoAny) return "any";
  std::string text;
  for (const auto& [name, bit] : kCryptoNames) {
    if ((modes & bit) == 0) continue;
    if (!text.empty()) text += '+';
    text += name;
  }
  return text;
}

}  // namespace gatehouse
