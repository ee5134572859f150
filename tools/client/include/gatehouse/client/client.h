// A blocking client for the gateway's client protocol (shared/protocol.md
// sections 1 and 3), for integration tests, the load generator and people
// trying the gateway (tools/client/main.cc).
//
//   client -> gateway:  | size u16 | payload |   payload = | seq u32 | proto i16 | body |
//   gateway -> client:  | size u16 | payload |   payload = | proto i16 | body |
//
// After key_exchange() both payload directions run through RC4 (one
// continuous stream per direction, never over the size header); after
// modern_key_exchange() (version 2: the gateway proves it holds the pinned
// key) every payload is sealed with ChaCha20-Poly1305 or AES-256-GCM
// (docs/protocol-modern.md). A gateway payload that fails to open, and an
// ack from a gateway that does not hold the pinned key, throw ClientError.
//
// Error policy: this is a test and tooling client, not the data path.
//  - Timeouts and a connection the gateway closed are ordinary outcomes:
//    receive() returns nullopt and closed() says which; send() returns false
//    when the peer has reset the connection.
//  - Misuse (sending on an unconnected client, a payload over 65535 bytes)
//    throws std::logic_error / std::length_error.
//  - Socket errors other than EOF/reset, a send that cannot make progress
//    within send_timeout(), and malformed frames from the gateway throw
//    ClientError: they mean the gateway (or the host) is broken.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "gatehouse/client/transport.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/crypto/gateway_identity.h"
#include "gatehouse/crypto/legacy_crypto.h"
#include "gatehouse/crypto/modern_crypto.h"

namespace gatehouse::client {

inline constexpr Duration kDefaultTimeout{5000};

/// A socket error, a stalled send, or a malformed frame from the gateway.
class ClientError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One gateway -> client packet, decrypted: `| proto i16 | body |`.
struct Packet {
  std::int16_t proto = 0;
  std::vector<std::byte> body;
  friend bool operator==(const Packet&, const Packet&) = default;
};

/// The legacy DH shared keys of an encrypted session (protocol.md section 3).
struct SessionKeys {
  std::uint32_t send_key = 0;     ///< e1^a mod p: RC4 key of what the client sends
  std::uint32_t receive_key = 0;  ///< e2^b mod p: RC4 key of what the client receives
  friend bool operator==(const SessionKeys&, const SessionKeys&) = default;
};

struct LoginResult {
  enum class Status : std::uint8_t {
    kOk,       ///< 11 user_login_succeed_ack; `value` is the uid
    kRefused,  ///< 12 user_login_faild_ack; `value` is its int32 body
    kClosed,   ///< the gateway closed the connection before answering
    kTimeout,  ///< no answer in time
  };
  Status status = Status::kTimeout;
  std::int32_t value = 0;

  bool ok() const noexcept { return status == Status::kOk; }
  std::int32_t uid() const noexcept { return status == Status::kOk ? value : 0; }
};
std::string_view to_string(LoginResult::Status status) noexcept;

class Client {
 public:
  Client() = default;
  ~Client();
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ------------------------------------------------------------ connection

  /// Resolves `host` (name or address) and connects within `timeout` over
  /// `transport` (TCP with TCP_NODELAY by default; transport.h). Throws
  /// ClientError on failure, std::logic_error if already connected.
  void connect(const std::string& host, std::uint16_t port, Duration timeout = kDefaultTimeout,
               const TransportOptions& transport = {});
  bool connected() const noexcept { return transport_ != nullptr; }
  /// Closes the connection and forgets all session state (seq, ciphers, inbox).
  void close() noexcept;
  /// Half-closes: the gateway sees EOF, the client can still receive (tcp
  /// only; kcp has no half-close and throws std::logic_error).
  void shutdown_send();
  /// The local port of the connection (0 when not connected).
  std::uint16_t local_port() const;
  /// The socket (-1 when not connected; the UDP socket for kcp).
  int native_handle() const noexcept { return transport_ ? transport_->native_handle() : -1; }
  /// The transport of the connection (tcp when not connected).
  TransportKind transport() const noexcept {
    return transport_ ? transport_->kind() : TransportKind::kTcp;
  }

  /// Bound on how long one send may block on a full socket buffer before it
  /// throws ClientError (a gateway that stopped reading).
  void set_send_timeout(Duration timeout) noexcept { send_timeout_ = timeout; }
  Duration send_timeout() const noexcept { return send_timeout_; }

  // ------------------------------------------------------------ sending
  // Every framed send (send, send_with_seq, send_payload) counts as one
  // frame for the seq counter, as the gateway counts them. All return false
  // if the gateway has reset the connection (EPIPE/ECONNRESET).

  /// Sends `| size | seq | proto | body |` with seq = next_seq(), encrypted
  /// once the key exchange is done.
  bool send(std::int16_t proto, std::span<const std::byte> body = {});
  /// As send(), with an explicit seq (replay/injection tests). The counter
  /// still advances, so the next send() carries the number of frames sent.
  bool send_with_seq(std::uint32_t seq, std::int16_t proto, std::span<const std::byte> body = {});
  /// Frames (and encrypts) an arbitrary payload, e.g. one shorter than the
  /// 6-byte header (bad_body tests). Counts as a frame.
  bool send_payload(std::span<const std::byte> payload);
  /// Writes `bytes` as they are: no framing, no encryption, no seq.
  bool send_raw(std::span<const std::byte> bytes);
  /// The seq the next send() carries: frames sent so far + 1.
  std::uint32_t next_seq() const noexcept { return frames_sent_ + 1; }

  // ------------------------------------------------------------ receiving

  /// The next packet (decrypted), first from the packets already received.
  /// nullopt on timeout or when the gateway closed the connection; closed()
  /// tells the two apart. Packets that arrived before the close are still
  /// returned first.
  std::optional<Packet> receive(Duration timeout = kDefaultTimeout);
  /// The first packet with `proto`, leaving the others queued for receive().
  std::optional<Packet> receive_proto(std::int16_t proto, Duration timeout = kDefaultTimeout);
  /// The first packet matching `match`, leaving the others queued.
  std::optional<Packet> receive_if(const std::function<bool(const Packet&)>& match,
                                   Duration timeout = kDefaultTimeout);
  /// True once the gateway has closed the connection (EOF or reset; for kcp
  /// a dead link or ICMP unreachable) and the reader has seen it. Packets
  /// may still be queued: see pending().
  bool closed() const noexcept { return closed_; }
  /// Why the connection closed: empty for a clean EOF, else the socket error
  /// (connection_reset, ...).
  std::error_code close_error() const noexcept { return close_error_; }
  /// Waits until the gateway closes the connection. Packets received
  /// meanwhile stay queued for receive(). True if closed within `timeout`.
  bool wait_closed(Duration timeout = kDefaultTimeout);
  /// Packets received but not yet taken by receive().
  const std::deque<Packet>& pending() const noexcept { return inbox_; }

  // ------------------------------------------------------------ gateway protos

  /// get_seed_req / get_seed_ack with fresh random secrets. On success every
  /// later payload is encrypted (sent) and decrypted (received). nullopt on
  /// timeout or close (the exchange then stays pending: a late ack still
  /// switches the ciphers on). Throws std::logic_error if one was already
  /// done or is pending.
  std::optional<SessionKeys> key_exchange(Duration timeout = kDefaultTimeout);
  /// As key_exchange() with the given secrets a (send) and b (receive).
  std::optional<SessionKeys> key_exchange(std::uint64_t send_secret, std::uint64_t receive_secret,
                                          Duration timeout = kDefaultTimeout);
  /// The modern exchange, version 2 (docs/protocol-modern.md):
  /// key_exchange2_req with a fresh X25519 key pair, naming the pinned
  /// `gateway_key` by its id and asking for the AEAD `wanted`. The
  /// key_exchange2_ack must prove that the gateway holds that key's private
  /// half; then every later payload is sealed (sent) and opened (received)
  /// with the AEAD the gateway chose (aead()). nullopt on timeout or close
  /// (a gateway that does not hold the key closes: unknown_gateway_key).
  /// Throws ClientError("gateway key mismatch: ...") for an ack that fails
  /// the proof, std::logic_error if an exchange was already done or is
  /// pending, or if `wanted` is not available() on this machine.
  std::optional<modern::SessionKeys> modern_key_exchange(
      const modern::PublicKey& gateway_key, Duration timeout = kDefaultTimeout,
      modern::Aead wanted = modern::Aead::kChaCha20Poly1305);
  /// As modern_key_exchange() with the given ephemeral key pair.
  std::optional<modern::SessionKeys> modern_key_exchange(const modern::PublicKey& gateway_key,
                                                         const modern::KeyPair& pair,
                                                         modern::Aead wanted, Duration timeout);
  /// The AEAD of a modern session once key_exchange_ack is in.
  std::optional<modern::Aead> aead() const noexcept {
    return open_ ? std::optional<modern::Aead>(open_->aead) : std::nullopt;
  }
  /// Either key exchange is done.
  bool encrypted() const noexcept { return keys_.has_value() || modern_keys_.has_value(); }
  /// The legacy shared keys once get_seed_ack is in.
  std::optional<SessionKeys> keys() const noexcept { return keys_; }
  /// The modern session keys once key_exchange_ack is in.
  std::optional<modern::SessionKeys> modern_keys() const noexcept { return modern_keys_; }

  /// heart_beat_req(id); returns the id of the heart_beat_ack (nullopt on
  /// timeout or close).
  std::optional<std::int32_t> heartbeat(std::int32_t id, Duration timeout = kDefaultTimeout);

  /// user_login_req with make_login_request(open_udid, client_certificate).
  LoginResult login(std::string_view open_udid, std::string_view client_certificate,
                    Duration timeout = kDefaultTimeout);
  LoginResult login(const protocol::LoginRequest& request, Duration timeout = kDefaultTimeout);
  /// A full user_login_req with plausible values for the other fields. The
  /// result views `open_udid` and `client_certificate`.
  static protocol::LoginRequest make_login_request(std::string_view open_udid,
                                                   std::string_view client_certificate);

 private:
  struct PendingExchange {
    std::uint64_t send_secret;
    std::uint64_t receive_secret;
  };

  void require_connected() const;
  bool send_frame(std::span<const std::byte> payload);
  /// Moves one complete frame from the transport into inbox_; false if none is buffered.
  bool decode_one();
  /// Waits until `deadline` for input; false on timeout or close (closed_ says which).
  bool fill(std::chrono::steady_clock::time_point deadline);

  std::unique_ptr<Transport> transport_;
  std::uint32_t frames_sent_ = 0;
  Duration send_timeout_{10000};

  /// Checks that no exchange is done or pending.
  void require_no_exchange() const;
  /// Switches the ciphers on for an ack that answers the pending exchange.
  void on_exchange_ack(const Packet& packet);

  std::optional<PendingExchange> pending_exchange_;
  std::optional<SessionKeys> keys_;
  std::optional<legacy::Rc4State> send_cipher_;
  std::optional<legacy::Rc4State> receive_cipher_;
  struct PendingModern {
    modern::KeyPair pair;
    modern::Aead wanted;
    modern::PublicKey gateway_key;  ///< pinned
  };
  std::optional<PendingModern> pending_modern_;
  std::optional<modern::SessionKeys> modern_keys_;
  std::optional<modern::AeadStream> seal_;
  std::optional<modern::AeadStream> open_;

  std::deque<Packet> inbox_;
  bool closed_ = false;
  std::error_code close_error_;
};

// ---------------------------------------------------------------- demo game protos
// The example game service's protocol (examples/demo-game). Bodies:
//   1001 proto_ping_req / 1002 proto_ping_ack:  opaque bytes, echoed
//   1003 chat say:                              text string (| len u16 | bytes |)
//   1004 chat message (pushed; "chat_hear"):    uid int32, text string
//   1005 kick me:                               empty; the game kicks the session
namespace demo {

inline constexpr std::int16_t kPingReq = 1001;
inline constexpr std::int16_t kPingAck = 1002;
inline constexpr std::int16_t kChatSay = 1003;
inline constexpr std::int16_t kChatMessage = 1004;
inline constexpr std::int16_t kKickMe = 1005;

struct ChatMessage {
  std::int32_t uid = 0;
  std::string text;
  friend bool operator==(const ChatMessage&, const ChatMessage&) = default;
};

std::vector<std::byte> encode_chat_say(std::string_view text);
std::optional<std::string> parse_chat_say(std::span<const std::byte> body);
std::vector<std::byte> encode_chat_message(const ChatMessage& message);
std::optional<ChatMessage> parse_chat_message(std::span<const std::byte> body);

}  // namespace demo

// ---------------------------------------------------------------- helpers

/// The bytes of `text`, e.g. for a ping body.
std::vector<std::byte> to_bytes(std::string_view text);
/// The bytes as text (no copy).
std::string_view as_text(std::span<const std::byte> bytes) noexcept;
/// `"text"` with quotes, backslashes and non-printable bytes escaped (\xNN).
std::string quoted(std::span<const std::byte> bytes);
/// One human line for a received packet, without direction marker, e.g.
/// `1002 proto_ping_ack "hello"`, `1004 chat uid=42 "hi all"`, `11 login ok uid=42`.
std::string describe(const Packet& packet);

}  // namespace gatehouse::client
