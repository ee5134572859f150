#include "gatehouse/codec/client_protocol.h"

#include "gatehouse/codec/byte_io.h"

namespace gatehouse::protocol {

FrameScan scan_frame(std::span<const std::byte> buffer, std::size_t max_payload) noexcept {
  if (buffer.size() < kSizeBytes) return {FrameScan::kNeedMore, 0};
  const std::size_t size = load_u16(buffer.data());
  if (size > max_payload) return {FrameScan::kTooLarge, size};
  if (buffer.size() < kSizeBytes + size) return {FrameScan::kNeedMore, size};
  return {FrameScan::kFrame, size};
}

std::optional<ClientPacket> parse_client_payload(std::span<const std::byte> payload) noexcept {
  ByteReader r(payload);
  ClientPacket p{r.u32(), r.i16(), {}};
  if (!r.ok()) return std::nullopt;
  p.body = r.rest();
  return p;
}

std::optional<ServerPacket> parse_server_payload(std::span<const std::byte> payload) noexcept {
  ByteReader r(payload);
  ServerPacket p{r.i16(), {}};
  if (!r.ok()) return std::nullopt;
  p.body = r.rest();
  return p;
}

std::optional<std::int32_t> parse_heartbeat(std::span<const std::byte> body) noexcept {
  ByteReader r(body);
  const std::int32_t id = r.i32();
  if (!r.ok()) return std::nullopt;
  return id;
}

std::optional<LoginRequest> parse_login(std::span<const std::byte> body) noexcept {
  ByteReader r(body);
  LoginRequest l;
  l.login_way = r.i32();
  l.open_udid = r.string();
  l.client_certificate = r.string();
  l.client_version = r.i32();
  l.user_lang = r.string();
  l.app_id = r.string();
  l.os_version = r.string();
  l.device_name = r.string();
  l.device_id = r.string();
  l.device_id_type = r.i32();
  l.login_ip = r.string();
  if (!r.ok()) return std::nullopt;
  return l;
}

void encode_login(const LoginRequest& l, std::vector<std::byte>& out) {
  ByteWriter(out)
      .i32(l.login_way)
      .string(l.open_udid)
      .string(l.client_certificate)
      .i32(l.client_version)
      .string(l.user_lang)
      .string(l.app_id)
      .string(l.os_version)
      .string(l.device_name)
      .string(l.device_id)
      .i32(l.device_id_type)
      .string(l.login_ip);
}

std::optional<SeedPair> parse_seed(std::span<const std::byte> body) noexcept {
  ByteReader r(body);
  SeedPair s{r.i32(), r.i32()};
  if (!r.ok()) return std::nullopt;
  return s;
}

std::optional<KeyExchange> parse_key_exchange_req(std::span<const std::byte> body) noexcept {
  if (body.size() < 32) return std::nullopt;
  return KeyExchange{body.first<32>(),
                     body.size() > 32 ? std::to_integer<std::uint8_t>(body[32]) : std::uint8_t{0}};
}

std::optional<KeyExchange> parse_key_exchange_ack(std::span<const std::byte> body) noexcept {
  if (body.size() < 33) return std::nullopt;
  return KeyExchange{body.first<32>(), std::to_integer<std::uint8_t>(body[32])};
}

void encode_key_exchange(std::span<const std::byte, 32> key, std::uint8_t aead,
                         std::vector<std::byte>& out) {
  ByteWriter(out).bytes(key);
  out.push_back(std::byte{aead});
}

std::optional<KeyExchange2Request> parse_key_exchange2_req(
    std::span<const std::byte> body) noexcept {
  if (body.size() < 41) return std::nullopt;
  return KeyExchange2Request{body.first<32>(), body.subspan<32, 8>(),
                             std::to_integer<std::uint8_t>(body[40])};
}

void encode_key_exchange2_req(const KeyExchange2Request& request, std::vector<std::byte>& out) {
  ByteWriter(out).bytes(request.key).bytes(request.key_id);
  out.push_back(std::byte{request.aead});
}

std::optional<KeyExchange2Ack> parse_key_exchange2_ack(std::span<const std::byte> body) noexcept {
  if (body.size() < 65) return std::nullopt;
  return KeyExchange2Ack{body.first<32>(), std::to_integer<std::uint8_t>(body[32]),
                         body.subspan<33, 32>()};
}

void encode_key_exchange2_ack(const KeyExchange2Ack& ack, std::vector<std::byte>& out) {
  ByteWriter(out).bytes(ack.key);
  out.push_back(std::byte{ack.aead});
  ByteWriter(out).bytes(ack.confirm);
}

std::optional<ClientError> parse_client_error(std::span<const std::byte> body) noexcept {
  ByteReader r(body);
  ClientError e{r.i32(), r.string()};
  if (!r.ok()) return std::nullopt;
  return e;
}

void encode_client_error_packet(const ClientError& error, std::vector<std::byte>& out) {
  ByteWriter(out).i16(kClientErrorAck).i32(error.code).string(error.message);
}

void encode_int32_packet(std::int16_t proto, std::int32_t value, std::vector<std::byte>& out) {
  ByteWriter(out).i16(proto).i32(value);
}

void encode_seed_packet(std::int16_t proto, SeedPair seeds, std::vector<std::byte>& out) {
  ByteWriter(out).i16(proto).i32(seeds.send_seed).i32(seeds.receive_seed);
}

}  // namespace gatehouse::protocol
