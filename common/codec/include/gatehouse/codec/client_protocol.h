// The client <-> gateway wire format of the gonet2 agent (shared/protocol.md
// section 1). All integers big-endian.
//
//   client -> gateway frame:  | size u16 | payload (size bytes) |
//     payload (after decryption):   | seq u32 | proto i16 | body ... |
//   gateway -> client frame:  | size u16 | payload (size bytes) |
//     payload (before encryption):  | proto i16 | body ... |
//
// Everything here parses untrusted bytes: it never throws, never reads out
// of bounds, and says "malformed" with an empty optional. Each parser has a
// fuzz target (tests/fuzz/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace gatehouse::protocol {

inline constexpr std::size_t kSizeBytes = 2;
inline constexpr std::size_t kMaxPayload = 65535;
inline constexpr std::size_t kClientHeaderBytes = 6;  ///< seq u32 + proto i16
inline constexpr std::size_t kServerHeaderBytes = 2;  ///< proto i16

/// The gateway's own protos (<= kMaxGatewayProto); larger ones go to the game.
enum Proto : std::int16_t {
  kHeartBeatReq = 0,
  kHeartBeatAck = 1,
  kUserLoginReq = 10,
  kUserLoginSucceedAck = 11,
  kUserLoginFaildAck = 12,
  kClientErrorAck = 13,
  kGetSeedReq = 30,
  kGetSeedAck = 31,
  kKeyExchangeReq = 32,  ///< ours: the modern key exchange (docs/protocol-modern.md)
  kKeyExchangeAck = 33,
  kKeyExchange2Req = 34,  ///< ours: version 2, the gateway proves its key (protocol-modern.md)
  kKeyExchange2Ack = 35,
};
inline constexpr std::int16_t kMaxGatewayProto = 1000;

// ---------------------------------------------------------------- framing

/// What is at the front of a receive buffer.
struct FrameScan {
  enum Kind : std::uint8_t { kNeedMore, kFrame, kTooLarge } kind;
  std::size_t payload_bytes;  ///< kFrame/kTooLarge: the declared size
};
/// Looks at `| size u16 | payload |` at the start of `buffer`; a frame whose
/// declared size exceeds `max_payload` is kTooLarge as soon as its header is
/// in, before its payload arrives.
FrameScan scan_frame(std::span<const std::byte> buffer, std::size_t max_payload) noexcept;

// ---------------------------------------------------------------- payloads

struct ClientPacket {
  std::uint32_t seq;
  std::int16_t proto;
  std::span<const std::byte> body;
};
/// `| seq u32 | proto i16 | body |`; nullopt when shorter than 6 bytes.
std::optional<ClientPacket> parse_client_payload(std::span<const std::byte> payload) noexcept;

struct ServerPacket {
  std::int16_t proto;
  std::span<const std::byte> body;
};
/// `| proto i16 | body |`; nullopt when shorter than 2 bytes.
std::optional<ServerPacket> parse_server_payload(std::span<const std::byte> payload) noexcept;

// ---------------------------------------------------------------- bodies
// Trailing bytes after the last field are ignored, as gonet2 did.

/// heart_beat_req / heart_beat_ack: `id int32`.
std::optional<std::int32_t> parse_heartbeat(std::span<const std::byte> body) noexcept;

/// user_login_req (proto 10). Views into the body.
struct LoginRequest {
  std::int32_t login_way = 0;
  std::string_view open_udid;
  std::string_view client_certificate;
  std::int32_t client_version = 0;
  std::string_view user_lang;
  std::string_view app_id;
  std::string_view os_version;
  std::string_view device_name;
  std::string_view device_id;
  std::int32_t device_id_type = 0;
  std::string_view login_ip;
};
std::optional<LoginRequest> parse_login(std::span<const std::byte> body) noexcept;
void encode_login(const LoginRequest& login, std::vector<std::byte>& out);

/// get_seed_req (30) and get_seed_ack (31): two int32.
struct SeedPair {
  std::int32_t send_seed;     ///< client_send_seed / server_send_seed
  std::int32_t receive_seed;  ///< client_receive_seed / server_receive_seed
};
std::optional<SeedPair> parse_seed(std::span<const std::byte> body) noexcept;

/// key_exchange_req (32) and key_exchange_ack (33): an X25519 public key and
/// an AEAD byte (docs/protocol-modern.md). The key is a view into the body.
struct KeyExchange {
  std::span<const std::byte, 32> key;
  std::uint8_t aead;  ///< modern::Aead on the wire
};
/// `| key 32 bytes | aead u8 (optional: 0 when absent) |`; nullopt when
/// shorter than the key.
std::optional<KeyExchange> parse_key_exchange_req(std::span<const std::byte> body) noexcept;
/// `| key 32 bytes | aead u8 |`; nullopt when shorter.
std::optional<KeyExchange> parse_key_exchange_ack(std::span<const std::byte> body) noexcept;
/// Appends `| key 32 bytes | aead u8 |` (the body of either).
void encode_key_exchange(std::span<const std::byte, 32> key, std::uint8_t aead,
                         std::vector<std::byte>& out);

/// key_exchange2_req (34): `| E_c 32 bytes | key id 8 bytes | aead u8 |`.
/// Views into the body.
struct KeyExchange2Request {
  std::span<const std::byte, 32> key;  ///< the client's ephemeral X25519 key
  std::span<const std::byte, 8> key_id;
  std::uint8_t aead;
};
/// nullopt when shorter than 41 bytes.
std::optional<KeyExchange2Request> parse_key_exchange2_req(
    std::span<const std::byte> body) noexcept;
void encode_key_exchange2_req(const KeyExchange2Request& request, std::vector<std::byte>& out);

/// key_exchange2_ack (35): `| E_s 32 bytes | aead u8 | confirm 32 bytes |`.
struct KeyExchange2Ack {
  std::span<const std::byte, 32> key;  ///< the gateway's ephemeral X25519 key
  std::uint8_t aead;
  std::span<const std::byte, 32> confirm;
};
/// nullopt when shorter than 65 bytes.
std::optional<KeyExchange2Ack> parse_key_exchange2_ack(std::span<const std::byte> body) noexcept;
void encode_key_exchange2_ack(const KeyExchange2Ack& ack, std::vector<std::byte>& out);

/// client_error_ack (13), gonet2's command_result_info: `| code int32 |
/// msg string |`. The gateway sends it just before it closes a session an
/// operator kicked (code kErrorKicked, msg the operator's reason). Views
/// into the body.
struct ClientError {
  std::int32_t code;
  std::string_view message;
};
inline constexpr std::int32_t kErrorKicked = 1;
std::optional<ClientError> parse_client_error(std::span<const std::byte> body) noexcept;
/// Appends `| proto 13 | code int32 | msg string |`.
void encode_client_error_packet(const ClientError& error, std::vector<std::byte>& out);

/// Appends `| proto i16 | int32 |` (heartbeat ack, login acks).
void encode_int32_packet(std::int16_t proto, std::int32_t value, std::vector<std::byte>& out);
/// Appends `| proto i16 | a int32 | b int32 |` (seed req/ack).
void encode_seed_packet(std::int16_t proto, SeedPair seeds, std::vector<std::byte>& out);

}  // namespace gatehouse::protocol
