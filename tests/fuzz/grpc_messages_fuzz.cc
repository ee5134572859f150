// Fuzz target: the DATA of a game service's stream, read as gRPC's
// length-prefixed messages (backend-bridge/.../grpc_message_reader.h).
// Input: | bound selector u8 | split seed u8 | stream bytes |. Nothing may
// crash, and the reading must not depend on how the bytes were cut:
//   - fed whole, fed in the chunks the seed picks, and fed by a reader that
//     stops after each message (a call that holds its reads) and is given
//     the rest again, the same messages come out in the same order, and the
//     same error (if any) ends them;
//   - no message is over the bound, and the messages with their prefixes
//     never add up to more than the bytes given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "gatehouse/bridge/grpc_message_reader.h"

using gatehouse::bridge::GrpcMessageReader;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

struct Outcome {
  std::vector<std::string> messages;
  GrpcMessageReader::Error error = GrpcMessageReader::Error::kNone;
};

Outcome read(const std::byte* data, std::size_t size, std::uint32_t bound, std::uint8_t seed,
             bool stop_each) {
  Outcome out;
  GrpcMessageReader reader;
  std::size_t at = 0;
  std::uint32_t state = seed;
  while (at < size && out.error == GrpcMessageReader::Error::kNone) {
    std::size_t chunk = size - at;
    if (seed != 0) {
      state = state * 1103515245u + 12345u;
      chunk = std::min<std::size_t>(chunk, 1 + (state >> 16) % 13);
    }
    const auto result = reader.feed(data + at, chunk, bound, [&](std::span<const std::byte> m) {
      check(m.size() <= bound);
      out.messages.emplace_back(reinterpret_cast<const char*>(m.data()), m.size());
      return !stop_each;
    });
    check(result.used <= chunk);
    check(stop_each || result.used == chunk || result.error != GrpcMessageReader::Error::kNone);
    check(result.used != 0 || chunk == 0 || result.error != GrpcMessageReader::Error::kNone);
    out.error = result.error;
    at += result.used;
  }
  return out;
}

}  // namespace

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint32_t bound = std::uint32_t{data[0]} * 4;  // 0..1020: small messages too big
  const std::uint8_t seed = data[1];
  const auto* bytes = reinterpret_cast<const std::byte*>(data + 2);
  const std::size_t n = size - 2;
  const Outcome whole = read(bytes, n, bound, 0, false);
  const Outcome split = read(bytes, n, bound, seed == 0 ? 1 : seed, false);
  const Outcome held = read(bytes, n, bound, seed, true);
  check(whole.messages == split.messages && whole.messages == held.messages);
  check(whole.error == split.error && whole.error == held.error);
  std::size_t used = 0;
  for (const auto& m : whole.messages) used += GrpcMessageReader::kPrefixBytes + m.size();
  check(used <= n);
  return 0;
}
