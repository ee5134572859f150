#include "gatehouse/client/client.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <utility>

#include "gatehouse/codec/byte_io.h"
#include "gatehouse/crypto/gateway_key_file.h"

namespace gatehouse::client {
namespace {

using Clock = std::chrono::steady_clock;

std::string_view proto_name(std::int16_t proto) {
  switch (proto) {
    case protocol::kHeartBeatReq:
      return "heart_beat_req";
    case protocol::kHeartBeatAck:
      return "heart_beat_ack";
    case protocol::kUserLoginReq:
      return "user_login_req";
    case protocol::kUserLoginSucceedAck:
      return "user_login_succeed_ack";
    case protocol::kUserLoginFaildAck:
      return "user_login_faild_ack";
    case protocol::kClientErrorAck:
      return "client_error_ack";
    case protocol::kGetSeedReq:
      return "get_seed_req";
    case protocol::kGetSeedAck:
      return "get_seed_ack";
    case protocol::kKeyExchangeReq:
      return "key_exchange_req";
    case protocol::kKeyExchangeAck:
      return "key_exchange_ack";
    case protocol::kKeyExchange2Req:
      return "key_exchange2_req";
    case protocol::kKeyExchange2Ack:
      return "key_exchange2_ack";
    case demo::kPingReq:
      return "proto_ping_req";
    case demo::kPingAck:
      return "proto_ping_ack";
    case demo::kChatSay:
      return "chat_say";
    case demo::kChatMessage:
      return "chat";
    case demo::kKickMe:
      return "kick_me";
    default:
      return {};
  }
}

std::string hex(std::span<const std::byte> bytes, std::size_t limit) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", std::to_integer<unsigned>(bytes[i]));
    if (i > 0) out += ' ';
    out += buf;
  }
  if (bytes.size() > limit) out += " ...";
  return out;
}

std::string raw_description(std::span<const std::byte> body) {
  std::string out = "(" + std::to_string(body.size()) + " bytes)";
  if (!body.empty()) out += " " + hex(body, 64);
  return out;
}

std::optional<std::int32_t> parse_int32(std::span<const std::byte> body) {
  return protocol::parse_heartbeat(body);  // a bare `int32` body
}

}  // namespace

std::string_view to_string(LoginResult::Status status) noexcept {
  switch (status) {
    case LoginResult::Status::kOk:
      return "ok";
    case LoginResult::Status::kRefused:
      return "refused";
    case LoginResult::Status::kClosed:
      return "closed";
    case LoginResult::Status::kTimeout:
      return "timeout";
  }
  return "unknown";
}

// ---------------------------------------------------------------- lifetime

Client::~Client() {
  close();
}

Client::Client(Client&& other) noexcept {
  *this = std::move(other);
}

Client& Client::operator=(Client&& other) noexcept {
  if (this == &other) return *this;
  close();
  transport_ = std::move(other.transport_);
  frames_sent_ = other.frames_sent_;
  send_timeout_ = other.send_timeout_;
  pending_exchange_ = other.pending_exchange_;
  keys_ = other.keys_;
  send_cipher_ = other.send_cipher_;
  receive_cipher_ = other.receive_cipher_;
  pending_modern_ = other.pending_modern_;
  modern_keys_ = other.modern_keys_;
  seal_ = other.seal_;
  open_ = other.open_;
  inbox_ = std::move(other.inbox_);
  closed_ = other.closed_;
  close_error_ = other.close_error_;
  other.close();  // leaves the moved-from client empty and reusable
  return *this;
}

void Client::connect(const std::string& host, std::uint16_t port, Duration timeout,
                     const TransportOptions& transport) {
  if (connected()) throw std::logic_error("Client::connect: already connected");
  auto connection = connect_transport(transport, host, port, timeout);
  close();  // fresh session state
  transport_ = std::move(connection);
}

void Client::close() noexcept {
  transport_.reset();
  frames_sent_ = 0;
  pending_exchange_.reset();
  keys_.reset();
  send_cipher_.reset();
  receive_cipher_.reset();
  pending_modern_.reset();
  modern_keys_.reset();
  seal_.reset();
  open_.reset();
  inbox_.clear();
  closed_ = false;
  close_error_.clear();
}

void Client::shutdown_send() {
  require_connected();
  transport_->shutdown_send();
}

std::uint16_t Client::local_port() const {
  return connected() ? transport_->local_port() : 0;
}

void Client::require_connected() const {
  if (!connected()) throw std::logic_error("gatehouse client: not connected");
}

// ---------------------------------------------------------------- sending

bool Client::send(std::int16_t proto, std::span<const std::byte> body) {
  return send_with_seq(next_seq(), proto, body);
}

bool Client::send_with_seq(std::uint32_t seq, std::int16_t proto, std::span<const std::byte> body) {
  std::vector<std::byte> payload;
  payload.reserve(protocol::kClientHeaderBytes + body.size());
  ByteWriter(payload).u32(seq).i16(proto).bytes(body);
  return send_frame(payload);
}

bool Client::send_payload(std::span<const std::byte> payload) {
  return send_frame(payload);
}

bool Client::send_raw(std::span<const std::byte> bytes) {
  require_connected();
  return transport_->send_raw(bytes, send_timeout_);
}

bool Client::send_frame(std::span<const std::byte> payload) {
  require_connected();
  const std::size_t wire_bytes = payload.size() + (seal_ ? modern::kTagBytes : 0);
  if (wire_bytes > protocol::kMaxPayload) {
    throw std::length_error("gatehouse client: payload of " + std::to_string(payload.size()) +
                            " bytes exceeds " + std::to_string(protocol::kMaxPayload) +
                            (seal_ ? " with the 16-byte tag" : ""));
  }
  std::vector<std::byte> wire(wire_bytes);
  std::byte* const out = wire.data();
  if (seal_) {
    seal_->seal(payload.data(), payload.size(), out);
  } else {
    std::copy(payload.begin(), payload.end(), out);
    if (send_cipher_) send_cipher_->apply(out, out, payload.size());
  }
  ++frames_sent_;
  return transport_->send_frame(wire, send_timeout_);
}

// ---------------------------------------------------------------- receiving

bool Client::decode_one() {
  if (!connected()) return false;
  auto received = transport_->next_payload();
  if (!received) return false;
  std::vector<std::byte> payload = std::move(*received);
  if (receive_cipher_) receive_cipher_->apply(payload.data(), payload.data(), payload.size());
  if (open_) {
    std::vector<std::byte> sealed;
    sealed.swap(payload);
    payload.resize(sealed.size() - std::min(sealed.size(), modern::kTagBytes));
    if (!open_->open(sealed.data(), sealed.size(), payload.data())) {
      throw ClientError("a " + std::to_string(sealed.size()) +
                        "-byte payload from the gateway failed authentication");
    }
  }

  const auto parsed = protocol::parse_server_payload(payload);
  if (!parsed) {
    throw ClientError("malformed frame from the gateway: payload of " +
                      std::to_string(payload.size()) + " bytes");
  }
  Packet packet{parsed->proto, {parsed->body.begin(), parsed->body.end()}};

  on_exchange_ack(packet);
  inbox_.push_back(std::move(packet));
  return true;
}

// A key exchange's ack comes in clear; everything after it in both
// directions is encrypted, so the ciphers must be in place before the next
// frame decodes.
void Client::on_exchange_ack(const Packet& packet) {
  if (pending_exchange_ && packet.proto == protocol::kGetSeedAck) {
    const auto seeds = protocol::parse_seed(packet.body);
    if (!seeds) throw ClientError("malformed get_seed_ack: " + raw_description(packet.body));
    const SessionKeys keys{
        legacy::dh_power(seeds->send_seed, pending_exchange_->send_secret),
        legacy::dh_power(seeds->receive_seed, pending_exchange_->receive_secret)};
    send_cipher_.emplace();
    send_cipher_->init(keys.send_key);
    receive_cipher_.emplace();
    receive_cipher_->init(keys.receive_key);
    keys_ = keys;
    pending_exchange_.reset();
  } else if (pending_modern_ && packet.proto == protocol::kKeyExchange2Ack) {
    const auto ack = protocol::parse_key_exchange2_ack(packet.body);
    if (!ack) throw ClientError("malformed key_exchange2_ack: " + raw_description(packet.body));
    const auto result = modern::client_finish(pending_modern_->pair, pending_modern_->gateway_key,
                                              static_cast<std::uint8_t>(pending_modern_->wanted),
                                              ack->key, ack->aead, ack->confirm);
    if (!result.keys) {
      throw ClientError(
          "key_exchange2_ack refused: " + std::string(modern::describe(result.check)) +
          "; pinned key " + modern::to_hex(pending_modern_->gateway_key));
    }
    seal_.emplace().init(result.keys->to_gateway, result.aead);
    open_.emplace().init(result.keys->to_client, result.aead);
    modern_keys_ = result.keys;
    pending_modern_.reset();
  }
}

bool Client::fill(Clock::time_point deadline) {
  if (closed_) return false;
  require_connected();
  switch (transport_->fill(deadline)) {
    case Transport::Fill::kData:
      return true;
    case Transport::Fill::kTimeout:
      return false;
    case Transport::Fill::kClosed:
      closed_ = true;
      close_error_ = transport_->close_error();
      return false;
  }
  return false;
}

std::optional<Packet> Client::receive(Duration timeout) {
  return receive_if([](const Packet&) { return true; }, timeout);
}

std::optional<Packet> Client::receive_proto(std::int16_t proto, Duration timeout) {
  return receive_if([proto](const Packet& p) { return p.proto == proto; }, timeout);
}

std::optional<Packet> Client::receive_if(const std::function<bool(const Packet&)>& match,
                                         Duration timeout) {
  const auto deadline = Clock::now() + timeout;
  std::size_t checked = 0;  // inbox_ entries already known not to match
  for (;;) {
    for (auto it = inbox_.begin() + static_cast<std::ptrdiff_t>(checked); it != inbox_.end();
         ++it) {
      if (match(*it)) {
        Packet p = std::move(*it);
        inbox_.erase(it);
        return p;
      }
    }
    checked = inbox_.size();
    if (decode_one()) continue;
    if (closed_ || !connected() || !fill(deadline)) return std::nullopt;
  }
}

bool Client::wait_closed(Duration timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    while (decode_one()) {
    }
    if (closed_) return true;
    if (!connected()) return false;
    if (!fill(deadline) && !closed_) return false;
  }
}

// ---------------------------------------------------------------- gateway protos

std::optional<SessionKeys> Client::key_exchange(Duration timeout) {
  return key_exchange(legacy::dh_random_secret(), legacy::dh_random_secret(), timeout);
}

std::optional<SessionKeys> Client::key_exchange(std::uint64_t send_secret,
                                                std::uint64_t receive_secret, Duration timeout) {
  require_connected();
  require_no_exchange();
  std::vector<std::byte> body;
  ByteWriter(body)
      .i32(static_cast<std::int32_t>(legacy::dh_public(send_secret)))
      .i32(static_cast<std::int32_t>(legacy::dh_public(receive_secret)));
  // Armed before sending: decode_one() switches the ciphers on as soon as
  // the ack is decoded, before any frame behind it.
  pending_exchange_ = PendingExchange{send_secret, receive_secret};
  if (!send(protocol::kGetSeedReq, body)) return std::nullopt;
  if (!receive_proto(protocol::kGetSeedAck, timeout)) return std::nullopt;
  return keys_;
}

std::optional<modern::SessionKeys> Client::modern_key_exchange(const modern::PublicKey& gateway_key,
                                                               Duration timeout,
                                                               modern::Aead wanted) {
  return modern_key_exchange(gateway_key, modern::generate_key_pair(), wanted, timeout);
}

std::optional<modern::SessionKeys> Client::modern_key_exchange(const modern::PublicKey& gateway_key,
                                                               const modern::KeyPair& pair,
                                                               modern::Aead wanted,
                                                               Duration timeout) {
  require_connected();
  require_no_exchange();
  if (!modern::available(wanted)) {
    throw std::logic_error("gatehouse client: " + std::string(modern::name_of(wanted)) +
                           " is not available on this CPU");
  }
  std::vector<std::byte> body;
  const modern::KeyId id = modern::key_id_of(gateway_key);
  protocol::encode_key_exchange2_req({pair.public_key, id, static_cast<std::uint8_t>(wanted)},
                                     body);
  // Armed before sending, as for key_exchange().
  pending_modern_ = PendingModern{pair, wanted, gateway_key};
  if (!send(protocol::kKeyExchange2Req, body)) return std::nullopt;
  if (!receive_proto(protocol::kKeyExchange2Ack, timeout)) return std::nullopt;
  return modern_keys_;
}

void Client::require_no_exchange() const {
  if (keys_ || pending_exchange_ || modern_keys_ || pending_modern_) {
    throw std::logic_error("gatehouse client: key exchange already done or in progress");
  }
}

std::optional<std::int32_t> Client::heartbeat(std::int32_t id, Duration timeout) {
  std::vector<std::byte> body;
  ByteWriter(body).i32(id);
  if (!send(protocol::kHeartBeatReq, body)) return std::nullopt;
  const auto ack = receive_proto(protocol::kHeartBeatAck, timeout);
  if (!ack) return std::nullopt;
  const auto echoed = protocol::parse_heartbeat(ack->body);
  if (!echoed) throw ClientError("malformed heart_beat_ack: " + raw_description(ack->body));
  return echoed;
}

protocol::LoginRequest Client::make_login_request(std::string_view open_udid,
                                                  std::string_view client_certificate) {
  protocol::LoginRequest r;
  r.login_way = 0;
  r.open_udid = open_udid;
  r.client_certificate = client_certificate;
  r.client_version = 1;
  r.user_lang = "en";
  r.app_id = "gatehouse-client";
  r.os_version = "linux";
  r.device_name = "gatehouse-client";
  r.device_id = "gatehouse-client-device";
  r.device_id_type = 0;
  r.login_ip = "127.0.0.1";
  return r;
}

LoginResult Client::login(std::string_view open_udid, std::string_view client_certificate,
                          Duration timeout) {
  return login(make_login_request(open_udid, client_certificate), timeout);
}

LoginResult Client::login(const protocol::LoginRequest& request, Duration timeout) {
  std::vector<std::byte> body;
  protocol::encode_login(request, body);
  LoginResult result;
  if (!send(protocol::kUserLoginReq, body)) {
    result.status = LoginResult::Status::kClosed;
    return result;
  }
  const auto reply = receive_if(
      [](const Packet& p) {
        return p.proto == protocol::kUserLoginSucceedAck || p.proto == protocol::kUserLoginFaildAck;
      },
      timeout);
  if (!reply) {
    result.status = closed_ ? LoginResult::Status::kClosed : LoginResult::Status::kTimeout;
    return result;
  }
  const auto value = parse_int32(reply->body);
  if (!value) {
    throw ClientError("malformed " + std::string(proto_name(reply->proto)) + ": " +
                      raw_description(reply->body));
  }
  result.status = reply->proto == protocol::kUserLoginSucceedAck ? LoginResult::Status::kOk
                                                                 : LoginResult::Status::kRefused;
  result.value = *value;
  return result;
}

// ---------------------------------------------------------------- demo protos

namespace demo {

std::vector<std::byte> encode_chat_say(std::string_view text) {
  std::vector<std::byte> out;
  ByteWriter(out).string(text);
  return out;
}

std::optional<std::string> parse_chat_say(std::span<const std::byte> body) {
  ByteReader r(body);
  const std::string_view text = r.string();
  if (!r.ok()) return std::nullopt;
  return std::string(text);
}

std::vector<std::byte> encode_chat_message(const ChatMessage& message) {
  std::vector<std::byte> out;
  ByteWriter(out).i32(message.uid).string(message.text);
  return out;
}

std::optional<ChatMessage> parse_chat_message(std::span<const std::byte> body) {
  ByteReader r(body);
  const std::int32_t uid = r.i32();
  const std::string_view text = r.string();
  if (!r.ok()) return std::nullopt;
  return ChatMessage{uid, std::string(text)};
}

}  // namespace demo

// ---------------------------------------------------------------- helpers

std::vector<std::byte> to_bytes(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return {p, p + text.size()};
}

std::string_view as_text(std::span<const std::byte> bytes) noexcept {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::string quoted(std::span<const std::byte> bytes) {
  std::string out = "\"";
  for (const std::byte b : bytes) {
    const auto c = std::to_integer<unsigned char>(b);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          char buf[5];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
          out += buf;
        }
    }
  }
  out += '"';
  return out;
}

std::string describe(const Packet& packet) {
  const std::string_view name = proto_name(packet.proto);
  std::string out = std::to_string(packet.proto) + " ";
  const auto malformed = [&] {
    return out + std::string(name) + " malformed " + raw_description(packet.body);
  };
  switch (packet.proto) {
    case protocol::kHeartBeatReq:
    case protocol::kHeartBeatAck: {
      const auto id = parse_int32(packet.body);
      if (!id) return malformed();
      return out + std::string(name) + " id=" + std::to_string(*id);
    }
    case protocol::kUserLoginReq: {
      const auto login = protocol::parse_login(packet.body);
      if (!login) return malformed();
      return out + std::string(name) + " udid=" + quoted(to_bytes(login->open_udid)) +
             " certificate=(" + std::to_string(login->client_certificate.size()) + " bytes)";
    }
    case protocol::kUserLoginSucceedAck: {
      const auto uid = parse_int32(packet.body);
      if (!uid) return malformed();
      return out + "login ok uid=" + std::to_string(*uid);
    }
    case protocol::kUserLoginFaildAck: {
      const auto code = parse_int32(packet.body);
      if (!code) return malformed();
      return out + "login failed code=" + std::to_string(*code);
    }
    case protocol::kClientErrorAck: {
      const auto error = protocol::parse_client_error(packet.body);
      if (!error) return malformed();
      return out + std::string(name) + " code=" + std::to_string(error->code) + " " +
             quoted(to_bytes(error->message));
    }
    case protocol::kGetSeedReq:
    case protocol::kGetSeedAck: {
      const auto seeds = protocol::parse_seed(packet.body);
      if (!seeds) return malformed();
      return out + std::string(name) + " send_seed=" + std::to_string(seeds->send_seed) +
             " receive_seed=" + std::to_string(seeds->receive_seed);
    }
    case demo::kPingReq:
    case demo::kPingAck:
      return out + std::string(name) + " " + quoted(packet.body);
    case demo::kChatSay: {
      ByteReader r(packet.body);
      const std::string_view text = r.string();
      if (!r.ok()) return malformed();
      return out + std::string(name) + " " + quoted(to_bytes(text));
    }
    case demo::kChatMessage: {
      const auto message = demo::parse_chat_message(packet.body);
      if (!message) return malformed();
      return out + "chat uid=" + std::to_string(message->uid) + " " +
             quoted(to_bytes(message->text));
    }
    case demo::kKickMe:
      return out + std::string(name);
    default:
      return out + (packet.proto > protocol::kMaxGatewayProto ? "game " : "gateway ") +
             raw_description(packet.body);
  }
}

}  // namespace gatehouse::client
