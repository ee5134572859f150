// The two numberings of Game.FrameType on the wire (shared/protocol.md
// section 2): the gonet2 gateway's (Message=0, Kick=1, Ping=2) and the later
// game-service generation's (Message=0, Register=1, Kick=2, Ping=3). Proto3
// enums are plain ints on the wire, so one .proto serves both; this table
// says which int means what.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace gatehouse {

enum class FrameNumbering : std::uint32_t { kGonet2 = 0, kLaterGeneration = 1 };

struct FrameTypeValues {
  int message;
  int kick;
  int ping;
};

constexpr FrameTypeValues frame_type_values(FrameNumbering numbering) noexcept {
  return numbering == FrameNumbering::kGonet2 ? FrameTypeValues{0, 1, 2} : FrameTypeValues{0, 2, 3};
}

/// "gonet2" or "later".
constexpr std::optional<FrameNumbering> parse_frame_numbering(std::string_view text) noexcept {
  if (text == "gonet2") return FrameNumbering::kGonet2;
  if (text == "later") return FrameNumbering::kLaterGeneration;
  return std::nullopt;
}

constexpr std::string_view to_string(FrameNumbering numbering) noexcept {
  return numbering == FrameNumbering::kGonet2 ? "gonet2" : "later";
}

}  // namespace gatehouse
