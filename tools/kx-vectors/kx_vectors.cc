// gatehouse-kx-vectors: the test vectors of docs/protocol-modern.md's
// version 2 (keys, transcript, session keys, the first sealed frames),
// computed with gw::crypto from fixed secrets, so that the page can be
// regenerated and an independent client checked against it.
//
//   gatehouse-kx-vectors                print the block (between the markers)
//   gatehouse-kx-vectors --check FILE   exit 1 unless FILE holds that block
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "gatehouse/codec/byte_io.h"
#include "gatehouse/codec/client_protocol.h"
#include "gatehouse/crypto/gateway_identity.h"
#include "gatehouse/crypto/gateway_key_file.h"

namespace {

namespace modern = gatehouse::modern;
namespace protocol = gatehouse::protocol;
using Bytes = std::vector<std::byte>;

constexpr const char* kBegin = "<!-- kx-vectors begin: tools/kx-vectors regenerates this block -->";
constexpr const char* kEnd = "<!-- kx-vectors end -->";

/// Secret i: bytes first, first + 1, ... (X25519 clamps them).
modern::KeyPair pair_from(std::uint8_t first) {
  modern::KeyPair p;
  for (std::size_t i = 0; i < p.secret_key.size(); ++i) {
    p.secret_key[i] = static_cast<std::byte>(first + i);
  }
  p.public_key = modern::public_key_of(p.secret_key);
  return p;
}

/// `| size u16 | payload |`.
Bytes framed(const Bytes& payload) {
  Bytes out;
  gatehouse::ByteWriter(out).u16(static_cast<std::uint16_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Bytes sealed_frame(const modern::Key& key, const Bytes& plain) {
  modern::AeadStream stream;
  stream.init(key, modern::Aead::kChaCha20Poly1305);
  Bytes out(plain.size() + modern::kTagBytes);
  stream.seal(plain.data(), plain.size(), out.data());
  return framed(out);
}

std::string block() {
  const modern::KeyPair gateway_static = pair_from(0x01);
  const modern::KeyPair client_ephemeral = pair_from(0x41);
  const modern::KeyPair gateway_ephemeral = pair_from(0x81);
  const std::uint8_t aead = 0;
  const modern::KeyId id = modern::key_id_of(gateway_static.public_key);

  Bytes request_payload;
  gatehouse::ByteWriter(request_payload).u32(1).i16(protocol::kKeyExchange2Req);
  protocol::encode_key_exchange2_req({client_ephemeral.public_key, id, aead}, request_payload);

  const auto ee = modern::shared_secret(gateway_ephemeral.secret_key, client_ephemeral.public_key);
  const auto es = modern::shared_secret(gateway_static.secret_key, client_ephemeral.public_key);
  const modern::Transcript t{gateway_static.public_key,    id,  client_ephemeral.public_key, aead,
                             gateway_ephemeral.public_key, aead};
  const modern::Hash th = modern::transcript_hash(t);
  const modern::Hash prk = modern::extract(*ee, *es, th);
  const modern::Derived d = modern::expand(prk);
  const auto reply =
      modern::gateway_reply(gateway_static, gateway_ephemeral, client_ephemeral.public_key, aead);
  const auto check = modern::client_finish(client_ephemeral, gateway_static.public_key, aead,
                                           reply->gateway_ephemeral,
                                           static_cast<std::uint8_t>(reply->aead), reply->confirm);
  if (std::memcmp(reply->confirm.data(), d.confirm.data(), d.confirm.size()) != 0 ||
      check.check != modern::AckCheck::kOk) {
    throw std::logic_error("the gateway's and the client's sides disagree");
  }

  Bytes ack_payload;
  gatehouse::ByteWriter(ack_payload).i16(protocol::kKeyExchange2Ack);
  protocol::encode_key_exchange2_ack(
      {reply->gateway_ephemeral, static_cast<std::uint8_t>(reply->aead), reply->confirm},
      ack_payload);
  Bytes transcript(modern::kTranscriptLabel.size());
  std::memcpy(transcript.data(), modern::kTranscriptLabel.data(), transcript.size());
  for (const auto& part :
       {std::span<const std::byte>(t.gateway_static), std::span<const std::byte>(t.key_id),
        std::span<const std::byte>(t.client_ephemeral)}) {
    transcript.insert(transcript.end(), part.begin(), part.end());
  }
  transcript.push_back(std::byte{t.aead_asked});
  transcript.insert(transcript.end(), t.gateway_ephemeral.begin(), t.gateway_ephemeral.end());
  transcript.push_back(std::byte{t.aead});

  // The first sealed frame each way: heart_beat_req id 7 (seq 2, the
  // client's payload number 0) and its heart_beat_ack (the gateway's 0).
  Bytes beat;
  gatehouse::ByteWriter(beat).u32(2).i16(protocol::kHeartBeatReq).i32(7);
  Bytes beat_ack;
  gatehouse::ByteWriter(beat_ack).i16(protocol::kHeartBeatAck).i32(7);

  std::ostringstream out;
  const auto line = [&out](const char* name, std::span<const std::byte> bytes) {
    out << "    " << name << std::string(28 - std::strlen(name), ' ') << modern::to_hex(bytes)
        << "\n";
  };
  out << kBegin << "\n\n";
  line("s (gateway static secret)", gateway_static.secret_key);
  line("S", gateway_static.public_key);
  line("key_id", id);
  line("e_c (client secret)", client_ephemeral.secret_key);
  line("E_c", client_ephemeral.public_key);
  line("e_s (gateway secret)", gateway_ephemeral.secret_key);
  line("E_s", gateway_ephemeral.public_key);
  out << "    aead asked, granted         00, 00\n";
  line("key_exchange2_req frame", framed(request_payload));
  line("ee", *ee);
  line("es", *es);
  line("transcript", transcript);
  line("th", th);
  line("prk", prk);
  line("key_to_client", d.keys.to_client);
  line("key_to_gateway", d.keys.to_gateway);
  line("confirm", d.confirm);
  line("key_exchange2_ack frame", framed(ack_payload));
  line("client frame 0 (beat 7)", sealed_frame(d.keys.to_gateway, beat));
  line("gateway frame 0 (ack 7)", sealed_frame(d.keys.to_client, beat_ack));
  out << "\n" << kEnd << "\n";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string expected = block();
    if (argc == 1) {
      std::cout << expected;
      return 0;
    }
    if (argc != 3 || std::string(argv[1]) != "--check") {
      std::cerr << "usage: gatehouse-kx-vectors [--check FILE]\n";
      return 2;
    }
    std::ifstream in(argv[2]);
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    if (text.find(expected) == std::string::npos) {
      std::cerr << argv[2]
                << " does not hold the vectors gw::crypto computes; regenerate its "
                   "block with gatehouse-kx-vectors:\n"
                << expected;
      return 1;
    }
    std::cout << argv[2] << ": the version 2 test vectors match gw::crypto\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gatehouse-kx-vectors: " << e.what() << "\n";
    return 1;
  }
}
