// Fuzz target: bytes as a client would send them on a TCP connection. Runs
// the frontend's framing (scan_frame) over the stream and, for every frame,
// the worker's parsers: the payload header and the body of each gateway
// proto, and the modern mode's opening of a sealed payload and key
// derivation from a client's public key (version 1, and version 2 with the
// gateway's static key when the request names its id). Nothing may crash, read out of
// bounds or loop; a parsed login must re-encode to the bytes it came from,
// and no fuzzed payload may open under a key it was not sealed with.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/crypto/gateway_identity.h"
#include "gatehouse/crypto/modern_crypto.h"

using namespace gatehouse::protocol;
namespace modern = gatehouse::modern;

namespace {

/// Fixed, so runs are reproducible (the fuzzer needs no real key pair).
const modern::KeyPair& gateway_pair() {
  static const modern::KeyPair pair = [] {
    modern::KeyPair p;
    for (std::size_t i = 0; i < p.secret_key.size(); ++i) {
      p.secret_key[i] = static_cast<std::byte>(i + 1);
      p.public_key[i] = static_cast<std::byte>(0xA0 + i);
    }
    return p;
  }();
  return pair;
}

}  // namespace

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data), size);
  // The first byte picks the frame size limit, as --max-frame would.
  const std::size_t max_payload = size == 0 ? kMaxPayload : 6 + data[0] * 257u;
  while (!stream.empty()) {
    const FrameScan scan = scan_frame(stream, max_payload);
    if (scan.kind != FrameScan::kFrame) break;
    if (scan.payload_bytes > max_payload) __builtin_trap();
    const auto payload = stream.subspan(kSizeBytes, scan.payload_bytes);
    stream = stream.subspan(kSizeBytes + scan.payload_bytes);
    modern::AeadStream aead;
    aead.init(modern::Key{}, modern::Aead::kChaCha20Poly1305);
    std::vector<std::byte> opened(payload.size());
    if (aead.open(payload.data(), payload.size(), opened.data())) __builtin_trap();
    const auto packet = parse_client_payload(payload);
    if (!packet) {
      if (payload.size() >= kClientHeaderBytes) __builtin_trap();
      continue;
    }
    switch (packet->proto) {
      case kHeartBeatReq:
        (void)parse_heartbeat(packet->body);
        break;
      case kGetSeedReq:
        (void)parse_seed(packet->body);
        break;
      case kClientErrorAck:  // what a kicked client parses (gateway -> client)
        (void)parse_client_error(packet->body);
        break;
      case kKeyExchangeReq:
        if (const auto request = parse_key_exchange_req(packet->body)) {
          (void)modern::gateway_session_keys(gateway_pair(), request->key);
        }
        break;
      case kKeyExchange2Req:
        if (const auto request = parse_key_exchange2_req(packet->body)) {
          // Any id runs the derivation (the worker would kick an unknown one).
          if (const auto reply =
                  modern::gateway_reply(gateway_pair(), request->key, request->aead)) {
            std::vector<std::byte> ack;
            encode_key_exchange2_ack(
                {reply->gateway_ephemeral, static_cast<std::uint8_t>(reply->aead), reply->confirm},
                ack);
            if (!parse_key_exchange2_ack(ack)) __builtin_trap();
          }
        }
        break;
      case kUserLoginReq:
        if (const auto login = parse_login(packet->body)) {
          std::vector<std::byte> again;
          encode_login(*login, again);
          if (again.size() > packet->body.size() ||
              std::memcmp(again.data(), packet->body.data(), again.size()) != 0) {
            __builtin_trap();
          }
        }
        break;
      default:
        (void)parse_server_payload(payload);
    }
  }
  return 0;
}
