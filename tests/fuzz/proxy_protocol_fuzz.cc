// Fuzz target: the first bytes of a connection as anyone who reaches a
// proxy= listener could send them, parsed as a PROXY protocol header
// (common/net). Nothing may crash or read out of bounds, and the parser's
// answers must be consistent with each other:
//   - a header is no longer than the bytes, within its version's limits,
//     and parses the same from its own bytes alone (nothing after it is
//     looked at: the frontend strips exactly `bytes`);
//   - a verdict is final: every longer input that starts with the same bytes
//     gets the same kError (same reason) or kNotProxy, and kNeedMore comes
//     only before a verdict (checked on the input's prefixes).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "gatehouse/net/proxy_protocol.h"

namespace proxy = gatehouse::net::proxy;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool same(const proxy::Header& a, const proxy::Header& b) {
  return a.version == b.version && a.has_address == b.has_address && a.v6 == b.v6 &&
         a.source == b.source && a.destination == b.destination && a.source_port == b.source_port &&
         a.destination_port == b.destination_port && a.bytes == b.bytes;
}

}  // namespace

// libFuzzer's entry point: its name is libFuzzer's.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  const proxy::Result whole = proxy::parse(bytes);
  if (whole.status == proxy::Status::kHeader) {
    const proxy::Header& h = whole.header;
    check(h.bytes <= size);
    check(h.version == 1
              ? h.bytes <= proxy::kV1MaxBytes
              : h.version == 2 && h.bytes >= proxy::kV2FixedBytes && h.bytes <= proxy::kV2MaxBytes);
    check(!h.v6 || h.has_address);
    const proxy::Result alone = proxy::parse(bytes.first(h.bytes));
    check(alone.status == proxy::Status::kHeader && same(alone.header, h));
  }
  check((whole.status == proxy::Status::kError) == (whole.error != proxy::Error::kNone));
  // The prefixes: up to the first verdict kNeedMore, from it on the same
  // verdict as the whole. (A header's prefixes need more; checked for the
  // first 256 bytes, enough for v1 and v2's fixed part, and a few beyond.)
  bool decided = false;
  proxy::Result first_verdict;
  const std::size_t limit = std::min<std::size_t>(size, 256);
  for (std::size_t n = 0; n <= limit; ++n) {
    const proxy::Result r = proxy::parse(bytes.first(n));
    if (!decided) {
      if (r.status == proxy::Status::kNeedMore) continue;
      decided = true;
      first_verdict = r;
      if (r.status == proxy::Status::kHeader) check(r.header.bytes == n);
    }
    check(r.status == first_verdict.status && r.error == first_verdict.error);
    if (r.status == proxy::Status::kHeader) check(same(r.header, first_verdict.header));
  }
  if (decided) {
    check(whole.status == first_verdict.status && whole.error == first_verdict.error);
  }
  return 0;
}
