#include "gatehouse/kcp/segment.h"

namespace gatehouse::kcp {

namespace {

std::uint32_t load32(std::span<const std::byte> bytes, std::size_t at) noexcept {
  return static_cast<std::uint32_t>(bytes[at]) | static_cast<std::uint32_t>(bytes[at + 1]) << 8 |
         static_cast<std::uint32_t>(bytes[at + 2]) << 16 |
         static_cast<std::uint32_t>(bytes[at + 3]) << 24;
}

void store32(std::span<std::byte, kHeaderBytes> out, std::size_t at, std::uint32_t value) noexcept {
  for (std::size_t i = 0; i < 4; ++i) out[at + i] = static_cast<std::byte>(value >> (8 * i));
}

bool known(std::uint8_t cmd) noexcept {
  return cmd >= static_cast<std::uint8_t>(Command::kPush) &&
         cmd <= static_cast<std::uint8_t>(Command::kWindowTell);
}

}  // namespace

std::string_view name_of(InputStatus status) noexcept {
  switch (status) {
    case InputStatus::kAccepted:
      return "accepted";
    case InputStatus::kTruncated:
      return "truncated segment";
    case InputStatus::kWrongConv:
      return "wrong conv";
    case InputStatus::kUnknownCommand:
      return "unknown command";
    case InputStatus::kLengthBeyondData:
      return "length beyond the datagram";
    case InputStatus::kPayloadTooLarge:
      return "payload too large";
    case InputStatus::kFragmented:
      return "fragment in stream mode";
    case InputStatus::kPayloadOnControl:
      return "payload on a control segment";
    case InputStatus::kAckBeyondSent:
      return "ack of a segment not sent";
    case InputStatus::kUnaBeyondSent:
      return "una beyond what was sent";
  }
  return "unknown status";
}

void encode_header(const SegmentHeader& header, std::span<std::byte, kHeaderBytes> out) noexcept {
  store32(out, 0, header.conv);
  out[4] = static_cast<std::byte>(header.cmd);
  out[5] = static_cast<std::byte>(header.frg);
  out[6] = static_cast<std::byte>(header.wnd & 0xFFU);
  out[7] = static_cast<std::byte>(header.wnd >> 8);
  store32(out, 8, header.ts);
  store32(out, 12, header.sn);
  store32(out, 16, header.una);
  store32(out, 20, header.len);
}

std::optional<SegmentHeader> decode_header(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < kHeaderBytes) return std::nullopt;
  SegmentHeader h;
  h.conv = load32(bytes, 0);
  h.cmd = static_cast<Command>(bytes[4]);
  h.frg = static_cast<std::uint8_t>(bytes[5]);
  h.wnd = static_cast<std::uint16_t>(static_cast<unsigned>(bytes[6]) |
                                     static_cast<unsigned>(bytes[7]) << 8);
  h.ts = load32(bytes, 8);
  h.sn = load32(bytes, 12);
  h.una = load32(bytes, 16);
  h.len = load32(bytes, 20);
  return h;
}

std::optional<std::uint32_t> peek_conv(std::span<const std::byte> datagram) noexcept {
  if (datagram.size() < kHeaderBytes) return std::nullopt;
  return load32(datagram, 0);
}

InputStatus validate_datagram(std::span<const std::byte> datagram, std::uint32_t conv) noexcept {
  // An empty datagram is truncated too: there is no segment in it.
  do {
    const auto header = decode_header(datagram);
    if (!header) return InputStatus::kTruncated;
    if (header->conv != conv) return InputStatus::kWrongConv;
    if (!known(static_cast<std::uint8_t>(header->cmd))) return InputStatus::kUnknownCommand;
    if (header->len > kMaxSegmentPayload) return InputStatus::kPayloadTooLarge;
    if (header->len > datagram.size() - kHeaderBytes) return InputStatus::kLengthBeyondData;
    if (header->frg != 0) return InputStatus::kFragmented;
    if (header->cmd != Command::kPush && header->len != 0) return InputStatus::kPayloadOnControl;
    datagram = datagram.subspan(kHeaderBytes + header->len);
  } while (!datagram.empty());
  return InputStatus::kAccepted;
}

bool is_session_opener(std::span<const std::byte> datagram) noexcept {
  const auto first = decode_header(datagram);
  if (!first || validate_datagram(datagram, first->conv) != InputStatus::kAccepted) return false;
  return first->cmd == Command::kPush && first->sn == 0 && first->una == 0 && first->len > 0;
}

}  // namespace gatehouse::kcp
