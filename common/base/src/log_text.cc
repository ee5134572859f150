#include "gatehouse/base/log_text.h"

#include <algorithm>
#include <cstdint>

namespace gatehouse {
namespace {

/// The length of the valid UTF-8 sequence at the start of `s` (2-4 bytes,
/// no overlong form, no surrogate, at most U+10FFFF) and its code point; 0
/// when there is none.
std::size_t utf8_sequence(std::string_view s, char32_t& code_point) {
  const auto byte = [&s](std::size_t i) { return static_cast<std::uint8_t>(s[i]); };
  const std::uint8_t lead = byte(0);
  std::size_t length = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, cp = lead & 0x1Fu, min = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, cp = lead & 0x0Fu, min = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, cp = lead & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (byte(i) & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  code_point = cp;
  return length;
}

/// Characters that are valid text but move or hide what a terminal or a log
/// viewer shows: C1 controls (U+009B is a CSI), line and paragraph
/// separators, bidirectional overrides and isolates.
bool invisible_control(char32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

void append_hex(std::string& out, std::uint8_t b) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  out += "\\x";
  out += kDigits[b >> 4];
  out += kDigits[b & 0xFu];
}

}  // namespace

std::string log_text(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 16);
  std::string piece;  // what the next input character becomes
  std::size_t at = 0;
  while (at < text.size()) {
    piece.clear();
    const auto b = static_cast<std::uint8_t>(text[at]);
    char32_t cp = 0;
    // A character of 2-4 bytes, taken whole; 0 for ASCII and for a byte that
    // is not UTF-8 (escaped alone, then the next byte resynchronises).
    const std::size_t n = b < 0x80 ? 0 : utf8_sequence(text.substr(at), cp);
    const std::size_t consumed = std::max<std::size_t>(n, 1);
    if (b == '\\' || b == '"' || b == '\'') {
      piece = {'\\', static_cast<char>(b)};
    } else if (b == '\n') {
      piece = "\\n";
    } else if (b == '\r') {
      piece = "\\r";
    } else if (b == '\t') {
      piece = "\\t";
    } else if (b < 0x20 || b == 0x7F || (b >= 0x80 && (n == 0 || invisible_control(cp)))) {
      for (std::size_t i = 0; i < consumed; ++i)
        append_hex(piece, static_cast<std::uint8_t>(text[at + i]));
    } else {
      piece = text.substr(at, consumed);
    }
    if (out.size() + piece.size() > max_bytes) break;
    out += piece;
    at += consumed;
  }
  if (at < text.size()) out += "...(+" + std::to_string(text.size() - at) + " bytes)";
  return out;
}

}  // namespace gatehouse
