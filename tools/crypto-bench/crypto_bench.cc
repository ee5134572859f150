// gatehouse-crypto-bench: what the worker's crypto costs per call, on this
// machine, with the gateway's own code (docs/benchmarks.md item 17).
//
//   build/tools/gatehouse-crypto-bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true      (one command line)
//
// Per payload (72 bytes: a 64-byte echo body and its 8-byte header, as in
// the load benchmarks): legacy RC4 (the baseline of the same run) against
// seal and open of each modern AEAD. Per session: the gateway's side of the
// legacy exchange (two DH pairs, two shared keys, two RC4 key schedules)
// against the modern one (modern::gateway_handshake; version 2,
// modern::gateway_reply, adds an X25519 with the static key). Libsodium's AES-256-GCM
// needs AES-NI; without it those two rows report an error.
#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>

#include "gatehouse/crypto/gateway_identity.h"
#include "gatehouse/crypto/legacy_crypto.h"
#include "gatehouse/crypto/modern_crypto.h"

namespace gatehouse {
namespace {

constexpr std::size_t kPayload = 72;

void rc4_payload(benchmark::State& state) {
  legacy::Rc4State rc4;
  rc4.init(123456);
  std::array<std::byte, kPayload> buffer{};
  for (auto _ : state) {
    rc4.apply(buffer.data(), buffer.data(), buffer.size());
    benchmark::DoNotOptimize(buffer);
  }
}
BENCHMARK(rc4_payload);

void seal_payload(benchmark::State& state, modern::Aead aead) {
  if (!modern::available(aead)) return state.SkipWithError("not available on this CPU");
  modern::AeadStream stream;
  stream.init(modern::Key{std::byte{7}}, aead);
  std::array<std::byte, kPayload + modern::kTagBytes> buffer{};
  for (auto _ : state) {
    stream.seal(buffer.data(), kPayload, buffer.data());
    benchmark::DoNotOptimize(buffer);
  }
}
BENCHMARK_CAPTURE(seal_payload, chacha20_poly1305, modern::Aead::kChaCha20Poly1305);
BENCHMARK_CAPTURE(seal_payload, aes_256_gcm, modern::Aead::kAes256Gcm);

void open_payload(benchmark::State& state, modern::Aead aead) {
  if (!modern::available(aead)) return state.SkipWithError("not available on this CPU");
  modern::AeadStream sender;
  modern::AeadStream receiver;
  sender.init(modern::Key{std::byte{7}}, aead);
  receiver.init(modern::Key{std::byte{7}}, aead);
  std::array<std::byte, kPayload + modern::kTagBytes> sealed{};
  std::array<std::byte, kPayload> plain{};
  sender.seal(plain.data(), kPayload, sealed.data());
  for (auto _ : state) {
    receiver.counter = 0;  // the same payload, opened again and again
    if (!receiver.open(sealed.data(), sealed.size(), plain.data())) {
      return state.SkipWithError("a payload failed to open");
    }
    benchmark::DoNotOptimize(plain);
  }
}
BENCHMARK_CAPTURE(open_payload, chacha20_poly1305, modern::Aead::kChaCha20Poly1305);
BENCHMARK_CAPTURE(open_payload, aes_256_gcm, modern::Aead::kAes256Gcm);

void legacy_exchange(benchmark::State& state) {
  const std::uint32_t client_send = legacy::dh_public(legacy::dh_random_secret());
  const std::uint32_t client_receive = legacy::dh_public(legacy::dh_random_secret());
  legacy::Rc4State decrypt;
  legacy::Rc4State encrypt;
  for (auto _ : state) {  // what Worker::handle_seed computes
    const std::uint64_t x1 = legacy::dh_random_secret();
    const std::uint64_t x2 = legacy::dh_random_secret();
    benchmark::DoNotOptimize(legacy::dh_public(x1));
    benchmark::DoNotOptimize(legacy::dh_public(x2));
    decrypt.init(legacy::dh_power(client_send, x1));
    encrypt.init(legacy::dh_power(client_receive, x2));
    benchmark::DoNotOptimize(decrypt);
    benchmark::DoNotOptimize(encrypt);
  }
}
BENCHMARK(legacy_exchange);

void modern_exchange(benchmark::State& state) {
  const modern::KeyPair client = modern::generate_key_pair();
  for (auto _ : state) benchmark::DoNotOptimize(modern::gateway_handshake(client.public_key, 0));
}
BENCHMARK(modern_exchange);

/// Version 2: the same fresh key pair, and X25519 with the static key too.
void modern2_exchange(benchmark::State& state) {
  const modern::KeyPair gateway_static = modern::generate_key_pair();
  const modern::KeyPair client = modern::generate_key_pair();
  for (auto _ : state) {
    benchmark::DoNotOptimize(modern::gateway_reply(gateway_static, client.public_key, 0));
  }
}
BENCHMARK(modern2_exchange);

}  // namespace
}  // namespace gatehouse

BENCHMARK_MAIN();
